package searchfold

import (
	"maps"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// TestWhatIf: res_nsearch's order, for a name of so many dots, with three suffixes: at least
// ndots dots, the name as is first; the first answer ends the lookup, as does a reply such as
// REFUSED to a suffixed name (but not to the name tried as is first).
func TestWhatIf(t *testing.T) {
	const x, nx, stop, ok = OutUnknown, OutNext, OutStop, OutAnswer
	for _, c := range []struct {
		outcome []uint8 // three suffixes, then the name as is
		dots    int
		want    [MaxNdots]int64
	}{
		{[]uint8{nx, nx, nx, ok}, 2, [MaxNdots]int64{2, 2, 8, 8, 8}}, // api.example.com in a cluster
		{[]uint8{ok, x, x, x}, 0, [MaxNdots]int64{2, 2, 2, 2, 2}},    // a service of the namespace
		{[]uint8{nx, ok, x, x}, 1, [MaxNdots]int64{6, 4, 4, 4, 4}},   // service.other-namespace
		{[]uint8{nx, nx, nx, nx}, 2, [MaxNdots]int64{8, 8, 8, 8, 8}}, // nowhere
		{[]uint8{stop, x, x, nx}, 1, [MaxNdots]int64{4, 2, 2, 2, 2}}, // REFUSED ends a search
		{[]uint8{x, x, x, stop}, 5, [MaxNdots]int64{8, 8, 8, 8, 8}},  // but not the name tried as is
		{[]uint8{x, x, x, ok}, 4, [MaxNdots]int64{2, 2, 2, 2, 8}},    // ndots:5 searches it first
	} {
		var got [MaxNdots]int64
		for nd := 1; nd <= MaxNdots; nd++ {
			got[nd-1] = WhatIf(c.outcome, c.dots, nd)
		}
		if got != c.want {
			t.Errorf("WhatIf(%v, %d dots) = %v, want %v", c.outcome, c.dots, got, c.want)
		}
	}
}

// TestHasSuffix: a suffix begins after a dot that is not escaped.
func TestHasSuffix(t *testing.T) {
	for _, c := range []struct {
		name, suffix string
		want         bool
	}{
		{"api.example.com.svc.cluster.local.", "svc.cluster.local.", true},
		{"svc.cluster.local.", "svc.cluster.local.", false},
		{`a\.svc.cluster.local.`, "svc.cluster.local.", false},
		{`a\\.svc.cluster.local.`, "svc.cluster.local.", true},
		{"apisvc.cluster.local.", "svc.cluster.local.", false},
	} {
		if got := HasSuffix(c.name, c.suffix); got != c.want {
			t.Errorf("HasSuffix(%q, %q) = %v, want %v", c.name, c.suffix, got, c.want)
		}
	}
}

// lookups counts n lookups of name through search (ndots:5: every expansion first, then the
// name as is), A and AAAA each: NXDOMAIN to the expansions, and rcode to the name as is,
// answered if NOERROR.
func lookups(names map[string]*Counts, name string, search []string, n, rcode int64) {
	at := func(name string) *Counts {
		if names[name] == nil {
			names[name] = &Counts{}
		}
		return names[name]
	}
	for _, s := range search {
		at(name+s).Add(false, dns.RcodeNameError, n, 0)
		at(name+s).Add(true, dns.RcodeNameError, n, 0)
	}
	answered := int64(0)
	if rcode == dns.RcodeSuccess {
		answered = n
	}
	at(name).Add(false, rcode, n, answered)
	at(name).Add(true, rcode, n, answered)
}

// TestFold: a namespace's counts by name fold into the names asked, with the search list
// learned from them: the list goes outwards whatever the weights, and each name asked has the
// lookups, queries, NXDOMAINs and what-if counts worked out by hand.
func TestFold(t *testing.T) {
	search := []string{"team-a.svc.cluster.local.", "svc.cluster.local.", "cluster.local."}
	names := map[string]*Counts{}
	lookups(names, "www.example.org.", search, 2, dns.RcodeSuccess)
	lookups(names, "x.example.net.", search, 1, dns.RcodeNameError)
	lookups(names, "api.", search[:1], 3, dns.RcodeSuccess)                      // api.team-a.svc.cluster.local. NXDOMAIN, then api.
	names["db.team-a.svc.cluster.local."] = &Counts{A: 5, AAAA: 5, Answered: 10} // answered at the first suffix

	weights, taught := Weights(names)
	// team-a.svc.cluster.local.: 4 + 2 + 6 queries of expansions of www, x and api; the
	// others 4 + 2; taught by 3 expansions of www and of x, and 1 of api
	if want := map[string]int64{search[0]: 12, search[1]: 6, search[2]: 6}; !maps.Equal(weights, want) || taught != 7 {
		t.Errorf("Weights = %v, %d names; want %v, 7", weights, taught, want)
	}
	if got := Order(weights); !slices.Equal(got, search) {
		t.Errorf("Order = %q, want %q", got, search)
	}
	// Heavier outer suffixes still come after those that end with them.
	if got := Order(map[string]int64{"cluster.local.": 10, "svc.cluster.local.": 5, "team-a.svc.cluster.local.": 1}); !slices.Equal(got, search) {
		t.Errorf("Order of outer suffixes weighing more = %q, want %q", got, search)
	}
	got := Fold(names, search)
	want := map[string]Stat{
		// 2 dots: ndots 1 and 2 ask it as is first (2 queries a lookup), 3 to 5 search first (8)
		"www.example.org.": {Lookups: 2, Queries: 16, NXDomain: 12, WhatIf: [MaxNdots]int64{4, 4, 16, 16, 16}},
		"x.example.net.":   {Lookups: 1, Queries: 8, NXDomain: 6, WhatIf: [MaxNdots]int64{8, 8, 8, 8, 8}},
		// 0 dots: the search list first; api.team-a... NXDOMAIN, the other suffixes not tried
		// (taken as not answering), then api. answers: 8 queries with any ndots
		"api.": {Lookups: 3, Queries: 12, NXDomain: 6, WhatIf: [MaxNdots]int64{24, 24, 24, 24, 24}},
		// answered at the first suffix: 2 queries with any ndots
		"db.": {Lookups: 5, Queries: 10, WhatIf: [MaxNdots]int64{10, 10, 10, 10, 10}},
	}
	if len(got) != len(want) {
		t.Errorf("Fold: %d names asked, want %d: %v", len(got), len(want), slices.Sorted(maps.Keys(got)))
	}
	for name, w := range want {
		if g := got[name]; g == nil || *g != w {
			t.Errorf("Fold: %s = %+v, want %+v", name, g, w)
		}
	}
}

// TestBaseOf: a name is an expansion by the first suffix it ends with whose base the namespace
// asked too; by the first suffix always; else it is asked as is.
func TestBaseOf(t *testing.T) {
	search := []string{"a.svc.cluster.local.", "svc.cluster.local."}
	names := map[string]*Counts{"api.": {}, "web.svc.cluster.local.": {}}
	for _, c := range []struct {
		name, base string
		k          int
	}{
		{"api.a.svc.cluster.local.", "api.", 0},
		{"x.a.svc.cluster.local.", "x.", 0},                     // the first suffix: always an expansion
		{"api.svc.cluster.local.", "api.", 1},                   // api. asked as is
		{"web.svc.cluster.local.", "web.svc.cluster.local.", 2}, // web. never asked: a name of its own
		{"www.example.org.", "www.example.org.", 2},
	} {
		if base, k := BaseOf(c.name, search, names); base != c.base || k != c.k {
			t.Errorf("BaseOf(%q) = %q, %d; want %q, %d", c.name, base, k, c.base, c.k)
		}
	}
}

// TestPeriod: a period keeps limit names asked, the most queries first, and sums the rest under
// other; its weights say how many names taught them under TaughtKey.
func TestPeriod(t *testing.T) {
	search := []string{"team-a.svc.cluster.local.", "svc.cluster.local.", "cluster.local."}
	names := map[string]*Counts{}
	lookups(names, "www.example.org.", search, 2, dns.RcodeSuccess) // 16 queries
	lookups(names, "x.example.net.", search, 1, dns.RcodeNameError) // 8
	lookups(names, "api.", search[:1], 3, dns.RcodeSuccess)         // 12
	names["db.team-a.svc.cluster.local."] = &Counts{A: 5, AAAA: 5, Answered: 10}
	asked, weights := Period(names, 2, "(other)")
	want := []Asked{
		{"www.example.org.", Stat{Lookups: 2, Queries: 16, NXDomain: 12, WhatIf: [MaxNdots]int64{4, 4, 16, 16, 16}}},
		{"api.", Stat{Lookups: 3, Queries: 12, NXDomain: 6, WhatIf: [MaxNdots]int64{24, 24, 24, 24, 24}}},
		// db. (10 queries) and x.example.net. (8)
		{"(other)", Stat{Lookups: 6, Queries: 18, NXDomain: 6, WhatIf: [MaxNdots]int64{18, 18, 18, 18, 18}}},
	}
	if !slices.Equal(asked, want) {
		t.Errorf("Period(limit 2) = %+v\nwant %+v", asked, want)
	}
	if want := map[string]int64{search[0]: 12, search[1]: 6, search[2]: 6, TaughtKey: 7}; !maps.Equal(weights, want) {
		t.Errorf("Period's weights = %v, want %v", weights, want)
	}
}
