package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/logrow"
)

// top upstreams: per upstream forward sent queries to (the upstream column, filled when the
// metadata plugin is on), how many, the share answered SERVFAIL, and the median and 99th
// percentile of the reply time. The window is planned as top plans it: rollup_upstreams where
// the rollups cover whole periods, the rows for the rest. The rollups keep reply times in
// buckets (logrow.DurationBounds), so an answer that uses them gives a percentile as the upper
// bound of the bucket it falls in, with the rows' reply times put in the same buckets; an
// answer from rows alone gives it exactly.

// upstreamStats are one upstream's counts and reply times.
type upstreamStats struct {
	name               string
	queries, servfails int64
	durations          []uint32  // of the rows counted, µs, at most math.MaxUint32 (71 minutes)
	buckets            [16]int64 // of the rollups counted, then of every query (percentiles)
}

type upstreamsResult struct {
	w         window
	plan      *plan
	rowsTo    int64  // the window before it (Unix s) is read from the rows only: w.from for none
	rowsWhy   string // why, for sources
	rows      []*upstreamStats
	forwarded int64    // queries with an upstream in the window
	rolled    int64    // of them, counted by the rollups
	bySrc     [6]int64 // rows read of each source (srcAfter, srcOld, srcRows), with an upstream or not
	rawFrom   int64    // Unix ms from which the rows after the rollups arrived
	oldest    sql.NullInt64
	v1        bool     // the file has rows of schema 1, which have no upstream
	exact     bool     // percentiles from every query's reply time: no count is from the rollups
	notes     []string // where the counts came from (sources)
}

// upstreamsAfter is when rollup_upstreams begins to count every upstream (Unix s, a minute): a
// file upgraded from schema 2 counted none in the rollups up to rollup_upstreams_after, an id,
// so only the periods that begin after that row arrived are whole. 0 for other files.
func (d *database) upstreamsAfter(ctx context.Context) (int64, error) {
	var id int64
	err := d.row(ctx, `SELECT coalesce((SELECT value FROM state WHERE key = 'rollup_upstreams_after'), 0)`, nil, &id)
	if err != nil || id == 0 {
		return 0, err
	}
	return ((id>>8)/60_000 + 1) * 60, nil
}

// topUpstreams counts the queries with an upstream of window w by upstream, and keeps the n
// with the most.
func (d *database) topUpstreams(ctx context.Context, w window, n int) (*upstreamsResult, error) {
	res := &upstreamsResult{w: w, plan: &plan{oldestMinute: openEnd, oldest: openEnd}, rowsTo: w.to, v1: d.v1 != ""}
	if !d.log {
		res.exact, res.notes = true, res.sources(d)
		return res, nil
	}
	b, err := d.logBounds(ctx, true)
	if err != nil {
		return nil, err
	}
	res.oldest = b.oldest
	c := &upstreamCounter{d: d, res: res, last: b.last.Int64, byText: map[string]*upstreamStats{}, byLabel: map[int64]*upstreamStats{}}
	if !d.upstreamRollups {
		res.rowsWhy = "this file's rollups do not count upstreams (schema " + strconv.Itoa(d.schema) + ")"
	} else {
		from, err := d.upstreamsAfter(ctx)
		if err != nil {
			return nil, err
		}
		res.rowsTo = min(max(w.from, from), w.to)
		if res.rowsTo > w.from {
			res.rowsWhy = "the rollups count upstreams from " + rfc3339(from) + " on (the file was upgraded to schema 3 then)"
		}
		if res.rowsTo < w.to {
			if err := c.planned(ctx, window{from: res.rowsTo, to: w.to, now: w.now}); err != nil {
				return nil, err
			}
		}
	}
	if res.rowsTo > w.from {
		if err := c.logRows(ctx, srcRows, w.from, res.rowsTo, 0, math.MaxInt64); err != nil {
			return nil, err
		}
	}
	c.finish(n)
	res.notes = res.sources(d)
	return res, nil
}

// nearestRank is the p-th percentile (0 < p <= 100) of sorted values: the smallest value that
// at least p% of them are at or below.
func nearestRank(sorted []uint32, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return int64(sorted[min(max(i, 0), len(sorted)-1)])
}

// bucketBound is the p-th percentile (0 < p <= 100) of the values counted in buckets, as the
// upper bound of the bucket the nearest rank falls in: at least p% of the values are at or
// below it. false for the last bucket, which has no bound (over 5 s).
func bucketBound(buckets [16]int64, p float64) (int64, bool) {
	var total int64
	for _, n := range buckets {
		total += n
	}
	rank := max(int64(math.Ceil(p/100*float64(total))), 1)
	for i, n := range buckets {
		if rank -= n; rank <= 0 {
			if i < len(logrow.DurationBounds) {
				return logrow.DurationBounds[i], true
			}
			return 0, false
		}
	}
	return 0, true // nothing counted
}

// percentile is u's p-th percentile of reply times, µs; false if it is over the last bucket's
// bound.
func (r *upstreamsResult) percentile(u *upstreamStats, p float64) (int64, bool) {
	if r.exact {
		return nearestRank(u.durations, p), true
	}
	return bucketBound(u.buckets, p)
}

// percentileText is a percentile for people: ">5.00s" over the last bucket's bound.
func (r *upstreamsResult) percentileText(u *upstreamStats, p float64) string {
	us, ok := r.percentile(u, p)
	if !ok {
		return ">" + duration(logrow.DurationBounds[len(logrow.DurationBounds)-1])
	}
	return duration(us)
}

// percentilesText says how the percentiles were found.
func (r *upstreamsResult) percentilesText() string {
	if r.exact {
		return "p50 and p99: exact, from every query's reply time (nearest rank)"
	}
	return "p50 and p99: the upper bound of the reply-time bucket each falls in, as the rollups count them (bounds 100, 250, 500 µs, " +
		"1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5 s)"
}

// sources says in words where the counts came from, and what they leave out, in the window's
// order.
func (r *upstreamsResult) sources(d *database) []string {
	var out []string
	if r.rowsTo > r.w.from && d.log {
		what := "from raw rows only"
		if r.rowsTo < r.w.to {
			what = "before " + rfc3339(r.rowsTo) + ", from raw rows"
		}
		what += " (" + plural(r.bySrc[srcRows], "row") + "): " + r.rowsWhy + rowsKept(r.oldest, r.w.from)
		out = append(out, what)
	}
	if r.rowsTo < r.w.to {
		out = append(out, planSources(d, r.plan, r.w.now, r.bySrc, r.rawFrom)...)
	}
	if r.v1 {
		out = append(out, "rows of schema 1 have no upstream and are not counted")
	}
	return out
}

// read is the number of log rows read, with an upstream or not.
func (r *upstreamsResult) read() int64 { return r.bySrc[srcAfter] + r.bySrc[srcOld] + r.bySrc[srcRows] }

func (r *upstreamsResult) windowText() string {
	to := "now"
	if r.w.to != openEnd {
		to = rfc3339(r.w.to)
	}
	return fmt.Sprintf("window: %s to %s (rounded to whole minutes, as rollups count them); %s with an upstream",
		rfc3339(r.w.from), to, plural(r.forwarded, "query"))
}

func (r *upstreamsResult) writeTable(out io.Writer) error {
	headings := []string{"UPSTREAM", "QUERIES", "SHARE", "SERVFAIL", "P50", "P99"}
	lines := [][]string{headings}
	for _, u := range r.rows {
		lines = append(lines, []string{printable(u.name), count(u.queries), share(u.queries, r.forwarded),
			share(u.servfails, u.queries), r.percentileText(u, 50), r.percentileText(u, 99)})
	}
	if err := writeAligned(out, lines); err != nil {
		return err
	}
	if len(r.rows) == 0 {
		io.WriteString(out, "no queries with an upstream in the window (the upstream column needs the metadata plugin)\n")
	}
	notes := append([]string{r.windowText(), r.percentilesText()}, r.notes...)
	_, err := io.WriteString(out, strings.Join(notes, "\n")+"\n")
	return err
}

// writeAligned writes lines of columns, the first left-aligned and the rest right-aligned
// (numbers), two spaces apart.
func writeAligned(out io.Writer, lines [][]string) error {
	var widths []int
	for _, l := range lines {
		for i, f := range l {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(f))
		}
	}
	var b strings.Builder
	for _, l := range lines {
		for i, f := range l {
			switch {
			case i == 0:
				fmt.Fprintf(&b, "%-*s", widths[i], f)
			default:
				fmt.Fprintf(&b, "  %*s", widths[i], f)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func (r *upstreamsResult) writeJSON(out io.Writer) error {
	type jsonUpstream struct {
		Upstream      string  `json:"upstream"`
		Queries       int64   `json:"queries"`
		Share         float64 `json:"share"`
		Servfail      int64   `json:"servfail"`
		ServfailShare float64 `json:"servfail_share"`
		P50US         *int64  `json:"p50_us"` // null: over the last bucket's bound
		P99US         *int64  `json:"p99_us"`
	}
	var until *string
	if r.w.to != openEnd {
		t := rfc3339(r.w.to)
		until = &t
	}
	var oldest *string
	if r.oldest.Valid {
		t := time.UnixMilli(r.oldest.Int64).UTC().Format("2006-01-02T15:04:05.000Z")
		oldest = &t
	}
	percentiles := "exact"
	if !r.exact {
		percentiles = "bucket_upper_bound"
	}
	v := struct {
		Top           string         `json:"top"`
		Since         string         `json:"since"`
		Until         *string        `json:"until"`
		Rows          []jsonUpstream `json:"rows"`
		Total         int64          `json:"total"`
		RollupQueries int64          `json:"rollup_queries"`
		RowsRead      int64          `json:"rows_read"`
		OldestRow     *string        `json:"oldest_row"`
		Percentiles   string         `json:"percentiles"`
		SourceText    []string       `json:"sources"`
	}{Top: "upstreams", Since: rfc3339(r.w.from), Until: until, Rows: []jsonUpstream{}, Total: r.forwarded, RollupQueries: r.rolled,
		RowsRead: r.read(), OldestRow: oldest, Percentiles: percentiles, SourceText: r.notes}
	ratio := func(n, of int64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	pct := func(u *upstreamStats, p float64) *int64 {
		if us, ok := r.percentile(u, p); ok {
			return &us
		}
		return nil
	}
	for _, u := range r.rows {
		v.Rows = append(v.Rows, jsonUpstream{u.name, u.queries, ratio(u.queries, r.forwarded), u.servfails,
			ratio(u.servfails, u.queries), pct(u, 50), pct(u, 99)})
	}
	return writeJSON(out, v)
}

// runTopUpstreams is top upstreams, on whole minutes as top counts them.
func runTopUpstreams(ctx context.Context, c common, since, until timeFlag, n int, out io.Writer) error {
	w := window{from: since.t.Unix() / 60 * 60, to: openEnd, now: time.Now().Unix()}
	if until.set() {
		if until.t.Unix() <= since.t.Unix() {
			return usageError("--until %s must be after --since %s", until.text, since.text)
		}
		if w.to = until.t.Unix() / 60 * 60; w.to <= w.from {
			return usageError("--until must be at least a minute after --since")
		}
	}
	return answer(ctx, c, out, func(ctx context.Context, d *database) (*upstreamsResult, error) {
		return d.topUpstreams(ctx, w, n)
	})
}
