package main

import (
	"context"
	"database/sql/driver"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/searchfold"
)

// searchpath over a long window folds counts, not lookups (internal/searchfold): a name and its
// expansions by the search list sit side by side in the counts of a namespace's names, so the
// fold is the same, by name instead of by lookup.
//
// The writer folds each hour's names (rollup_namespace_names) once it is summed, and keeps per
// namespace the names asked with their counts (rollup_searchpath, days summed from their hours)
// and the weights it learned the search list from (rollup_searchpath_suffixes). A window's
// days and hours are read from those and added up, and so are the minutes of the hour not
// summed yet, which the writer folds once each is over (span 60); its search list per
// namespace is ordered from the summed weights. The rest of the window (the minutes not folded:
// the current one, or those of a file written before minutes were folded; the rows after the
// rollups and in minutes they no longer keep) is counted by name and folded here with that
// list, its own weights added. With --search, the hours were folded with the lists learned, not the one
// given: the window is folded from the namespaces' names instead, as before those tables.
//
// Clients that are no pod have no namespace: the rollups do not count their names, so a long
// window reports the namespaces' lookups only.

// spRowsWindow is the longest window searchpath folds rows for, and spRowsMax the most
// queries: the rows fold reads about 450,000 rows a second (an hour of the SQL recipes' file,
// 452,500 rows, in 1.0 s of CPU), so a longer or busier window (an hour at 10,000 queries a
// second is 36 million rows) is folded from the rollups.
const (
	spRowsWindow = 3600 // seconds
	spRowsMax    = 300_000
)

// spRollups is what a long window was read from.
type spRollups struct {
	plan     *plan
	w        window
	rowsRead [2]int64 // A and AAAA rows of namespaces read: after the rollups, in minutes they no longer keep
	tables   string   // the rollup tables read, in words
	busy     int64    // a window of an hour or less, folded from the rollups for its queries
}

// sources says in words where the counts came from, as top says it, and which tables.
func (sp *spRollups) sources(d *database) []string {
	var bySrc [6]int64
	bySrc[srcAfter], bySrc[srcOld] = sp.rowsRead[0], sp.rowsRead[1]
	out := planSources(d, sp.plan, sp.w.now, bySrc, sp.plan.rollupID>>8)
	if sp.busy > 0 {
		out = append(out, fmt.Sprintf("from the rollups although an hour or less: its %s are more than the %s searchpath folds from the rows",
			plural(sp.busy, "query"), count(spRowsMax)))
	}
	if sp.tables != "" {
		out = append(out, "tables read: "+sp.tables)
	}
	if d.v1 != "" {
		out = append(out, "rows of schema 1 have no namespace and are not counted")
	}
	return out
}

// spNamespace is what a long window holds of one namespace: the folds of its periods, added
// up, and the counts by name of the rest, to fold.
type spNamespace struct {
	stats   map[string]*spStat // by name asked
	weights map[string]int64   // by suffix
	taught  int                // names the weights were learned from (per period)
	counts  map[string]*searchfold.Counts
}

// searchpathRollups folds the window w of the rollups and the rows after them.
func (d *database) searchpathRollups(ctx context.Context, w window, opt spOptions) (*spResult, error) {
	w, err := d.byHours(ctx, w)
	if err != nil {
		return nil, err
	}
	p, err := d.plan(ctx, w)
	if err != nil {
		return nil, err
	}
	byNS := map[string]*spNamespace{}
	at := func(ns string) *spNamespace {
		n := byNS[ns]
		if n == nil {
			n = &spNamespace{stats: map[string]*spStat{}, weights: map[string]int64{}, counts: map[string]*searchfold.Counts{}}
			byNS[ns] = n
		}
		return n
	}
	countOf := func(ns, name string) *searchfold.Counts {
		names := at(ns).counts
		c := names[name]
		if c == nil {
			c = &searchfold.Counts{}
			names[name] = c
		}
		return c
	}
	nsCond, nsArgs := "", []any(nil)
	if opt.namespace != "" {
		nsCond, nsArgs = ` AND namespace = ?`, []any{opt.namespace}
	}
	sp := &spRollups{plan: p, w: w}
	folded := d.foldRollups && opt.search == nil
	if d.pods {
		// names adds the counts of the namespaces' names from start to end; minutes counts
		// the minutes that had some.
		var minutes int64
		names := func(span, from, to int64) error {
			last := int64(-1)
			return d.each(ctx, `SELECT namespace, name, rcode, a, aaaa, answered, start FROM rollup_namespace_names
				WHERE span = ? AND start >= ? AND start < ? AND a + aaaa > 0 AND name <> '(other)'`+nsCond,
				append([]any{span, from, to}, nsArgs...), func(v []driver.Value) error {
					ns, _ := logrow.Text(v[0])
					name, _ := logrow.Text(v[1])
					c := countOf(ns, strings.ToLower(name))
					c.AddRollup(logrow.Int(v[2]), logrow.Int(v[3]), logrow.Int(v[4]), logrow.Int(v[5]))
					if start := logrow.Int(v[6]); start != last {
						last = start
						minutes++
					}
					return nil
				})
		}
		var foldedMinutes int64
		for _, l := range []struct {
			span  int64
			spans []span
		}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
			for _, s := range l.spans {
				args := append([]any{l.span, s.from, s.to}, nsArgs...)
				switch {
				case !folded:
					if err := names(l.span, s.from, s.to); err != nil {
						return nil, err
					}
				case l.span > 60:
					if err := d.searchpathFolds(ctx, args, nsCond, at); err != nil {
						return nil, err
					}
				default:
					// The minutes the writer folded (foldMinutes), and the names of the
					// others: the current minute's, or those of a file written before.
					var starts []int64
					if err := d.each(ctx, `SELECT DISTINCT start FROM rollup_searchpath WHERE span = 60 AND start >= ? AND start < ?`,
						[]any{s.from, s.to}, func(v []driver.Value) error {
							starts = append(starts, logrow.Int(v[0]))
							return nil
						}); err != nil {
						return nil, err
					}
					if len(starts) > 0 {
						if err := d.searchpathFolds(ctx, args, nsCond, at); err != nil {
							return nil, err
						}
						foldedMinutes += int64(len(starts))
					}
					for _, g := range gaps(s, merge(starts, 60)) {
						if err := names(60, g.from, g.to); err != nil {
							return nil, err
						}
					}
				}
			}
		}
		// The tables read, in words.
		var tables, ofFolds []string
		if len(p.days)+len(p.hours) > 0 && folded {
			ofFolds = append(ofFolds, "days and hours")
		}
		if foldedMinutes > 0 {
			ofFolds = append(ofFolds, plural(foldedMinutes, "minute")+" folded by the writer")
		}
		if len(ofFolds) > 0 {
			tables = append(tables, "rollup_searchpath and rollup_searchpath_suffixes ("+strings.Join(ofFolds, ", ")+")")
		}
		switch {
		case !folded && len(p.days)+len(p.hours)+len(p.minutes) > 0:
			tables = append(tables, "rollup_namespace_names")
		case minutes > 0:
			tables = append(tables, "rollup_namespace_names ("+plural(minutes, "minute")+" folded here)")
		}
		if !folded && d.foldRollups {
			tables = append(tables, "not rollup_searchpath (--search: its folds used the learned search lists)")
		}
		sp.tables = strings.Join(tables, ", ")
	}
	// The rows after the rollups, and in minutes they no longer keep, are counted as the
	// rollups would count them.
	if d.log {
		parts := []*where{newWhere()}
		parts[0].ids(p.rollupID+1, math.MaxInt64)
		parts[0].add(`(l.id >> 8) - l.late >= ?`, []any{w.from * 1000}, "")
		for _, s := range p.uncovered {
			pw := newWhere()
			pw.ids(s.from*1000<<8, p.rollupID+1)
			pw.add(`(l.id >> 8) - l.late >= ? AND (l.id >> 8) - l.late < ?`, []any{s.from * 1000, s.to * 1000}, "")
			parts = append(parts, pw)
		}
		for i, pw := range parts {
			sc := &spScan{d: d, a: newSPAnalysis(), opt: opt, streams: map[[2]string]*spStream{}, groups: map[[2]string]int32{},
				namespaces: newNamespaces(d), nameRefs: map[int64]int32{}, clientRefs: map[int64]string{}}
			if err := sc.log(ctx, pw); err != nil {
				return nil, err
			}
			for _, s := range sc.a.streams {
				ns := sc.a.groups[s.group].namespace
				if ns == "" {
					continue // no namespace: not in the rollups either
				}
				for _, q := range s.rows {
					countOf(ns, sc.a.names[q.name]).Add(q.aaaa, int64(q.rcode), 1, b2i(q.ok))
					sp.rowsRead[min(i, 1)]++
				}
			}
		}
	}
	a := newSPAnalysis()
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		addNamespace(a, ns, byNS[ns], opt.search)
	}
	return &spResult{a: a, rollups: sp}, nil
}

// searchpathFolds adds the rows of rollup_searchpath and rollup_searchpath_suffixes of span
// from start to end (args: span, start, end, then the namespace's if nsCond has one).
func (d *database) searchpathFolds(ctx context.Context, args []any, nsCond string, at func(ns string) *spNamespace) error {
	err := d.each(ctx, `SELECT namespace, name, lookups, queries, nxdomain, ndots1, ndots2, ndots3, ndots4, ndots5 FROM rollup_searchpath
		WHERE span = ? AND start >= ? AND start < ?`+nsCond, args, func(v []driver.Value) error {
		ns, _ := logrow.Text(v[0])
		name, _ := logrow.Text(v[1])
		stats := at(ns).stats
		st := stats[name]
		if st == nil {
			st = &spStat{}
			stats[name] = st
		}
		o := spStat{Lookups: logrow.Int(v[2]), Queries: logrow.Int(v[3]), NXDomain: logrow.Int(v[4])}
		for i := range o.WhatIf {
			o.WhatIf[i] = logrow.Int(v[5+i])
		}
		st.Add(&o)
		return nil
	})
	if err != nil {
		return err
	}
	return d.each(ctx, `SELECT namespace, suffix, weight FROM rollup_searchpath_suffixes
		WHERE span = ? AND start >= ? AND start < ?`+nsCond, args, func(v []driver.Value) error {
		ns, _ := logrow.Text(v[0])
		suffix, _ := logrow.Text(v[1])
		n := at(ns)
		if suffix == searchfold.TaughtKey {
			n.taught += int(logrow.Int(v[2]))
		} else {
			n.weights[suffix] += logrow.Int(v[2])
		}
		return nil
	})
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// addNamespace adds one namespace of a long window to a: its search list (given, or ordered
// from the weights of its folds and of its counts), the stats of its folds, and the fold of its
// counts with that list.
func addNamespace(a *spAnalysis, ns string, n *spNamespace, given []string) {
	g := &spGroup{namespace: ns, suffixes: given, given: given != nil}
	if !g.given {
		weights, taught := searchfold.Weights(n.counts)
		for s, w := range n.weights {
			weights[s] += w
		}
		g.suffixes, g.seenIn = searchfold.Order(weights), taught+n.taught
	}
	group := int32(len(a.groups))
	a.groups = append(a.groups, g)
	for _, c := range n.counts {
		a.rows += c.Queries()
	}
	for _, st := range n.stats {
		a.rows += st.Queries
	}
	for _, stats := range []map[string]*spStat{n.stats, searchfold.Fold(n.counts, g.suffixes)} {
		for name, st := range stats {
			key := spKey{group, a.intern(name)}
			if have := a.stats[key]; have != nil {
				have.Add(st)
				continue
			}
			a.stats[key] = st
		}
	}
}
