package querylog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// searchLookup is a lookup of name in namespace a from 10.0.0.1 by a resolver with ndots:5 and
// the search list a.svc.cluster.local. svc.cluster.local.: the list first (NXDOMAIN), then the
// name as is, A answered and AAAA answered if aaaaAnswers.
func searchLookup(ms int64, name string, aaaaAnswers int64) []entry {
	var es []entry
	for _, suffix := range []string{"a.svc.cluster.local.", "svc.cluster.local."} {
		es = append(es, namespaceRow(ms, "10.0.0.1", "a", name+suffix, dns.TypeA, dns.RcodeNameError, 0),
			namespaceRow(ms, "10.0.0.1", "a", name+suffix, dns.TypeAAAA, dns.RcodeNameError, 0))
	}
	return append(es, namespaceRow(ms, "10.0.0.1", "a", name, dns.TypeA, dns.RcodeSuccess, 1),
		namespaceRow(ms, "10.0.0.1", "a", name, dns.TypeAAAA, dns.RcodeSuccess, aaaaAnswers))
}

// TestRollupsSearchpath: once an hour is summed, rollup_searchpath holds the fold of its
// namespace names (a name's search-list expansions folded into it, with the lookups, queries,
// NXDOMAINs and what-if queries worked out by hand below) and rollup_searchpath_suffixes the
// weights its search list was learned from; a namespace keeps searchpathLimit names and sums
// the rest under (other); the day holds the sums of its hours; and a late row of the hour makes
// the hour be folded again whole, replaced, not added to.
func TestRollupsSearchpath(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 1000)
	const hour = 1_700_000_000 / 3600 * 3600 * 1000 // ms, an hour's start
	const day = hour / 86_400_000 * 86400           // s
	lookup := searchLookup
	var es []entry
	es = append(es, lookup(hour, "api.", 0)...)
	es = append(es, lookup(hour+1000, "api.", 0)...)
	es = append(es, lookup(hour+2000, "www.example.org.", 1)...)
	// Namespace b asks searchpathLimit + 2 names once each (A, answered): the last two by name
	// go to (other).
	for i := range searchpathLimit + 2 {
		es = append(es, namespaceRow(hour+60_000, "10.0.0.2", "b", fmt.Sprintf("n%03d.example.", i), dns.TypeA, dns.RcodeSuccess, 1))
	}
	writeDue(t, s, es...)
	// A row of no namespace the next day, past its first hour, ends the hour and the day.
	writeDue(t, s, namespaceRow((day+86400+2*3600)*1000, "10.0.0.9", "", "late.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	// namespace/name=lookups:queries:nxdomain:ndots1..5, a's names and b's (other)
	folds := func(span, start int64) string {
		return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || name || '=' || lookups || ':' ||
			queries || ':' || nxdomain || ':' || ndots1 || ',' || ndots2 || ',' || ndots3 || ',' || ndots4 || ',' || ndots5 AS x
			FROM rollup_searchpath WHERE span = %d AND start = %d AND (namespace = 'a' OR name = '(other)') ORDER BY 1)`, span, start))
	}
	namesOfB := func(span, start int64) string {
		return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT count(*), sum(queries), sum(lookups) FROM rollup_searchpath
			WHERE span = %d AND start = %d AND namespace = 'b'`, span, start))
	}
	suffixes := func(span, start int64) string {
		return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || suffix || '=' || weight AS x
			FROM rollup_searchpath_suffixes WHERE span = %d AND start = %d ORDER BY 1)`, span, start))
	}
	// api.: 2 lookups, 4 queries to each of its 3 names, NXDOMAIN to the 2 expansions; the
	// name as is answered (A), so with any ndots (0 dots: the search list first) 6 queries a
	// lookup. www.example.org.: 1 lookup of 6 queries; with ndots 1 and 2 (2 dots) asked as
	// is first and answered: 2 queries. b's (other): n100. and n101., 2 queries with any ndots.
	// Each suffix weighs the queries of the expansions by it (4 of api., 2 of www), taught by
	// 4 names.
	wantFolds := "a/api.=2:12:8:12,12,12,12,12 a/www.example.org.=1:6:4:2,2,6,6,6 b/(other)=2:2:0:4,4,4,4,4"
	wantSuffixes := "a/.=4 a/a.svc.cluster.local.=6 a/svc.cluster.local.=6"
	wantB := fmt.Sprintf("%d|%d|%d", searchpathLimit+1, searchpathLimit+2, searchpathLimit+2)
	check := func(when, wantFolds string) {
		t.Helper()
		for _, p := range []struct {
			what        string
			span, start int64
		}{{"the hour", 3600, hour / 1000}, {"the day", 86400, day}} {
			if got := folds(p.span, p.start); got != wantFolds {
				t.Errorf("%s's folds%s:\n got %s\nwant %s", p.what, when, got, wantFolds)
			}
			if got := namesOfB(p.span, p.start); got != wantB {
				t.Errorf("%s's names of b%s (rows, queries, lookups): %s, want %s", p.what, when, got, wantB)
			}
			if got := suffixes(p.span, p.start); got != wantSuffixes {
				t.Errorf("%s's suffix weights%s:\n got %s\nwant %s", p.what, when, got, wantSuffixes)
			}
		}
	}
	check("", wantFolds)

	// A late A query of api. answered: the hour is folded again from its names, now 3 tries
	// of api. (3 lookups, 13 queries, 18 with any ndots), and the day summed again.
	writeDue(t, s, namespaceRow(hour+5000, "10.0.0.1", "a", "api.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	check(" after a late row", strings.Replace(wantFolds, "a/api.=2:12:8:12,12,12,12,12", "a/api.=3:13:8:18,18,18,18,18", 1))
}

// TestRollupsSearchpathMinutes: a minute is folded once a batch's newest row is in a later
// minute (by hand, as in TestRollupsSearchpath), the current minute is not; a late row of a
// folded minute makes it be folded again, replaced, not added to; and summing the hour deletes
// its minutes' folds.
func TestRollupsSearchpathMinutes(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 1000)
	const hour = 1_700_000_000 / 3600 * 3600 * 1000 // ms, an hour's start
	const m0, m1 = hour / 1000, hour/1000 + 60      // its first two minutes (s)
	lookup := searchLookup
	// span 60's folds from start: namespace/name=lookups:queries:nxdomain:ndots1..5, then the
	// suffix weights but the taught key's.
	folds := func(start int64) string {
		return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT (SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || name || '=' || lookups || ':' ||
			queries || ':' || nxdomain || ':' || ndots1 || ',' || ndots2 || ',' || ndots3 || ',' || ndots4 || ',' || ndots5 AS x
			FROM rollup_searchpath WHERE span = 60 AND start = %[1]d ORDER BY 1)) || ' | ' ||
			(SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || suffix || '=' || weight AS x
			FROM rollup_searchpath_suffixes WHERE span = 60 AND start = %[1]d AND suffix <> '.' ORDER BY 1))`, start))
	}
	minuteFolds := func() string {
		return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT (SELECT count(*) FROM rollup_searchpath WHERE span = 60 AND start >= %[1]d AND start < %[1]d + 3600)
			|| '|' || (SELECT count(*) FROM rollup_searchpath_suffixes WHERE span = 60 AND start >= %[1]d AND start < %[1]d + 3600)`, m0))
	}

	// Namespace b asks searchpathMinuteLimit + 2 names once each in the first minute.
	var es []entry
	for i := range searchpathMinuteLimit + 2 {
		es = append(es, namespaceRow(hour+500, "10.0.0.2", "b", fmt.Sprintf("n%03d.example.", i), dns.TypeA, dns.RcodeSuccess, 1))
	}
	writeDue(t, s, append(lookup(hour, "api.", 0), es...)...)
	if got := folds(m0); got != "" {
		t.Errorf("the current minute's fold: %q, want none", got)
	}
	// A batch in the next minute finishes the first: one lookup of api., 6 queries, 4 NXDOMAIN.
	writeDue(t, s, lookup(hour+61_000, "www.example.org.", 1)...)
	want0 := "a/api.=1:6:4:6,6,6,6,6 | a/a.svc.cluster.local.=2 a/svc.cluster.local.=2"
	ofA := func(folds string) string { // a's part: b's names are counted below
		names, suffixes, _ := strings.Cut(folds, " | ")
		var kept []string
		for _, f := range strings.Fields(names) {
			if strings.HasPrefix(f, "a/") {
				kept = append(kept, f)
			}
		}
		return strings.Join(kept, " ") + " | " + suffixes
	}
	if got := ofA(folds(m0)); got != want0 {
		t.Errorf("the finished minute's fold:\n got %s\nwant %s", got, want0)
	}
	// A finished minute keeps searchpathMinuteLimit names of b, the last two by name in (other).
	if got, want := testutil.SQLite3(t, path, fmt.Sprintf(`SELECT count(*), sum(queries), sum(name = '(other)') FROM rollup_searchpath
		WHERE span = 60 AND start = %d AND namespace = 'b'`, m0)), fmt.Sprintf("%d|%d|1", searchpathMinuteLimit+1, searchpathMinuteLimit+2); got != want {
		t.Errorf("b's names in the finished minute (rows|queries|(other)): %s, want %s", got, want)
	}
	if got := folds(m1); got != "" {
		t.Errorf("the current minute's fold: %q, want none", got)
	}
	// A late A query of api. answered: the first minute is folded again, 2 lookups of api.
	writeDue(t, s, namespaceRow(hour+5000, "10.0.0.1", "a", "api.", dns.TypeA, dns.RcodeSuccess, 1))
	want0 = strings.Replace(want0, "a/api.=1:6:4:6,6,6,6,6", "a/api.=2:7:4:12,12,12,12,12", 1)
	if got := ofA(folds(m0)); got != want0 {
		t.Errorf("the finished minute's fold after a late row:\n got %s\nwant %s", got, want0)
	}
	if got := folds(m1); got != "" {
		t.Errorf("the current minute's fold after a late row: %q, want none", got)
	}
	// A row of no namespace past the hour and its grace: the hour is summed, folded from its
	// names, and its minutes' folds go.
	writeDue(t, s, namespaceRow(hour+3600_000+120_000, "10.0.0.9", "", "late.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	if got := minuteFolds(); got != "0|0" {
		t.Errorf("the summed hour's minute folds (rows of the two tables): %s, want 0|0", got)
	}
	wantHour := "a/api.=2:7:4:12,12,12,12,12 a/www.example.org.=1:6:4:2,2,6,6,6"
	// The hour, folded from its names, keeps every one of b's (searchpathLimit).
	if got, want := testutil.SQLite3(t, path, fmt.Sprintf(`SELECT count(*) FROM rollup_searchpath WHERE span = 3600 AND start = %d AND namespace = 'b'`, m0)),
		fmt.Sprint(searchpathMinuteLimit+2); got != want {
		t.Errorf("b's names in the hour: %s rows, want %s", got, want)
	}
	if got := testutil.SQLite3(t, path, fmt.Sprintf(`SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || name || '=' || lookups || ':' ||
			queries || ':' || nxdomain || ':' || ndots1 || ',' || ndots2 || ',' || ndots3 || ',' || ndots4 || ',' || ndots5 AS x
			FROM rollup_searchpath WHERE span = 3600 AND start = %d AND namespace = 'a' ORDER BY 1)`, m0)); got != wantHour {
		t.Errorf("the hour's fold:\n got %s\nwant %s", got, wantHour)
	}
}
