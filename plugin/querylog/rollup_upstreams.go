package querylog

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/rawsql"
)

// rollup_upstreams counts, per period, the rows of each upstream forward used: queries,
// SERVFAILs and reply times (their sum, and durationBounds' buckets), so that querylog top
// upstreams answers a window of days without reading its rows. A minute counts upstreams by the
// writer's label number, as rollup_outcomes counts plugins; labels are bounded (labelLimit), and
// the Corefile names few upstreams, but a period still keeps at most limit of them and counts
// the rest under otherKey, like names and namespaces.

// upstreamCounts are one upstream's counts in a minute.
type upstreamCounts struct {
	n, servfail, durationUS int64
	buckets                 [16]int64
}

func (c *upstreamCounts) add(o *upstreamCounts) {
	c.n, c.servfail, c.durationUS = c.n+o.n, c.servfail+o.servfail, c.durationUS+o.durationUS
	for i, b := range o.buckets {
		c.buckets[i] += b
	}
}

// countUpstream adds a row, arrived at ts (Unix ms), that upstream (the writer's label number; 0:
// none) answered. It is on the writer's path for every row, after count, so the minute is
// nearly always the one count just used.
func (r *rollups) countUpstream(ts int64, upstream uint16, rcode, durationUS int64) {
	if upstream == 0 {
		return
	}
	m := r.minute(floorDiv(ts, 60_000) * 60)
	if m.upstreams == nil {
		m.upstreams = map[uint16]*upstreamCounts{}
	}
	c := m.upstreams[upstream]
	if c == nil {
		c = &upstreamCounts{}
		m.upstreams[upstream] = c
	}
	c.n++
	c.servfail += b2i(rcode == dns.RcodeServerFailure)
	c.durationUS += durationUS
	i, _ := slices.BinarySearch(durationBounds, durationUS)
	c.buckets[i]++
}

// flushUpstreams adds a minute's upstream counts to its rows by text, and forgets them. The
// minute keeps the upstreams it already has rows for, and others while fewer than limit; the
// rest go to otherKey. The rows are read at every flush: a minute has a handful.
func flushUpstreams(ctx context.Context, dc driver.Conn, start int64, m *minuteCounts, limit int, l *labels) error {
	if len(m.upstreams) == 0 {
		return nil
	}
	counts := map[string]*upstreamCounts{}
	for id, c := range m.upstreams {
		text := l.text(labelUpstream, id) // numbers past labelLimit read otherKey
		if counts[text] == nil {
			counts[text] = &upstreamCounts{}
		}
		counts[text].add(c)
	}
	clear(m.upstreams)
	stored, err := queryStrings(ctx, dc, `SELECT upstream FROM rollup_upstreams WHERE span = 60 AND start = ? AND upstream <> '(other)'`, start)
	if err != nil {
		return err
	}
	for text, c := range fold(counts, stored, limit) {
		if counts[otherKey] == nil {
			counts[otherKey] = &upstreamCounts{}
		}
		counts[otherKey].add(c)
		delete(counts, text)
	}
	for text, c := range counts {
		args := []any{start, text, c.n, c.servfail, c.durationUS}
		for _, b := range c.buckets {
			args = append(args, b)
		}
		if err := rawsql.Exec(ctx, dc, upsertUpstream, args...); err != nil {
			return err
		}
	}
	return nil
}

// bucketColumns joins f(i) for the 16 duration buckets, each after a comma.
func bucketColumns(f func(i int) string) string {
	var b strings.Builder
	for i := range len(durationBounds) + 1 {
		b.WriteString(", " + f(i))
	}
	return b.String()
}

var upsertUpstream = `INSERT INTO rollup_upstreams (span, start, upstream, n, servfail, duration_us` +
	bucketColumns(func(i int) string { return fmt.Sprintf("d%d", i) }) + `)
	VALUES (60, ?, ?, ?, ?, ?` + bucketColumns(func(int) string { return "?" }) + `)
	ON CONFLICT DO UPDATE SET n = n + excluded.n, servfail = servfail + excluded.servfail,
	duration_us = duration_us + excluded.duration_us` +
	bucketColumns(func(i int) string { return fmt.Sprintf("d%[1]d = d%[1]d + excluded.d%[1]d", i) })

// The statements of sumPeriod for rollup_upstreams: the limit upstreams with the most queries,
// the rest under otherKey. Parameters: ?1 span, ?2 start, ?3 the span summed, ?4 limit.
const deleteUpstreamsPeriod = `DELETE FROM rollup_upstreams WHERE span = ?1 AND start = ?2`

var sumUpstreamsPeriod = `WITH parts AS (SELECT upstream, sum(n) AS n, sum(servfail) AS servfail, sum(duration_us) AS duration_us` +
	bucketColumns(func(i int) string { return fmt.Sprintf("sum(d%[1]d) AS d%[1]d", i) }) + `
		FROM rollup_upstreams WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY upstream),
	keep AS (SELECT upstream FROM parts WHERE upstream <> '(other)' ORDER BY n DESC, upstream LIMIT ?4)
	INSERT INTO rollup_upstreams (span, start, upstream, n, servfail, duration_us` +
	bucketColumns(func(i int) string { return fmt.Sprintf("d%d", i) }) + `)
	SELECT ?1, ?2, iif(upstream IN keep, upstream, '(other)') AS folded, sum(n), sum(servfail), sum(duration_us)` +
	bucketColumns(func(i int) string { return fmt.Sprintf("sum(d%d)", i) }) + `
	FROM parts GROUP BY folded`
