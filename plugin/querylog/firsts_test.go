package querylog

import (
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// The writer lists a row holding a name as text unless the file knew the name
// firstsHorizon before it: by a names entry first used by then, or a rollup period ended by
// then. So every text row of a name first seen within the horizon is listed, whether the
// names table holds it yet or not (named).
func TestFirstSightings(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	write := func(ms int64, names ...string) {
		t.Helper()
		var batch []entry
		for _, n := range names {
			batch = append(batch, entryOf(&testLabels, queryRow{ts: ms, qname: n, client: "192.0.2.1"}))
		}
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
	}
	forget := func() { // the cache and the set of names seen once both forgot: the next row holds the text
		d := s.state.names
		d.ids, d.older = map[string]*dictEntry{}, map[string]*dictEntry{}
		d.turn++
		d.seen.reset()
	}
	listed := func() string {
		return strings.Join(testutil.Column[string](t, s.db, `SELECT name || ' ' || named FROM name_firsts ORDER BY id`), ", ")
	}
	horizon := firstsHorizon.Milliseconds()
	t0 := time.Now().Add(-4 * time.Hour).UnixMilli()
	write(t0, "x.example.", "x.example.", "y.example.") // x: its text, then a number; y: its text
	forget()
	write(t0+horizon/2, "x.example.", "y.example.") // x numbered within the horizon; y only ever as text
	if got, want := listed(), "x.example. 0, y.example. 0, x.example. 1, y.example. 0"; got != want {
		t.Fatalf("listed %q, want %q: every text row of a name first seen within the horizon", got, want)
	}
	// After the horizon: x is known by its number; y, never numbered, by nothing but the rollups.
	if _, err := s.db.Exec(`INSERT INTO rollup_names (span, start, name, rcode, n) VALUES
		(60, ?1, 'z.example.', 0, 1), (60, ?2, 'w.example.', 0, 1)`, (t0-horizon)/1000/60*60, (t0+2*horizon)/1000/60*60); err != nil {
		t.Fatal(err)
	}
	forget()
	t1 := t0 + 2*horizon + 60_000
	write(t1, "x.example.", "y.example.", "z.example.", "w.example.")
	if got, want := listed(), "x.example. 0, y.example. 0, x.example. 1, y.example. 0, y.example. 0, w.example. 0"; got != want {
		t.Errorf("listed %q, want %q: x numbered and z counted before the horizon are known; w counted within it is not", got, want)
	}
	if n := testutil.Column[int64](t, s.db, `SELECT count(*) FROM name_firsts f JOIN log l ON l.id = f.id AND l.late = f.late AND l.name = f.name`); n[0] != 6 {
		t.Errorf("%d listed rows name their log row, its name and lateness; want 6", n[0])
	}
	// Each registered domain once (x.example. is one: example. is no public suffix), with the
	// first and last rows that held a name under it as text (once a minute).
	if got := strings.Join(testutil.Column[string](t, s.db, `SELECT d.domain || ' ' || (d.first = (SELECT min(id) FROM log)) || ' ' || (d.last >> 8 = ?)
		FROM domains_seen d ORDER BY domain`, t1), ", "); got != "w.example. 0 1, x.example. 1 1, y.example. 0 1, z.example. 0 1" {
		t.Errorf("domains_seen %q, want x.example. from the first row, each to the last minute's", got)
	}
	for query, want := range map[string]string{
		firstsNamedQuery:  "SEARCH names USING INDEX names_name (name=?);",
		firstsRollupQuery: "SEARCH rollup_names USING COVERING INDEX rollup_names_name (name=? AND start<?);",
	} {
		if plan := testutil.QueryPlan(t, s.db, query, "x.example.", 1); !strings.Contains(plan, want) {
			t.Errorf("the writer judges by %q, want %q: a seek", plan, want)
		}
	}
}

// Past its cap of text rows judged a minute, or of rows listed, the writer judges no more of the
// minute's rows and lists the minute as a gap, once; so is every minute written while the
// rollups catch up. Past its cap of domains a minute, the minute is a gap for domains.
func TestFirstSightingsCap(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	s.state.firsts.perMinute = 2
	ms := time.Now().Add(-time.Hour).UnixMilli() / 60_000 * 60_000
	for i, names := range [][]string{{"a.", "b."}, {"c.", "d."}, {"e."}} {
		var batch []entry
		for _, n := range names {
			batch = append(batch, entryOf(&testLabels, queryRow{ts: ms + int64(i), qname: n, client: "192.0.2.1"}))
		}
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(testutil.Column[string](t, s.db, `SELECT name FROM name_firsts ORDER BY id`), " "); got != "a. b." {
		t.Errorf("listed %q, want the minute's first two: a. b.", got)
	}
	if got := testutil.Column[int64](t, s.db, `SELECT minute FROM name_firsts_gaps WHERE domains = 0`); len(got) != 1 || got[0] != ms/60_000 {
		t.Errorf("gaps %v, want the minute %d once", got, ms/60_000)
	}
	s.state.firsts.domainsPerMinute = 1
	next := ms + 120_000
	var two []entry
	for _, n := range []string{"www.example.org.", "mail.example.org.", "www.example.net."} {
		two = append(two, entryOf(&testLabels, queryRow{ts: next, qname: n, client: "192.0.2.1"}))
	}
	if err := s.write(two); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(testutil.Column[string](t, s.db, `SELECT domain FROM domains_seen WHERE first >= ?`, next<<8), " "); got != "example.org." {
		t.Errorf("domains recorded in a minute of one at most: %q, want example.org. (twice its own, then a second domain)", got)
	}
	if got := testutil.Column[int64](t, s.db, `SELECT minute FROM name_firsts_gaps WHERE domains = 1`); len(got) != 1 || got[0] != next/60_000 {
		t.Errorf("gaps of domains %v, want the minute %d", got, next/60_000)
	}
	s.state.firsts.domainsPerMinute = domainsPerMinute
	// Past its cap of rows listed a minute likewise.
	s.state.firsts.perMinute, s.state.firsts.listedPerMinute = firstsPerMinute, 1
	listedMinute := ms + 240_000
	var listedBatch []entry
	for _, n := range []string{"g.", "h."} {
		listedBatch = append(listedBatch, entryOf(&testLabels, queryRow{ts: listedMinute, qname: n, client: "192.0.2.1"}))
	}
	if err := s.write(listedBatch); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(testutil.Column[string](t, s.db, `SELECT name FROM name_firsts WHERE id >= ?`, listedMinute<<8), " "); got != "g." {
		t.Errorf("listed %q in a minute of one at most, want g.", got)
	}
	if got := testutil.Column[int64](t, s.db, `SELECT count(*) FROM name_firsts_gaps WHERE minute = ? AND domains = 0`, listedMinute/60_000); got[0] != 1 {
		t.Errorf("the minute past its cap of listed rows is not a gap")
	}
	s.state.firsts.listedPerMinute = firstsListedPerMinute
	// With the rollups off (rollup_limit 0) from the start, they never catch up, and need not:
	// rows are judged.
	s.state.rollups.configure(0)
	s.state.rollups.catchingUp = true // as a writer started with rollup_limit 0 has it
	off := ms + 300_000
	if err := s.write([]entry{entryOf(&testLabels, queryRow{ts: off, qname: "off.example.", client: "192.0.2.1"})}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Column[int64](t, s.db, `SELECT count(*) FROM name_firsts WHERE id >= ?`, off<<8); got[0] != 1 ||
		testutil.Column[int64](t, s.db, `SELECT count(*) FROM name_firsts_gaps WHERE minute = ?`, off/60_000)[0] != 0 {
		t.Errorf("with the rollups off, a row was not judged (listed %d)", got[0])
	}
	// While the rollups catch up, the periods before a row may not be counted yet.
	f := firstSightings{perMinute: firstsPerMinute}
	f.judge(nil, "f.", (ms+60_000)<<8, 0, true)
	if len(f.pending) != 0 || len(f.gaps) != 2 || f.gaps[0] != ms/60_000+1 || f.gaps[1] != int64(0) {
		t.Errorf("a row judged while the rollups catch up: listed %v, gaps %v; want none listed and its minute a gap", f.pending, f.gaps)
	}
}

// A names entry whose first use is not an integer (a tampered file) counts as known: the
// writer does not panic, and does not list the name.
func TestFirstSightingsTamperedFirst(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	ms := time.Now().UnixMilli()
	row := func(name string) []entry {
		return []entry{entryOf(&testLabels, queryRow{ts: ms, qname: name, client: "192.0.2.1"})}
	}
	for _, batch := range [][]entry{row("t.example."), row("t.example.")} { // its text, then its number
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec(`UPDATE names SET first = 'not a time' WHERE name = 't.example.'`); err != nil {
		t.Fatal(err)
	}
	s.state.startEpoch() // the next sighting holds the text again, and is judged
	if err := s.write(row("t.example.")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Column[string](t, s.db, `SELECT name FROM name_firsts`); len(got) != 1 {
		t.Errorf("listed %q, want only the first sighting", got)
	}
}
