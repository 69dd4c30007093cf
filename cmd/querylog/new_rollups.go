package main

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/querylog/querylog/internal/logrow"
)

// new over a window longer than an hour (with --namespace, also over one busier than
// newNamespaceRowsMax queries), without --exact, counts the window's names as top does: from
// the rollups where they cover it (whole days, hours and minutes), from the rows only where
// they do not (after rollup_id, and minutes the rollups no longer keep). A month of rows would
// take minutes to read; its rollups take a fraction of a second. What this gives up, the
// sources line says: a name counted under (other) in every period of the window that asked it
// is not listed, and a name's first sighting is the start of the first period that counted it.
// The time before the window is then read as for any window (newNames' steps 2 to 6).

// newRowsWindow is the longest window new reads the rows of by default (seconds), as
// searchpath; newNamespaceRowsMax the most queries of a window whose rows new --namespace
// reads, every one of them to find the namespace's (an hour of 10 million rows took 15 s,
// past the default --timeout).
const (
	newRowsWindow       = spRowsWindow
	newNamespaceRowsMax = spRowsMax
)

// rollupWindow is what new read of a window from the rollups.
type rollupWindow struct {
	w      window
	folded int64    // queries of the window's periods counted under (other)
	bySrc  [6]int64 // rows read, by source (srcAfter, srcOld, srcV1)
	plan   []string // what each part of the plan counted, as top says it
	busy   int64    // with --namespace, a window of an hour or less read from the rollups for its queries
}

// rollupWindowNames adds to texts the names of window w (planned as p), of namespace ns if not
// "", with their queries and first sighting: each period's names from the rollups (per namespace:
// rollup_namespace_names), and the rows where no period covers w. The first rows are not
// known (firstRow math.MaxInt64): a row of the window that holds a number says nothing of the
// time before it here, as its text row may be in a period the rollups counted.
func (d *database) rollupWindowNames(ctx context.Context, w window, p *plan, ns string, texts map[string]*valueInfo) (*rollupWindow, int64, error) {
	rw := &rollupWindow{w: w}
	var queries int64
	add := func(text string, n, first int64) {
		info := texts[text]
		if info == nil {
			info = &valueInfo{firstRow: math.MaxInt64, first: math.MaxInt64}
			texts[text] = info
		}
		info.queries += n
		info.first = min(info.first, first)
		queries += n
	}
	table, nsCond, nsArgs := "rollup_names", "", []any{}
	if ns != "" {
		table, nsCond, nsArgs = "rollup_namespace_names", ` AND namespace = ?`, []any{ns}
	}
	for _, l := range []struct {
		span  int64
		spans []span
	}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
		// Period by period, by the primary key (span, start, namespace, ...): a namespace's rows
		// of a period are together, not those of a range of periods.
		// The plan's days and hours are periods it found, merged; its minutes are what they
		// leave, the last with no end: their periods are looked up.
		var starts []int64
		for _, s := range l.spans {
			if l.span == 60 {
				in, err := d.periods(ctx, l.span, s.from, s.to)
				if err != nil {
					return nil, 0, err
				}
				starts = append(starts, in...)
				continue
			}
			for start := s.from; start < s.to; start += l.span {
				starts = append(starts, start)
			}
		}
		if len(starts) == 0 {
			continue
		}
		list, _ := json.Marshal(starts)
		err := d.each(ctx, `SELECT name, start, n FROM `+table+` WHERE span = ? AND start IN (SELECT value FROM json_each(?))`+nsCond,
			append([]any{l.span, string(list)}, nsArgs...), func(v []driver.Value) error {
				t, _ := logrow.Text(v[0])
				if t == otherKey {
					rw.folded += logrow.Int(v[2])
					queries += logrow.Int(v[2])
					return nil
				}
				add(t, logrow.Int(v[2]), logrow.Int(v[1])*1000)
				return nil
			})
		if err != nil {
			return nil, 0, err
		}
	}
	// The rows no period covers: after rollup_id, and in minutes the rollups no longer keep.
	if d.log {
		type part struct{ src, from, to, lo, hi int64 }
		parts := []part{{srcAfter, w.from, w.to, p.rollupID + 1, math.MaxInt64}}
		for _, s := range p.uncovered {
			parts = append(parts, part{srcOld, s.from, s.to, 0, p.rollupID + 1})
		}
		nums := map[int64]*valueInfo{}
		for _, pt := range parts {
			cond, args := timeCond(pt.from, pt.to, pt.lo, pt.hi)
			if ns != "" {
				cond, args = cond+` AND `+d.namespaceCond("?"+strconv.Itoa(len(args)+1)), append(args, ns)
			}
			err := d.each(ctx, `SELECT l.name, (l.id >> 8) - l.late FROM log l WHERE `+cond, args, func(v []driver.Value) error {
				ts := logrow.Int(v[1])
				rw.bySrc[pt.src]++
				switch k := v[0].(type) {
				case int64:
					info := nums[k]
					if info == nil {
						info = &valueInfo{first: math.MaxInt64}
						nums[k] = info
					}
					info.queries++
					info.first = min(info.first, ts)
				case nil:
					queries++ // a row without a name: counted, as top counts it
				default:
					t, _ := logrow.Text(k)
					add(t, 1, ts)
				}
				return nil
			})
			if err != nil {
				return nil, 0, err
			}
		}
		if len(nums) > 0 {
			list, _ := json.Marshal(slices.Collect(maps.Keys(nums)))
			err := d.each(ctx, `SELECT id, name FROM names WHERE id IN (SELECT value FROM json_each(?))`, []any{string(list)}, func(v []driver.Value) error {
				t, _ := logrow.Text(v[1])
				info := nums[logrow.Int(v[0])]
				add(t, info.queries, info.first)
				return nil
			})
			if err != nil {
				return nil, 0, err
			}
		}
	}
	// Rows of schema 1, which no rollup counts (they have no namespace).
	if d.v1 != "" && ns == "" {
		err := d.each(ctx, `SELECT qname, count(*), min(ts) FROM `+d.v1+` WHERE ts >= ? GROUP BY qname`, []any{w.from * 1000}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			rw.bySrc[srcV1] += logrow.Int(v[1])
			add(t, logrow.Int(v[1]), logrow.Int(v[2]))
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	rw.plan = planSources(d, p, w.now, rw.bySrc, p.rollupID>>8)
	return rw, queries, nil
}

// sources says where new counted a window from the rollups, as top says it.
func (rw *rollupWindow) sources(queries int64, names, domains int) []string {
	out := []string{"window: " + rfc3339(rw.w.from) + " to now (" + rw.w.rounded() + "); " + plural(queries, "query") + ", " +
		plural(int64(names), "name") + " and " + plural(int64(domains), "registered domain") +
		", counted as top counts them (" + rw.why() + ": --exact reads its rows instead, slower)"}
	out = append(out, rw.plan...)
	if n := rw.bySrc[srcV1]; n > 0 {
		out = append(out, "rows of schema 1: "+count(n))
	}
	out = append(out, "first seen: a name's first row, or the start of the first period that counted it")
	if rw.folded > 0 {
		out = append(out, otherKey+": of the window's periods, "+count(rw.folded)+" queries are of names past the rollups' limit per period: a name asked only among them is not listed")
	}
	return out
}

// why says why the window was read from the rollups.
func (rw *rollupWindow) why() string {
	if rw.busy > 0 {
		return "an hour or less, but " + plural(rw.busy, "query") + ", more than the " + count(newNamespaceRowsMax) + " whose rows new --namespace reads"
	}
	return "the window is longer than 1h"
}
