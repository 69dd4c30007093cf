package main

import (
	"cmp"
	"context"
	"database/sql/driver"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
)

// searchpath over a long window folds counts, not lookups: the rollups keep, per minute, hour
// and day, each namespace's names with their A and AAAA queries by rcode and how many were
// answered (rollup_namespace_names), and the rows after them are counted the same way. A name
// and its expansions by the search list sit side by side in those counts, so the fold is the
// same, by name instead of by lookup:
//
//   - the search list of a namespace is learned from the names that extend a name the
//     namespace also asked as is by a suffix, where the longer one failed (or is --search);
//   - a name is an expansion of the name before its suffix, and every expansion and the name
//     as is add up to the name asked;
//   - a lookup tries the first name of its order once per type asked, so the lookups of a name
//     are the most tries (A or AAAA) any of its names had;
//   - how each name answered is how most of its tries answered, and the what-if counts apply
//     res_nsearch's order to that, as the fold of rows does per lookup.
//
// Clients that are no pod have no namespace: the rollups do not count their names, so a long
// window reports the namespaces' lookups only.

// spRowsWindow is the longest window searchpath folds rows for: 1 hour of 10,000 queries a
// second is read in about a second. Longer windows are folded from the rollups.
const spRowsWindow = 3600 // seconds

// spCounts are one name's A and AAAA queries in a namespace over the window.
type spCounts struct {
	a, aaaa  int64
	nxdomain int64 // of them answered NXDOMAIN
	answered int64 // NOERROR with an answer
	stop     int64 // an rcode that ends a lookup (REFUSED, ...)
}

func (c *spCounts) queries() int64 { return c.a + c.aaaa }

// tries is how many times a lookup tried the name: once per type asked.
func (c *spCounts) tries() int64 { return max(c.a, c.aaaa) }

func (c *spCounts) add(aaaa bool, rcode, n, answered int64) {
	if aaaa {
		c.aaaa += n
	} else {
		c.a += n
	}
	switch rcode {
	case dns.RcodeSuccess, dns.RcodeServerFailure:
	case dns.RcodeNameError:
		c.nxdomain += n
	default:
		c.stop += n
	}
	c.answered += answered
}

// outcome is how the name answered most of the lookups that tried it.
func (c *spCounts) outcome() uint8 {
	switch {
	case c.queries() == 0:
		return outUnknown
	case c.answered > 0 && 2*c.answered >= c.tries():
		return outAnswer
	case 2*c.stop > c.queries():
		return outStop
	}
	return outNext
}

// spRollups is what a long window was read from.
type spRollups struct {
	plan     *plan
	w        window
	rowsRead [2]int64 // A and AAAA rows of namespaces read: after the rollups, in minutes they no longer keep
}

// sources says in words where the counts came from, as top says it.
func (sp *spRollups) sources(d *database) []string {
	var bySrc [6]int64
	bySrc[srcAfter], bySrc[srcOld] = sp.rowsRead[0], sp.rowsRead[1]
	out := planSources(d, sp.plan, sp.w.now, bySrc, sp.plan.rollupID>>8)
	if d.v1 != "" {
		out = append(out, "rows of schema 1 have no namespace and are not counted")
	}
	return out
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
	byNS := map[string]map[string]*spCounts{}
	at := func(ns, name string) *spCounts {
		names := byNS[ns]
		if names == nil {
			names = map[string]*spCounts{}
			byNS[ns] = names
		}
		c := names[name]
		if c == nil {
			c = &spCounts{}
			names[name] = c
		}
		return c
	}
	nsCond, nsArgs := "", []any(nil)
	if opt.namespace != "" {
		nsCond, nsArgs = ` AND namespace = ?`, []any{opt.namespace}
	}
	if d.pods {
		for _, l := range []struct {
			span  int64
			spans []span
		}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
			for _, s := range l.spans {
				err := d.each(ctx, `SELECT namespace, name, rcode, a, aaaa, answered FROM rollup_namespace_names
					WHERE span = ? AND start >= ? AND start < ? AND a + aaaa > 0 AND name <> '(other)'`+nsCond,
					append([]any{l.span, s.from, s.to}, nsArgs...), func(v []driver.Value) error {
						ns, _ := logrow.Text(v[0])
						name, _ := logrow.Text(v[1])
						c := at(ns, strings.ToLower(name))
						rcode, a, aaaa, answered := logrow.Int(v[2]), logrow.Int(v[3]), logrow.Int(v[4]), logrow.Int(v[5])
						// answered counts A and AAAA together: only NOERROR rows have any
						c.add(false, rcode, a, answered)
						c.add(true, rcode, aaaa, 0)
						return nil
					})
				if err != nil {
					return nil, err
				}
			}
		}
	}
	// The rows after the rollups, and in minutes they no longer keep, are counted as the
	// rollups would count them.
	sp := &spRollups{plan: p, w: w}
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
					c := at(ns, sc.a.names[q.name])
					c.add(q.aaaa, int64(q.rcode), 1, b2i(q.ok))
					sp.rowsRead[min(i, 1)]++
				}
			}
		}
	}
	a := newSPAnalysis()
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		foldCounts(a, ns, byNS[ns], opt.search)
	}
	return &spResult{a: a, rollups: sp}, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// foldCounts adds the names of one namespace to a: its search list (given, or learned from the
// names), then each name asked with the counts of its expansions.
func foldCounts(a *spAnalysis, ns string, names map[string]*spCounts, given []string) {
	g := &spGroup{namespace: ns, suffixes: given, given: given != nil}
	if !g.given {
		g.suffixes, g.seenIn = learnFromCounts(names)
	}
	group := int32(len(a.groups))
	a.groups = append(a.groups, g)
	n := len(g.suffixes)
	type base struct{ names []*spCounts } // per suffix, then the name as is
	bases := map[string]*base{}
	for name, c := range names {
		a.rows += c.queries()
		asked, k := baseOf(name, g.suffixes, names)
		b := bases[asked]
		if b == nil {
			b = &base{names: make([]*spCounts, n+1)}
			bases[asked] = b
		}
		b.names[k] = c
	}
	outcome := make([]uint8, n+1)
	for asked, b := range bases {
		st := &spStat{}
		for k, c := range b.names {
			outcome[k] = outUnknown
			if c == nil {
				continue
			}
			st.lookups = max(st.lookups, c.tries())
			st.queries += c.queries()
			if k < n {
				st.nxdomain += c.nxdomain
			}
			outcome[k] = c.outcome()
		}
		name := a.intern(asked)
		dots := a.dotsOf(name)
		for nd := 1; nd <= maxNdots; nd++ {
			st.whatIf[nd-1] = st.lookups * whatIf(outcome, dots, nd)
		}
		a.stats[spKey{group, name}] = st
	}
}

// baseOf is the name a lookup asked for that sent name, and which of its names name is (k for
// suffixes[k], len(suffixes) for the name as is): the first suffix name ends with whose base
// the namespace also asked, as is or expanded by the first suffix; else the name itself.
func baseOf(name string, suffixes []string, names map[string]*spCounts) (string, int) {
	for k, s := range suffixes {
		if len(name) <= len(s) || !strings.HasSuffix(name, s) || !endsInLabel(name, len(s)) {
			continue
		}
		b := name[:len(name)-len(s)]
		if k == 0 || names[b] != nil || names[b+suffixes[0]] != nil {
			return b, k
		}
	}
	return name, len(suffixes)
}

// learnFromCounts learns a namespace's search list from its names: a suffix is what a name
// that failed (NXDOMAIN) has after a name the namespace asked as is. The list is ordered by
// how often its expansions were asked (a lookup goes on to the next suffix only when the one
// before failed), except that a suffix comes after every learned suffix that ends with it (a
// search list goes outwards: team-a.svc.cluster.local. before svc.cluster.local.). It returns
// the list and how many names taught it.
func learnFromCounts(names map[string]*spCounts) ([]string, int) {
	weight := map[string]int64{}
	taught := 0
	for name, c := range names {
		if c.nxdomain == 0 {
			continue
		}
		learned := false
		for i := 1; i < len(name)-1; i++ {
			if name[i-1] != '.' || !endsInLabel(name[:i], 0) {
				continue
			}
			if names[name[:i]] != nil {
				weight[name[i:]] += c.queries()
				learned = true
			}
		}
		if learned {
			taught++
		}
	}
	// The most asked first, but a suffix that another ends with after it: counts differ by
	// what each period folded into (other), and where every lookup failed them all they tie.
	rest := slices.Collect(maps.Keys(weight))
	slices.SortFunc(rest, func(x, y string) int {
		return cmp.Or(cmp.Compare(weight[y], weight[x]), cmp.Compare(len(y), len(x)), strings.Compare(x, y))
	})
	var list []string
	for len(rest) > 0 {
		i := slices.IndexFunc(rest, func(s string) bool {
			return !slices.ContainsFunc(rest, func(longer string) bool { return nests(longer, s) })
		})
		list, rest = append(list, rest[i]), slices.Delete(rest, i, i+1)
	}
	return list, taught
}

// nests reports whether suffix longer ends with suffix s on a label boundary
// (team-a.svc.cluster.local. with svc.cluster.local.).
func nests(longer, s string) bool {
	return len(longer) > len(s) && strings.HasSuffix(longer, s) && endsInLabel(longer, len(s))
}
