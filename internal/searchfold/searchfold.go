// Package searchfold folds a namespace's A and AAAA queries, counted by name, back into the
// names its programs asked for: the stub resolver's search-list expansions of a name and the
// name as is add up to one name asked. The querylog command folds the counts of a window with
// it, and the plugin folds each hour of rollup_namespace_names into rollup_searchpath, so that
// both count alike. See docs/command.md (searchpath).
//
// Over counts by name, a namespace's search list is learned from the names that extend a name
// it also asked as is by a suffix, where the longer one failed; a name is an expansion of the
// name before its suffix; a lookup tries the first name of its order once per type asked, so
// the lookups of a name are the most tries (A or AAAA) any of its names had; how each name
// answered is how most of its tries answered, and the what-if counts apply res_nsearch's order
// to that.
package searchfold

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/dnsname"
)

// MaxNdots is the largest ndots a what-if count is given for.
const MaxNdots = 5

// Outcomes of a name a lookup tried, as res_nsearch reacts to them: it tries the next name
// after NXDOMAIN, NOERROR without an answer and SERVFAIL, and stops at an answer and at any
// other rcode (REFUSED, ...), except after the name as is tried first.
const (
	OutUnknown = iota // not tried: taken as not answering
	OutNext
	OutStop
	OutAnswer
)

// Counts are one name's A and AAAA queries in a namespace over a period.
type Counts struct {
	A, AAAA  int64
	NXDomain int64 // of them answered NXDOMAIN
	Answered int64 // NOERROR with an answer
	Stop     int64 // an rcode that ends a lookup (REFUSED, ...)
}

// Queries are the A and AAAA queries counted.
func (c *Counts) Queries() int64 { return c.A + c.AAAA }

// Tries is how many times a lookup tried the name: once per type asked.
func (c *Counts) Tries() int64 { return max(c.A, c.AAAA) }

// Add counts n queries of one type and rcode, answered of them with an answer.
func (c *Counts) Add(aaaa bool, rcode, n, answered int64) {
	if aaaa {
		c.AAAA += n
	} else {
		c.A += n
	}
	switch rcode {
	case dns.RcodeSuccess, dns.RcodeServerFailure:
	case dns.RcodeNameError:
		c.NXDomain += n
	default:
		c.Stop += n
	}
	c.Answered += answered
}

// AddRollup adds the counts of a rollup_namespace_names row: its A and AAAA queries of rcode,
// and how many of them were answered (only NOERROR rows have any).
func (c *Counts) AddRollup(rcode, a, aaaa, answered int64) {
	c.Add(false, rcode, a, answered)
	c.Add(true, rcode, aaaa, 0)
}

// Outcome is how the name answered most of the lookups that tried it.
func (c *Counts) Outcome() uint8 {
	switch {
	case c.Queries() == 0:
		return OutUnknown
	case c.Answered > 0 && 2*c.Answered >= c.Tries():
		return OutAnswer
	case 2*c.Stop > c.Queries():
		return OutStop
	}
	return OutNext
}

// Stat is what the fold says of a name asked: its lookups, the queries they sent, the NXDOMAIN
// replies to its expansions, and the queries with ndots 1..MaxNdots (A and AAAA each).
type Stat struct {
	Lookups, Queries, NXDomain int64
	WhatIf                     [MaxNdots]int64
}

// Add adds o's counts to st: stats of periods or parts of a window add up.
func (st *Stat) Add(o *Stat) {
	st.Lookups += o.Lookups
	st.Queries += o.Queries
	st.NXDomain += o.NXDomain
	for i := range st.WhatIf {
		st.WhatIf[i] += o.WhatIf[i]
	}
}

// WhatIf is how many queries res_nsearch would send for a name of dots dots with ndots, A and
// AAAA for each name it tries, given how each name answered (outcome: per suffix, then the name
// as is); a name the lookup did not try is taken as not answering. At least ndots dots: the
// name as is first, then the search list; fewer: the search list, then the name as is.
func WhatIf(outcome []uint8, dots, ndots int) int64 {
	n := len(outcome) - 1
	var sent int64
	if dots >= ndots {
		sent += 2
		if outcome[n] == OutAnswer {
			return sent
		}
		for k := range n {
			sent += 2
			if outcome[k] >= OutStop {
				return sent
			}
		}
		return sent
	}
	for k := range n {
		sent += 2
		if outcome[k] >= OutStop {
			return sent
		}
	}
	return sent + 2
}

// Dots is how many dots a fully qualified name has (res_nsearch compares it with ndots): its
// labels less one.
func Dots(name string) int { return max(dns.CountLabel(name)-1, 0) }

// EndsInLabel reports whether name ends with a label boundary before its last n bytes: the
// byte before them is a dot that is not escaped (presentation format: example\.org).
func EndsInLabel(name string, n int) bool { return dnsname.EndsLabel(name, len(name)-n-1) }

// HasSuffix reports whether name is longer than suffix s and ends with it on a label boundary
// (api.example.com.svc.cluster.local. with svc.cluster.local.).
func HasSuffix(name, s string) bool {
	return len(name) > len(s) && strings.HasSuffix(name, s) && EndsInLabel(name, len(s))
}

// BaseOf is the name a lookup asked for that sent name, and which of its names name is (k for
// suffixes[k], len(suffixes) for the name as is): the first suffix name ends with whose base
// the namespace also asked, as is or expanded by the first suffix; else the name itself.
func BaseOf(name string, suffixes []string, names map[string]*Counts) (string, int) {
	for k, s := range suffixes {
		if !HasSuffix(name, s) {
			continue
		}
		b := name[:len(name)-len(s)]
		if k == 0 || names[b] != nil || names[b+suffixes[0]] != nil {
			return b, k
		}
	}
	return name, len(suffixes)
}

// Weights are what a namespace's search list is learned from: a suffix is what a name that
// failed (NXDOMAIN) has after a name the namespace asked as is, weighed by the queries of such
// names. It returns the weights and how many names taught them. Weights of periods add up.
func Weights(names map[string]*Counts) (map[string]int64, int) {
	weight := map[string]int64{}
	taught := 0
	for name, c := range names {
		if c.NXDomain == 0 {
			continue
		}
		learned := false
		for i := 1; i < len(name)-1; i++ {
			if name[i-1] != '.' || !EndsInLabel(name[:i], 0) {
				continue
			}
			if names[name[:i]] != nil {
				weight[name[i:]] += c.Queries()
				learned = true
			}
		}
		if learned {
			taught++
		}
	}
	return weight, taught
}

// Order is the search list of the suffixes weighed: the most asked first (a lookup goes on to
// the next suffix only when the one before failed), except that a suffix comes after every
// suffix that ends with it (a search list goes outwards: team-a.svc.cluster.local. before
// svc.cluster.local.): counts differ by what each period folded into (other), and where every
// lookup failed them all they tie.
func Order(weight map[string]int64) []string {
	rest := slices.Collect(maps.Keys(weight))
	slices.SortFunc(rest, func(x, y string) int {
		return cmp.Or(cmp.Compare(weight[y], weight[x]), cmp.Compare(len(y), len(x)), strings.Compare(x, y))
	})
	var list []string
	for len(rest) > 0 {
		i := slices.IndexFunc(rest, func(s string) bool {
			return !slices.ContainsFunc(rest, func(longer string) bool { return HasSuffix(longer, s) })
		})
		list, rest = append(list, rest[i]), slices.Delete(rest, i, i+1)
	}
	return list
}

// Fold folds one namespace's names with its search list: per name asked, the counts of it and
// its expansions.
func Fold(names map[string]*Counts, suffixes []string) map[string]*Stat {
	n := len(suffixes)
	bases := map[string][]*Counts{} // per suffix, then the name as is
	for name, c := range names {
		asked, k := BaseOf(name, suffixes, names)
		b := bases[asked]
		if b == nil {
			b = make([]*Counts, n+1)
			bases[asked] = b
		}
		b[k] = c
	}
	stats := make(map[string]*Stat, len(bases))
	outcome := make([]uint8, n+1)
	for asked, b := range bases {
		st := &Stat{}
		for k, c := range b {
			outcome[k] = OutUnknown
			if c == nil {
				continue
			}
			st.Lookups = max(st.Lookups, c.Tries())
			st.Queries += c.Queries()
			if k < n {
				st.NXDomain += c.NXDomain
			}
			outcome[k] = c.Outcome()
		}
		dots := Dots(asked)
		for nd := 1; nd <= MaxNdots; nd++ {
			st.WhatIf[nd-1] = st.Lookups * WhatIf(outcome, dots, nd)
		}
		stats[asked] = st
	}
	return stats
}

// TaughtKey is the suffix under which rollup_searchpath_suffixes keeps how many names taught a
// period's weights (Weights): no suffix learned is the root.
const TaughtKey = "."

// Asked is a name asked and its fold's stats.
type Asked struct {
	Name string
	Stat
}

// Period is one namespace's fold of a period as the rollups keep it (rollup_searchpath and
// rollup_searchpath_suffixes): its names asked, the most queries first, limit of them with their
// own stats and the rest summed under other; and the weights its search list was learned from
// (the list the period is folded with), with the names that taught them under TaughtKey.
func Period(names map[string]*Counts, limit int, other string) ([]Asked, map[string]int64) {
	weights, taught := Weights(names)
	stats := Fold(names, Order(weights))
	var out []Asked
	for name, st := range stats {
		out = append(out, Asked{name, *st})
	}
	slices.SortFunc(out, func(x, y Asked) int {
		return cmp.Or(cmp.Compare(y.Queries, x.Queries), strings.Compare(x.Name, y.Name))
	})
	if len(out) > limit {
		rest := Asked{Name: other}
		for _, a := range out[limit:] {
			rest.Add(&a.Stat)
		}
		out = append(out[:limit], rest)
	}
	if taught > 0 {
		weights[TaughtKey] = int64(taught)
	}
	return out, weights
}
