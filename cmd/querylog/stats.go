package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/querylog/querylog/internal/logrow"
)

// stats is what stats reports.
type stats struct {
	File       string      `json:"file"`
	Bytes      int64       `json:"bytes"`
	WALBytes   int64       `json:"wal_bytes"`
	Schema     int         `json:"schema"`
	Rows       int64       `json:"rows"`
	V1Rows     *int64      `json:"schema1_rows,omitempty"`
	First      *string     `json:"first"`
	Last       *string     `json:"last"`
	PerDay     []dayCount  `json:"rows_per_day"`
	Rollups    []rollupSet `json:"rollups,omitempty"`
	RollupID   *int64      `json:"rollup_id,omitempty"`
	AfterRows  *int64      `json:"rows_after_rollups,omitempty"`
	Names      *int64      `json:"dictionary_names,omitempty"`
	Clients    *int64      `json:"dictionary_clients,omitempty"`
	CacheHits  *int64      `json:"cache_hits"`      // null: no row says a cache status
	Cached     *int64      `json:"cache_replies"`   // rows with a cache status: hits and misses
	HitRatio   *float64    `json:"cache_hit_ratio"` // hits of cache_replies; null without any
	Retries    *int64      `json:"retransmissions,omitempty"`
	RetryShare *float64    `json:"retransmission_share,omitempty"`
	Namespaces *int64      `json:"namespaces,omitempty"`
	Pods       *int64      `json:"pods,omitempty"`
	hits       int64
	cached     int64
	firstMS    int64
	lastMS     int64
	hasRows    bool
	rollupFrom int64
}

type dayCount struct {
	Day  string `json:"day"`
	Rows int64  `json:"rows"`
}

type rollupSet struct {
	Span    int64  `json:"span"`
	Periods int64  `json:"periods"`
	First   string `json:"first"`
	Last    string `json:"last"`
}

func runStats(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	fs := newFlags("stats", "", out, &c, defaultTimeout)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	return answer(ctx, c, out, func(ctx context.Context, d *database) (*stats, error) { return d.stats(ctx) })
}

func (s *stats) writeJSON(out io.Writer) error { return writeJSON(out, s) }

func (d *database) stats(ctx context.Context) (*stats, error) {
	s := &stats{File: d.path, Schema: d.schema}
	if abs, err := filepath.Abs(d.path); err == nil {
		s.File = abs
	}
	if fi, err := os.Stat(d.path); err == nil {
		s.Bytes = fi.Size()
	}
	if fi, err := os.Stat(d.path + "-wal"); err == nil {
		s.WALBytes = fi.Size()
	}
	days := map[int64]int64{}
	seen := func(first, last int64) {
		if !s.hasRows || first < s.firstMS {
			s.firstMS = first
		}
		if !s.hasRows || last > s.lastMS {
			s.lastMS = last
		}
		s.hasRows = true
	}
	perDay := func(query string) error {
		return d.each(ctx, query, nil, func(v []driver.Value) error {
			n := logrow.Int(v[1])
			days[logrow.Int(v[0])] += n
			s.Rows += n
			return nil
		})
	}
	if d.v1 != "" {
		// By ts, on its index.
		if err := perDay(`SELECT ts / 86400000, count(*) FROM ` + d.v1 + ` GROUP BY 1`); err != nil {
			return nil, err
		}
		var first, last sql.NullInt64
		if err := d.row(ctx, `SELECT (SELECT min(ts) FROM `+d.v1+`), (SELECT max(ts) FROM `+d.v1+`)`, nil, &first, &last); err != nil {
			return nil, err
		}
		if first.Valid {
			seen(first.Int64, last.Int64)
		}
		if d.log {
			n := s.Rows
			s.V1Rows = &n
		}
	}
	if d.log {
		if err := d.logStats(ctx, s, days, seen); err != nil {
			return nil, err
		}
		var names, clients int64
		if err := d.row(ctx, `SELECT (SELECT count(*) FROM names), (SELECT count(*) FROM clients)`, nil, &names, &clients); err != nil {
			return nil, err
		}
		s.Names, s.Clients = &names, &clients
		if err := d.clusterStats(ctx, s); err != nil {
			return nil, err
		}
	}
	for day := range days {
		s.PerDay = append(s.PerDay, dayCount{time.UnixMilli(day * 86400000).UTC().Format("2006-01-02"), days[day]})
	}
	slices.SortFunc(s.PerDay, func(a, b dayCount) int { return strings.Compare(a.Day, b.Day) })
	if s.hasRows {
		f, l := time.UnixMilli(s.firstMS).UTC().Format("2006-01-02T15:04:05.000Z"), time.UnixMilli(s.lastMS).UTC().Format("2006-01-02T15:04:05.000Z")
		s.First, s.Last = &f, &l
	}
	if d.rollups {
		for _, span := range []int64{60, 3600, 86400} {
			var periods int64
			var first, last sql.NullInt64
			err := d.row(ctx, `SELECT (SELECT min(start) FROM rollup_outcomes WHERE span = ?1),
				(SELECT max(start) FROM rollup_outcomes WHERE span = ?1)`, []any{span}, &first, &last)
			if err != nil {
				return nil, err
			}
			if !first.Valid {
				continue
			}
			periods, err = d.countPeriods(ctx, span)
			if err != nil {
				return nil, err
			}
			s.Rollups = append(s.Rollups, rollupSet{span, periods, rfc3339(first.Int64), rfc3339(last.Int64)})
		}
		var id, after int64
		err := d.row(ctx, `SELECT coalesce((SELECT value FROM state WHERE key = 'rollup_id'), 0)`, nil, &id)
		if err == nil {
			err = d.row(ctx, `SELECT count(*) FROM log WHERE id > ?`, []any{id}, &after)
		}
		if err != nil {
			return nil, err
		}
		s.RollupID, s.AfterRows = &id, &after
	}
	return s, nil
}

// logStats counts the log's rows by day of arrival, and finds the first and last arrival.
//
// Counting rows one by one takes SQLite seconds per ten million, so the rows the minute rollups
// counted (ids up to rollup_id) are taken from them: they are kept as long as the rows, and
// count every row of their minute. Only the oldest minute, which retention may be pruning, and
// the rows after rollup_id (the last seconds) are counted row by row; without rollups, all.
func (d *database) logStats(ctx context.Context, s *stats, days map[int64]int64, seen func(first, last int64)) error {
	// Arrivals: a row is written late by seconds at most, so the first and last arrivals are
	// among the rows of the first and last minute of ids.
	const window = 60_000 << 8
	var first, last, rollupID sql.NullInt64
	err := d.row(ctx, `SELECT
		(SELECT min((id >> 8) - late) FROM log WHERE id < (SELECT min(id) FROM log) + ?1),
		(SELECT max((id >> 8) - late) FROM log WHERE id >= (SELECT max(id) FROM log) - ?1)`, []any{window}, &first, &last)
	if err != nil || !first.Valid {
		return err
	}
	seen(first.Int64, last.Int64)
	add := func(query string, args ...any) error {
		return d.each(ctx, query, args, func(v []driver.Value) error {
			n := logrow.Int(v[1])
			days[logrow.Int(v[0])] += n
			s.Rows += n
			s.hits += logrow.Int(v[2])
			s.cached += logrow.Int(v[3])
			return nil
		})
	}
	// Cache hits and misses: counted by the minute rollups (schema 3), and the cache column of
	// rows.
	rowHits, rollupHits := `0, 0`, `0, 0`
	if d.cluster {
		rowHits = `coalesce(sum(cache = 1), 0), coalesce(sum(cache IS NOT NULL), 0)`
	}
	if d.pods {
		rollupHits = `sum(hits), sum(hits + misses)`
	}
	if !d.rollups {
		return add(`SELECT ((id >> 8) - late) / 86400000, count(*), ` + rowHits + ` FROM log GROUP BY 1`)
	}
	if err := d.row(ctx, `SELECT coalesce((SELECT value FROM state WHERE key = 'rollup_id'), 0)`, nil, &rollupID); err != nil {
		return err
	}
	minute := first.Int64 / 60_000 * 60 // Unix seconds
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`SELECT start / 86400, sum(n), ` + rollupHits + ` FROM rollup_outcomes WHERE span = 60 AND start > ? GROUP BY 1`, []any{minute}},
		{`SELECT ?3 / 86400, count(*), ` + rowHits + ` FROM log WHERE id >= ?1 AND id < ?2 AND id <= ?4 AND (id >> 8) - late < ?5`,
			[]any{first.Int64 << 8, ((minute+60)*1000 + lateMargin.Milliseconds()) << 8, minute, rollupID.Int64, (minute + 60) * 1000}},
		{`SELECT ((id >> 8) - late) / 86400000, count(*), ` + rowHits + ` FROM log WHERE id > ? GROUP BY 1`, []any{rollupID.Int64}},
	} {
		if err := add(q.query, q.args...); err != nil {
			return err
		}
	}
	return nil
}

// clusterStats adds what schema 3 tells: cache hits (logStats counts them with the rows),
// retransmissions, and the namespaces and pods of the pods dictionary (a pod is numbered anew
// in each dictionary epoch: distinct texts are counted).
func (d *database) clusterStats(ctx context.Context, s *stats) error {
	ratio := func(n int64) *float64 {
		var r float64
		if s.Rows > 0 {
			r = float64(n) / float64(s.Rows)
		}
		return &r
	}
	if hits, cached := s.hits, s.cached; cached > 0 {
		r := float64(hits) / float64(cached)
		s.CacheHits, s.Cached, s.HitRatio = &hits, &cached, &r
	}
	if !d.pods {
		return nil
	}
	var retries, namespaces, pods int64
	err := d.row(ctx, `SELECT (SELECT count(*) FROM retries), (SELECT count(DISTINCT namespace) FROM pods),
		(SELECT count(*) FROM (SELECT DISTINCT namespace, name FROM pods))`, nil, &retries, &namespaces, &pods)
	if err != nil {
		return err
	}
	s.Retries, s.RetryShare, s.Namespaces, s.Pods = &retries, ratio(retries), &namespaces, &pods
	return nil
}

// countPeriods counts the periods of span in the rollups, one index seek each.
func (d *database) countPeriods(ctx context.Context, span int64) (int64, error) {
	starts, err := d.periods(ctx, span, 0, openEnd)
	return int64(len(starts)), err
}

func (s *stats) writeTable(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	line("file", fmt.Sprintf("%s (%s, WAL %s)", printable(s.File), sizeText(s.Bytes), sizeText(s.WALBytes)))
	line("schema", fmt.Sprint(s.Schema))
	rows := count(s.Rows)
	if s.V1Rows != nil {
		rows += fmt.Sprintf(" (%s of schema 1, kept since the upgrade)", count(*s.V1Rows))
	}
	line("rows", rows)
	if s.First != nil {
		line("first row", *s.First)
		line("last row", *s.Last)
	}
	if s.Names != nil {
		// What the counts are: a name or client seen once is in no dictionary (plugin/querylog,
		// dict.go), and one seen every day is in it once per 24-hour epoch.
		line("dictionaries", fmt.Sprintf("%s names, %s clients", count(*s.Names), count(*s.Clients)))
		line("", "a name or client enters when seen twice (anew every 24 h and at each start);")
		line("", "the rows of one seen once hold its text")
	}
	if s.Names != nil {
		hits := "no cache status (no row was answered behind a cache the plugin probes; schema 3)"
		if s.CacheHits != nil {
			hits = fmt.Sprintf("%s (%s of %s with a cache status)", count(*s.CacheHits), share(*s.CacheHits, *s.Cached), plural(*s.Cached, "reply"))
		}
		line("cache hits", hits)
	}
	if s.Retries != nil {
		line("retransmissions", fmt.Sprintf("%s (%s of rows)", count(*s.Retries), share(*s.Retries, s.Rows)))
		line("kubernetes", fmt.Sprintf("%s, %s (of the pods dictionary)", plural(*s.Namespaces, "namespace"), plural(*s.Pods, "pod")))
	}
	for _, r := range s.Rollups {
		what := map[int64]string{60: "minutes", 3600: "hours", 86400: "days"}[r.Span]
		line("rollups: "+what, fmt.Sprintf("%s, %s to %s", count(r.Periods), r.First, r.Last))
	}
	if s.RollupID != nil {
		line("rows after rollups", count(*s.AfterRows)+" (written since the rollups last counted)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.PerDay) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nrows per day (UTC):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, d := range s.PerDay {
		fmt.Fprintf(tw, "  %s\t%s\t\n", d.Day, count(d.Rows))
	}
	tw.Flush()
	_, err := io.WriteString(out, b.String())
	return err
}

// sizeText is a size for people: 1.2 GB (10^9 bytes).
func sizeText(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, suffix := float64(n), "kMGTPE"
	i := -1
	for f >= unit && i < len(suffix)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", f, suffix[i])
}
