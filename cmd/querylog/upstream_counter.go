package main

import (
	"cmp"
	"context"
	"database/sql/driver"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/querylog/querylog/internal/logrow"
)

// upstreamCounter counts the parts of a window into a result.
type upstreamCounter struct {
	d       *database
	res     *upstreamsResult
	last    int64                     // the log's last id
	byText  map[string]*upstreamStats // the rollups'
	byLabel map[int64]*upstreamStats  // the rows', by label number
}

// planned counts the part of the window that rollup_upstreams may cover, as top plans it.
func (c *upstreamCounter) planned(ctx context.Context, w window) error {
	p, err := c.d.plan(ctx, w)
	if err != nil {
		return err
	}
	c.res.plan, c.res.rawFrom = p, p.rollupID>>8
	cols := "d0"
	for i := 1; i <= len(logrow.DurationBounds); i++ {
		cols += fmt.Sprintf(", d%d", i)
	}
	for _, l := range []struct {
		span  int64
		spans []span
	}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
		for _, s := range l.spans {
			err := c.d.each(ctx, `SELECT upstream, n, servfail, `+cols+` FROM rollup_upstreams WHERE span = ? AND start >= ? AND start < ?`,
				[]any{l.span, s.from, s.to}, func(v []driver.Value) error {
					name, _ := logrow.Text(v[0])
					u := c.byText[name]
					if u == nil {
						u = &upstreamStats{name: name}
						c.byText[name] = u
					}
					n := logrow.Int(v[1])
					u.queries += n
					u.servfails += logrow.Int(v[2])
					for i := range u.buckets {
						u.buckets[i] += logrow.Int(v[3+i])
					}
					c.res.rolled += n
					return nil
				})
			if err != nil {
				return err
			}
		}
	}
	// Rows after rollup_id, and rows in minutes the rollups no longer keep: the two never meet.
	if err := c.logRows(ctx, srcAfter, w.from, w.to, p.rollupID+1, math.MaxInt64); err != nil {
		return err
	}
	for _, s := range p.uncovered {
		if err := c.logRows(ctx, srcOld, s.from, s.to, 0, p.rollupID+1); err != nil {
			return err
		}
	}
	return nil
}

// logRows counts the log rows that arrived in [from, to) (Unix seconds) with ids in [lo, hi),
// a chunk of ids at a time so that the time budget is checked between chunks.
func (c *upstreamCounter) logRows(ctx context.Context, src int, from, to, lo, hi int64) error {
	cond, args := timeCond(from, to, lo, hi)
	lo, hi = args[0].(int64), min(args[1].(int64), c.last+1)
	// The rows with an upstream come to Go; the others are only counted.
	const up = `(l.b >> 19) & 255`
	query := `SELECT ` + up + `, (l.a >> 23) & 4095, l.c >> 24 FROM log l WHERE ` + cond + ` AND ` + up + ` != 0
		UNION ALL SELECT 0, 0, count(*) FROM log l WHERE ` + cond + ` AND ` + up + ` = 0`
	return chunks(ctx, lo, hi, chunkIDs, false, func(from, to int64) error {
		args[0], args[1] = from, to
		return c.d.each(ctx, query, append(slices.Clip(args), args...), func(v []driver.Value) error {
			label := logrow.Int(v[0])
			if label == 0 {
				c.res.bySrc[src] += logrow.Int(v[2])
				return nil
			}
			c.res.bySrc[src]++
			u := c.byLabel[label]
			if u == nil {
				text, ok := c.d.reader.Labels.Text(logrow.LabelUpstream, label)
				if !ok {
					text = "#" + strconv.FormatInt(label, 10) // a label the labels table lacks: never expected
				}
				u = &upstreamStats{name: text}
				c.byLabel[label] = u
			}
			u.queries++
			if logrow.Int(v[1]) == 2 { // SERVFAIL
				u.servfails++
			}
			u.durations = append(u.durations, uint32(min(logrow.Int(v[2]), math.MaxUint32)))
			return nil
		})
	})
}

// finish adds the rows' counts to the rollups', each reply time in its bucket if any count is
// the rollups', and keeps the n upstreams with the most queries.
func (c *upstreamCounter) finish(n int) {
	res := c.res
	res.exact = res.rolled == 0
	for _, r := range c.byLabel {
		u := c.byText[r.name]
		if u == nil {
			u = &upstreamStats{name: r.name}
			c.byText[r.name] = u
		}
		u.queries += r.queries
		u.servfails += r.servfails
		u.durations = append(u.durations, r.durations...)
	}
	for _, u := range c.byText {
		res.forwarded += u.queries
		if res.exact {
			slices.Sort(u.durations)
		} else {
			for _, us := range u.durations {
				i, _ := slices.BinarySearch(logrow.DurationBounds, int64(us))
				u.buckets[i]++
			}
		}
		res.rows = append(res.rows, u)
	}
	slices.SortFunc(res.rows, func(a, b *upstreamStats) int {
		return cmp.Or(cmp.Compare(b.queries, a.queries), strings.Compare(a.name, b.name))
	})
	res.rows = res.rows[:min(n, len(res.rows))]
}
