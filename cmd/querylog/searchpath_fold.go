package main

import (
	"cmp"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/searchfold"
)

// spQuery is one A or AAAA query as searchpath needs it.
type spQuery struct {
	ts, seq int64 // arrival (Unix ms), and the order read (of the log: by id, the order written)
	name    int32 // index in spAnalysis.names: fully qualified, lower-cased
	aaaa    bool
	rcode   uint16
	ok      bool // NOERROR with at least one answer: the resolver stops there
}

// spStream is the queries of one client in one namespace (or none), in arrival order once
// sorted.
type spStream struct {
	client string
	group  int32
	rows   []spQuery
}

// spGroup is a namespace, or a client without namespace: the unit whose search list is
// learned and whose lookups are counted.
type spGroup struct {
	namespace, client string // one of them is ""; a client may be "" too (not logged)
	suffixes          []string
	given             bool            // suffixes came from --search
	ranks             map[string]rank // learning: the positions a suffix was seen at
	seenIn            int             // lookups the suffixes were learned from
}

type rank struct{ sum, n int }

// spKey is an intended name in a group.
type spKey struct {
	group int32
	name  int32 // the name as asked, fully qualified (the as-is query)
}

// spStat is what searchpath reports for an intended name in a group.
type spStat = searchfold.Stat

// spAnalysis holds the rows read and what is made of them.
type spAnalysis struct {
	names   []string
	nameIdx map[string]int32
	dots    []int16 // of each name, once asked (dotsOf); -1: not yet
	streams []*spStream
	groups  []*spGroup
	stats   map[spKey]*spStat
	rows    int64 // A and AAAA rows read
}

func newSPAnalysis() *spAnalysis {
	return &spAnalysis{nameIdx: map[string]int32{}, stats: map[spKey]*spStat{}}
}

func (a *spAnalysis) intern(name string) int32 {
	if i, ok := a.nameIdx[name]; ok {
		return i
	}
	i := int32(len(a.names))
	a.names = append(a.names, name)
	a.nameIdx[name] = i
	return i
}

// dotsOf is how many dots name i has, once worked out.
func (a *spAnalysis) dotsOf(i int32) int {
	for len(a.dots) < len(a.names) {
		a.dots = append(a.dots, -1)
	}
	if a.dots[i] < 0 {
		a.dots[i] = int16(searchfold.Dots(a.names[i]))
	}
	return int(a.dots[i])
}

// outcome is how a lookup's query of a name answered (searchfold's outcomes).
func outcome(q *spQuery) uint8 {
	switch {
	case q.ok:
		return searchfold.OutAnswer
	case q.rcode == dns.RcodeSuccess || q.rcode == dns.RcodeNameError || q.rcode == dns.RcodeServerFailure:
		return searchfold.OutNext
	}
	return searchfold.OutStop
}

// extends reports whether long is short (fully qualified) with more labels after it, and
// returns them: api.example.com.svc.cluster.local. extends api.example.com. by
// svc.cluster.local.
func extends(long, short string) (string, bool) {
	if len(long) <= len(short) || !strings.HasPrefix(long, short) || !searchfold.EndsInLabel(short, 0) {
		return "", false
	}
	return long[len(short):], true
}

// learn finds, in one stream sorted by arrival, the queries that extend a query asked shortly
// after or before them by a suffix, where the first of the two failed (a resolver goes on only
// after a failure): a search list expansion and the name as asked. Within a lookup the suffixes
// come in the list's order; their positions are summed per group.
func (a *spAnalysis) learn(s *spStream) {
	type event struct {
		base   int32
		suffix string
		ts     int64
		row    int // of the expansion: within a millisecond, the order the rows are in
	}
	var events []event
	for i := range s.rows {
		q := &s.rows[i]
		b := a.names[q.name]
		for j := i - 1; j >= 0 && j >= i-learnBack && q.ts-s.rows[j].ts <= lookupGapMS; j-- {
			p := &s.rows[j]
			if p.ok {
				continue
			}
			e := a.names[p.name]
			if suffix, ok := extends(e, b); ok { // an expansion, then the name as asked
				events = append(events, event{q.name, suffix, p.ts, j})
			} else if suffix, ok := extends(b, e); ok { // the name as asked, then an expansion
				events = append(events, event{p.name, suffix, q.ts, i})
			}
		}
	}
	slices.SortFunc(events, func(x, y event) int {
		return cmp.Or(cmp.Compare(x.base, y.base), cmp.Compare(x.ts, y.ts), cmp.Compare(x.row, y.row))
	})
	g := a.groups[s.group]
	for i := 0; i < len(events); {
		// one lookup: the events of a base within lookupGapMS of each other
		j, order := i+1, []string{events[i].suffix}
		for ; j < len(events) && events[j].base == events[i].base && events[j].ts-events[j-1].ts <= lookupGapMS; j++ {
			if !slices.Contains(order, events[j].suffix) {
				order = append(order, events[j].suffix)
			}
		}
		if g.ranks == nil {
			g.ranks = map[string]rank{}
		}
		for r, suffix := range order {
			x := g.ranks[suffix]
			g.ranks[suffix] = rank{x.sum + r, x.n + 1}
		}
		g.seenIn++
		i = j
	}
}

// learned orders the suffixes learned for g: by their mean position in the lookups they were
// seen in, then the most seen first.
func (g *spGroup) learned() []string {
	var list []string
	for s := range g.ranks {
		list = append(list, s)
	}
	slices.SortFunc(list, func(x, y string) int {
		rx, ry := g.ranks[x], g.ranks[y]
		return cmp.Or(cmp.Compare(rx.sum*ry.n, ry.sum*rx.n), cmp.Compare(ry.n, rx.n), strings.Compare(x, y))
	})
	return list
}

// spLookup is one lookup being folded: the names it tried and how each answered.
type spLookup struct {
	base      int32 // the name as asked, fully qualified
	asIsFirst bool  // it tried the name as is first (at least ndots dots)
	pos       int   // the furthest position in its order of names it has reached
	lastTS    int64
	seen      []uint8 // per name (suffix k, then the name as is at len(suffixes)): 1 A, 2 AAAA asked
	outcome   []uint8
	queries   int64
	nxdomain  int64 // NXDOMAIN replies to expansions
}

// maxOpen bounds the lookups of one stream folded at once (threads of one program, or
// programs sharing an address, each with its own).
const maxOpen = 64

// position is where name k (a suffix, or len(suffixes) for the name as is) comes in the order
// a lookup tries names.
func (l *spLookup) position(k, n int) int {
	if !l.asIsFirst {
		return k
	}
	if k == n {
		return 0
	}
	return k + 1
}

// candidate is which of l's names name is: k for base.suffixes[k], len(suffixes) for the base
// itself, -1 for none.
func (a *spAnalysis) candidate(l *spLookup, name string, suffixes []string) int {
	base := a.names[l.base]
	if name == base {
		return len(suffixes)
	}
	rest, ok := extends(name, base)
	if !ok {
		return -1
	}
	return slices.Index(suffixes, rest)
}

// fold groups the queries of s into lookups, with the search list of its group, and adds
// them up by the name asked.
func (a *spAnalysis) fold(s *spStream) {
	suffixes := a.groups[s.group].suffixes
	n := len(suffixes)
	var open, free []*spLookup
	var oldest int64 // the earliest lastTS of the open lookups, or before it
	end := func(l *spLookup) {
		key := spKey{s.group, l.base}
		st := a.stats[key]
		if st == nil {
			st = &spStat{}
			a.stats[key] = st
		}
		st.Lookups++
		st.Queries += l.queries
		st.NXDomain += l.nxdomain
		dots := a.dotsOf(l.base)
		for nd := 1; nd <= maxNdots; nd++ {
			st.WhatIf[nd-1] += searchfold.WhatIf(l.outcome, dots, nd)
		}
		free = append(free, l)
	}
	for i := range s.rows {
		q := &s.rows[i]
		name := a.names[q.name]
		if len(open) > 0 && q.ts-oldest > lookupGapMS {
			oldest = q.ts
			open = slices.DeleteFunc(open, func(l *spLookup) bool {
				if q.ts-l.lastTS > lookupGapMS {
					end(l)
					return true
				}
				oldest = min(oldest, l.lastTS)
				return false
			})
		}
		bit := uint8(1)
		if q.aaaa {
			bit = 2
		}
		var into *spLookup
		k := -1
		for j := len(open) - 1; j >= 0 && into == nil; j-- { // the newest first
			l := open[j]
			if k = a.candidate(l, name, suffixes); k < 0 || l.seen[k]&bit != 0 {
				continue
			}
			// The next name in the lookup's order; or, in the same millisecond, one before
			// (two replies sent at once are logged in either order).
			if p := l.position(k, n); p >= l.pos || q.ts == l.lastTS {
				into = l
			}
		}
		if into == nil {
			if k := len(free); k > 0 { // lookups ended are used again: one allocation less a lookup
				into, free = free[k-1], free[:k-1]
				seen, outcome := into.seen, into.outcome
				clear(seen)
				clear(outcome)
				*into = spLookup{seen: seen, outcome: outcome}
			} else {
				into = &spLookup{seen: make([]uint8, n+1), outcome: make([]uint8, n+1)}
			}
			into.base, into.asIsFirst = q.name, true
			k = n
			if n > 0 && searchfold.HasSuffix(name, suffixes[0]) {
				// A search begins with the first suffix.
				into.base, into.asIsFirst, k = a.intern(name[:len(name)-len(suffixes[0])]), false, 0
			}
			if len(open) == maxOpen {
				end(open[0])
				open = open[1:]
			}
			open = append(open, into)
			if len(open) == 1 {
				oldest = q.ts
			}
		}
		into.pos = max(into.pos, into.position(k, n))
		into.lastTS = q.ts
		into.seen[k] |= bit
		into.outcome[k] = max(into.outcome[k], outcome(q))
		into.queries++
		if k < n && q.rcode == dns.RcodeNameError {
			into.nxdomain++
		}
	}
	for _, l := range open {
		end(l)
	}
}

// analyse learns each group's search list (unless given) and folds every stream.
func (a *spAnalysis) analyse(given []string) {
	for _, s := range a.streams {
		slices.SortFunc(s.rows, func(x, y spQuery) int { return cmp.Or(cmp.Compare(x.ts, y.ts), cmp.Compare(x.seq, y.seq)) })
	}
	if given != nil {
		for _, g := range a.groups {
			g.suffixes, g.given = given, true
		}
	} else {
		for _, s := range a.streams {
			a.learn(s)
		}
		for _, g := range a.groups {
			g.suffixes = g.learned()
		}
	}
	for _, s := range a.streams {
		a.fold(s)
	}
}
