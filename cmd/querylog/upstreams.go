package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/logrow"
)

// top upstreams: per upstream forward sent queries to, how many, the share answered SERVFAIL,
// and the median and 99th percentile of the reply time. Only rows say which upstream answered
// (the upstream column, filled when the metadata plugin is on): the rollups count outcomes by
// rcode, type, transport and plugin, not by upstream, so the answer comes from the rows of the
// window that the file still keeps, and says from when.

// upstreamStats are one upstream's counts, and its reply times for the percentiles.
type upstreamStats struct {
	name      string
	servfails int64
	durations []uint32 // µs, at most math.MaxUint32 (71 minutes)
}

type upstreamsResult struct {
	from, to  int64 // the window, Unix seconds; to is openEnd without --until
	rows      []*upstreamStats
	forwarded int64         // rows with an upstream in the window
	read      int64         // rows of the window, with an upstream or not
	oldest    sql.NullInt64 // the oldest row's arrival, Unix ms
	v1        bool          // the file has rows of schema 1, which have no upstream
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

func (u *upstreamStats) queries() int64 { return int64(len(u.durations)) }

// topUpstreams reads the log rows that arrived in [from, to) (Unix seconds) and counts them by
// upstream, a chunk of ids at a time so that the time budget is checked between chunks.
func (d *database) topUpstreams(ctx context.Context, from, to int64, n int) (*upstreamsResult, error) {
	res := &upstreamsResult{from: from, to: to, v1: d.v1 != ""}
	if !d.log {
		return res, nil
	}
	b, err := d.logBounds(ctx, true)
	if err != nil || !b.first.Valid {
		return res, err
	}
	res.oldest = b.oldest
	cond, args := timeCond(from, to, 0, math.MaxInt64)
	lo, hi := args[0].(int64), min(args[1].(int64), b.last.Int64+1)
	byLabel := map[int64]*upstreamStats{}
	// The rows with an upstream come to Go; the others are only counted.
	const up = `(l.b >> 19) & 255`
	query := `SELECT ` + up + `, (l.a >> 23) & 4095, l.c >> 24 FROM log l WHERE ` + cond + ` AND ` + up + ` != 0
		UNION ALL SELECT 0, 0, count(*) FROM log l WHERE ` + cond + ` AND ` + up + ` = 0`
	err = chunks(ctx, lo, hi, chunkIDs, false, func(from, to int64) error {
		args[0], args[1] = from, to
		return d.each(ctx, query, append(slices.Clip(args), args...), func(v []driver.Value) error {
			label := logrow.Int(v[0])
			if label == 0 {
				res.read += logrow.Int(v[2])
				return nil
			}
			res.read++
			u := byLabel[label]
			if u == nil {
				text, ok := d.reader.Labels.Text(logrow.LabelUpstream, label)
				if !ok {
					text = "#" + strconv.FormatInt(label, 10) // a label the labels table lacks: never expected
				}
				u = &upstreamStats{name: text}
				byLabel[label] = u
			}
			if logrow.Int(v[1]) == 2 { // SERVFAIL
				u.servfails++
			}
			u.durations = append(u.durations, uint32(min(logrow.Int(v[2]), math.MaxUint32)))
			res.forwarded++
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, u := range byLabel {
		slices.Sort(u.durations)
		res.rows = append(res.rows, u)
	}
	slices.SortFunc(res.rows, func(a, b *upstreamStats) int {
		return cmp.Or(cmp.Compare(b.queries(), a.queries()), strings.Compare(a.name, b.name))
	})
	res.rows = res.rows[:min(n, len(res.rows))]
	return res, nil
}

// sources says in words what the counts are of, and what they leave out.
func (r *upstreamsResult) sources() []string {
	to := "now"
	if r.to != openEnd {
		to = rfc3339(r.to)
	}
	out := []string{fmt.Sprintf("window: %s to %s; %s with an upstream, of %s",
		rfc3339(r.from), to, plural(r.forwarded, "query"), plural(r.read, "row"))}
	from := "from raw rows only: the rollups do not count upstreams"
	if r.oldest.Valid && r.oldest.Int64 > r.from*1000 {
		from += "; the file keeps rows from " + time.UnixMilli(r.oldest.Int64).UTC().Format(time.RFC3339) +
			" on, so the window's queries before then are not counted"
	} else if !r.oldest.Valid {
		from += "; the file has no rows of schema 2"
	}
	out = append(out, from)
	if r.v1 {
		out = append(out, "rows of schema 1 have no upstream and are not counted")
	}
	return out
}

func (r *upstreamsResult) writeTable(out io.Writer) error {
	headings := []string{"UPSTREAM", "QUERIES", "SHARE", "SERVFAIL", "P50", "P99"}
	lines := [][]string{headings}
	for _, u := range r.rows {
		lines = append(lines, []string{printable(u.name), count(u.queries()), share(u.queries(), r.forwarded),
			share(u.servfails, u.queries()), duration(nearestRank(u.durations, 50)), duration(nearestRank(u.durations, 99))})
	}
	if err := writeAligned(out, lines); err != nil {
		return err
	}
	if len(r.rows) == 0 {
		io.WriteString(out, "no queries with an upstream in the window (the upstream column needs the metadata plugin)\n")
	}
	_, err := io.WriteString(out, strings.Join(r.sources(), "\n")+"\n")
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
		P50US         int64   `json:"p50_us"`
		P99US         int64   `json:"p99_us"`
	}
	var until *string
	if r.to != openEnd {
		t := rfc3339(r.to)
		until = &t
	}
	var oldest *string
	if r.oldest.Valid {
		t := time.UnixMilli(r.oldest.Int64).UTC().Format("2006-01-02T15:04:05.000Z")
		oldest = &t
	}
	v := struct {
		Top        string         `json:"top"`
		Since      string         `json:"since"`
		Until      *string        `json:"until"`
		Rows       []jsonUpstream `json:"rows"`
		Total      int64          `json:"total"`
		RowsRead   int64          `json:"rows_read"`
		OldestRow  *string        `json:"oldest_row"`
		SourceText []string       `json:"sources"`
	}{Top: "upstreams", Since: rfc3339(r.from), Until: until, Rows: []jsonUpstream{}, Total: r.forwarded,
		RowsRead: r.read, OldestRow: oldest, SourceText: r.sources()}
	ratio := func(n, of int64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	for _, u := range r.rows {
		v.Rows = append(v.Rows, jsonUpstream{u.name, u.queries(), ratio(u.queries(), r.forwarded), u.servfails,
			ratio(u.servfails, u.queries()), nearestRank(u.durations, 50), nearestRank(u.durations, 99)})
	}
	return writeJSON(out, v)
}

// runTopUpstreams is top upstreams: rows only, so the window is not rounded to minutes.
func runTopUpstreams(ctx context.Context, c common, since, until timeFlag, n int, out io.Writer) error {
	from, to := since.t.Unix(), int64(openEnd)
	if until.set() {
		to = until.t.Unix()
	}
	if to <= from {
		return usageError("--until %s must be after --since %s", until.text, since.text)
	}
	return answer(ctx, c, out, func(ctx context.Context, d *database) (*upstreamsResult, error) {
		return d.topUpstreams(ctx, from, to, n)
	})
}
