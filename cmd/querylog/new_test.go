package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// moveBack moves the rows the plugin wrote with ids up to upTo back in time by d, as if they
// had arrived then: their ids (in log, log_texts and the list of first sightings), and the
// marks that refer to ids (the dictionary epochs, the batches, rollup_id, where the names
// dictionary's numbers were first used and up to where they are counted, where the domains
// seen were first and last seen). The server must be stopped.
func moveBack(t *testing.T, db string, d time.Duration, upTo int64) {
	t.Helper()
	shift := d.Milliseconds() << 8
	stmts := fmt.Sprintf(`UPDATE log SET id = id - %[1]d WHERE id <= %[2]d;
		UPDATE log_texts SET id = id - %[1]d WHERE id <= %[2]d;
		UPDATE dict_epochs SET log_id = log_id - %[1]d WHERE log_id <= %[2]d;
		UPDATE batches SET first_id = first_id - %[1]d WHERE first_id <= %[2]d;
		UPDATE state SET value = value - %[1]d WHERE key = 'rollup_id' AND value <= %[2]d;
		UPDATE names SET first = first - %[1]d WHERE first <= %[2]d;
		UPDATE dict_epochs SET names_counted = names_counted - %[1]d WHERE names_counted <= %[2]d;
		UPDATE name_firsts SET id = id - %[1]d WHERE id <= %[2]d;
		UPDATE domains_seen SET first = first - %[1]d WHERE first <= %[2]d;
		UPDATE domains_seen SET last = last - %[1]d WHERE last <= %[2]d;`, shift, upTo)
	testutil.Exec(t, db, stmts)
}

// asks is n A queries for name from 127.0.0.2.
func asks(name string, n int) []query {
	var qs []query
	for range n {
		qs = append(qs, query{name, dns.TypeA, "127.0.0.2", false})
	}
	return qs
}

// newJSON is the JSON output of new.
type newJSON struct {
	Names []struct {
		Name      string `json:"name"`
		Domain    string `json:"domain"`
		Queries   int64  `json:"queries"`
		FirstSeen string `json:"first_seen"`
		NewToFile bool   `json:"new_to_file"`
	} `json:"names"`
	Domains []struct {
		Domain    string `json:"domain"`
		Queries   int64  `json:"queries"`
		Names     int    `json:"names"`
		NewToFile bool   `json:"new_to_file"`
	} `json:"domains"`
	KnownToNamespace *int     `json:"known_to_namespace"`
	WindowFolded     *int64   `json:"window_other_queries"`
	NewNames         int      `json:"new_names"`
	NewDomains       int      `json:"new_domains"`
	WindowQueries    int64    `json:"window_queries"`
	WindowNames      int      `json:"window_names"`
	Sources          []string `json:"sources"`
}

// summary is the names and domains as name:queries, in order; "(known)" marks those the file
// saw before from other clients (new --namespace lists them: they are new to the namespace).
func (v newJSON) summary() string {
	known := func(newToFile bool) string {
		if newToFile {
			return ""
		}
		return "(known)"
	}
	var names, domains []string
	for _, n := range v.Names {
		names = append(names, fmt.Sprintf("%s:%d%s", n.Name, n.Queries, known(n.NewToFile)))
	}
	for _, d := range v.Domains {
		domains = append(domains, fmt.Sprintf("%s:%d/%d%s", d.Domain, d.Queries, d.Names, known(d.NewToFile)))
	}
	return strings.Join(names, " ") + " | " + strings.Join(domains, " ")
}

func runNewJSON(t *testing.T, args ...string) newJSON {
	t.Helper()
	out := mustRun(t, append([]string{"new", "--json"}, args...)...)
	var v newJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("new output is not JSON: %v\n%s", err, out)
	}
	return v
}

// TestNew: new lists the names, and registered domains, of the window that the file never saw
// before it, whichever part of the file saw them: one asked twice last week (a number of an older
// epoch of the dictionary), one whose rows are gone but that the rollups of a day long ago still
// hold, and one asked two hours ago in the epoch the window begins in (the window's first row
// holding it holds its number) are not new. A name asked once last week is known only by the row
// holding its text (its rollups are gone here, as a name past a period's rollup_limit is folded
// under (other)): only --exact, which reads the rows before the window, finds it; by default it
// is new, and the sources say what was read.
func TestNew(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	opts := "retention 30d"
	a := asks
	// Last week.
	s := startServerWith(t, db, opts)
	s.send(t, append(a("once.example.org.", 1), a("twice.example.org.", 2)...))
	s.stop()
	moveBack(t, db, 8*24*time.Hour, math.MaxInt64)
	// Its rollups are dropped, so that only its rows say it; and rows pruned long ago, whose
	// names the rollups of a day still hold.
	day := time.Now().Unix()/86400*86400 - 20*86400
	testutil.Exec(t, db, fmt.Sprintf(`DELETE FROM rollup_names; DELETE FROM rollup_clients; DELETE FROM rollup_outcomes;
		INSERT INTO rollup_names VALUES (86400, %[1]d, 'pruned.example.org.', 0, 3), (86400, %[1]d, '(other)', 0, 40);
		INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us) VALUES (86400, %[1]d, 0, 1, 'udp', '', 43, 4300)`, day))
	// Two hours ago, then in the window: one epoch of the dictionary.
	s = startServerWith(t, db, opts)
	s.send(t, a("earlier.example.org.", 1))
	before := atoi(t, strs(t, db, `SELECT max(id) FROM log`)[0][0])
	var window []query
	for _, q := range []struct {
		name string
		n    int
	}{{"once.example.org.", 1}, {"twice.example.org.", 1}, {"pruned.example.org.", 1}, {"earlier.example.org.", 2},
		{"fresh.example.org.", 2}, {"a.fresh.example.net.", 3}} {
		window = append(window, a(q.name, q.n)...)
	}
	s.send(t, window)
	// Once its rows are written, so that it arrives in a later millisecond than
	// once.example.org. (names asked as often are listed by their first arrival).
	s.send(t, a("b.example.net.", 1))
	s.stop()
	moveBack(t, db, 2*time.Hour, before)
	// The kubernetes plugin's metadata, as files before schema 3 kept it (schema 3 keeps the
	// namespace in the pod column: TestClusterNamespaces), and one row's unreadable.
	testutil.Exec(t, db, `ALTER TABLE log ADD COLUMN metadata TEXT; ALTER TABLE log ADD COLUMN answer_data TEXT;
		UPDATE log SET metadata = '{"`+namespaceLabel+`":"team-a"}' WHERE id IN (SELECT id FROM queries WHERE qname LIKE '%.example.net.');
		UPDATE log SET metadata = '{"`+namespaceLabel+`":"team-b"}' WHERE id IN (SELECT id FROM queries WHERE qname = 'fresh.example.org.');
		UPDATE log SET metadata = '{"`+namespaceLabel+`":"team-c"}' WHERE id IN (SELECT id FROM queries WHERE qname = 'pruned.example.org.');
		UPDATE log SET metadata = '{"`+namespaceLabel+`":"team-b"}' WHERE id IN (SELECT id FROM queries WHERE qname = 'twice.example.org.')
			AND (typeof(name) = 'integer' OR id = (SELECT max(id) FROM queries WHERE qname = 'twice.example.org.'));
		UPDATE log SET metadata = '{bad' WHERE id = (SELECT max(id) FROM queries WHERE qname = 'fresh.example.org.')`)

	got := runNewJSON(t, "--db", db, "--since", "1h", "--exact")
	// The most asked first (then the first asked).
	if want := "a.fresh.example.net.:3 fresh.example.org.:2 b.example.net.:1 | example.net.:4/2"; got.summary() != want {
		t.Errorf("new --exact:\n got %s\nwant %s\nsources %q", got.summary(), want, got.Sources)
	}
	if src := strings.Join(got.Sources, "\n"); !strings.Contains(src, "before the window: rows from ") || !strings.Contains(src, "every one read") {
		t.Errorf("new --exact: sources %q", got.Sources)
	}
	// By default the rows before the window are not read: once.example.org. is new.
	def := runNewJSON(t, "--db", db, "--since", "1h")
	if want := "a.fresh.example.net.:3 fresh.example.org.:2 once.example.org.:1 b.example.net.:1 | example.net.:4/2"; def.summary() != want {
		t.Errorf("new:\n got %s\nwant %s\nsources %q", def.summary(), want, def.Sources)
	}
	// Read from the list of first sightings or, where the writer's catch-up of the rollups left
	// gaps in it, from the rows: the same names. The sources of the rows' way, on a copy
	// without the list (as a file of schema 5).
	noList := filepath.Join(t.TempDir(), "nolist.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, noList))
	testutil.Exec(t, noList, `DROP TABLE name_firsts`)
	rowsDef := runNewJSON(t, "--db", noList, "--since", "1h")
	if src := strings.Join(rowsDef.Sources, "\n"); rowsDef.summary() != def.summary() || !strings.Contains(src, "before the window: the names dictionary and the rollups, not the rows (--exact") ||
		!strings.Contains(src, "rollups: every period that ended by the window, by the index of their names") {
		t.Errorf("new without the list: %s; sources %q", rowsDef.summary(), rowsDef.Sources)
	}
	// A minute's rollup of long ago that counted it is found by the index of the rollups' names
	// (a copy: the file's other checks go on without it); a day's, of a name under example.net.
	// not asked since, makes the domain old, its new names still new.
	minute := filepath.Join(t.TempDir(), "minute.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, minute))
	// (Rollups added after the rows were written, which the writer's list of first sightings
	// could not know: read without it, as a file of schema 5.)
	testutil.Exec(t, minute, fmt.Sprintf(`INSERT INTO rollup_names VALUES (60, %d, 'once.example.org.', 0, 1), (86400, %d, 'gone.example.net.', 0, 1);
		DROP TABLE name_firsts`, day+600, day))
	if want := "a.fresh.example.net.:3 fresh.example.org.:2 b.example.net.:1 | "; runNewJSON(t, "--db", minute, "--since", "1h").summary() != want {
		t.Errorf("new with rollups of once.example.org. (a minute) and gone.example.net. (a day) 20 days ago: got %s, want %s", runNewJSON(t, "--db", minute, "--since", "1h").summary(), want)
	}
	// Without that index (before schema 3), every name row of the days and hours is read: the
	// days still make pruned.example.org. and example.net. old; the minute is not read.
	testutil.Exec(t, minute, `DROP INDEX rollup_names_name`)
	if got, want := runNewJSON(t, "--db", minute, "--since", "1h"), "a.fresh.example.net.:3 fresh.example.org.:2 once.example.org.:1 b.example.net.:1 | "; got.summary() != want ||
		!strings.Contains(strings.Join(got.Sources, "\n"), "rollups: the days and hours that end by the window") {
		t.Errorf("new without the index of the rollups' names: got %s, want %s; sources %q", got.summary(), want, got.Sources)
	}
	// The window's queries are top's (here one more than its rows: the earlier row was moved
	// back in time, not its minute's rollups). Its names read are the 6 its rows hold as text
	// (earlier.example.org.'s rows there hold its number: TestNewTextIndex).
	if total := runTopJSON(t, "rcodes", "--db", db, "--since", "1h").Total; got.NewNames != 3 || got.NewDomains != 1 || got.WindowQueries != total || got.WindowNames != 6 {
		t.Errorf("new: %d new names, %d new domains, window %d queries of %d names; want 3, 1, %d (top's), 6", got.NewNames, got.NewDomains,
			got.WindowQueries, got.WindowNames, total)
	}
	// The same with the window reaching back before the earlier row: it is new then.
	got = runNewJSON(t, "--db", db, "--since", "3h", "--exact")
	if want := "earlier.example.org.:3 a.fresh.example.net.:3 fresh.example.org.:2 b.example.net.:1 | example.net.:4/2"; got.summary() != want {
		t.Errorf("new --since 3h:\n got %s\nwant %s", got.summary(), want)
	}
	// By namespace: the names a namespace never asked before, whoever else did (marked known).
	if got := runNewJSON(t, "--db", db, "--namespace", "team-a", "--exact"); got.summary() != "a.fresh.example.net.:3 b.example.net.:1 | example.net.:4/2" {
		t.Errorf("new --namespace team-a: %s", got.summary())
	}
	// team-b asked twice.example.org. last week, in a row that holds its number: --exact reads
	// that row; by default only the namespace's rollups are read, and the file has none of team-b.
	if got := runNewJSON(t, "--db", db, "--namespace", "team-b", "--exact"); got.summary() != "fresh.example.org.:1 | " || got.WindowQueries != 2 ||
		got.KnownToNamespace == nil || *got.KnownToNamespace != 1 || !strings.Contains(strings.Join(got.Sources, "\n"), "namespace team-b before the window: its rows before the window, every one read (1), its rollups of the periods before") {
		t.Errorf("new --namespace team-b --exact: %s, %d queries, sources %q", got.summary(), got.WindowQueries, got.Sources)
	}
	if got := runNewJSON(t, "--db", db, "--namespace", "team-b"); got.summary() != "fresh.example.org.:1 twice.example.org.:1(known) | example.org.:2/2(known)" ||
		!strings.Contains(strings.Join(got.Sources, "\n"), "namespace team-b before the window: its rollups of every period that ended by the window; 0 names") {
		t.Errorf("new --namespace team-b: %s, sources %q", got.summary(), got.Sources)
	}
	// pruned.example.org. is new to team-c, not to the file (a day's rollup of 20 days ago).
	if got := runNewJSON(t, "--db", db, "--namespace", "team-c", "--exact"); got.summary() != "pruned.example.org.:1(known) | example.org.:1/1(known)" || got.WindowQueries != 1 {
		t.Errorf("new --namespace team-c: %s, %d queries", got.summary(), got.WindowQueries)
	}
	if got := runNewJSON(t, "--db", db, "--namespace", "nobody"); got.summary() != " | " || got.WindowQueries != 0 ||
		!strings.Contains(strings.Join(got.Sources, "\n"), "namespace nobody before the window: nothing to look for (it asked no name in the window)") {
		t.Errorf("new --namespace nobody: %s, sources %q", got.summary(), got.Sources)
	}
	// The namespace's rollups: a day of team-a's that counted b.example.net. (and folded a name
	// past rollup_limit) makes it, and its domain, old to team-a (on a copy).
	nsRollup := filepath.Join(t.TempDir(), "ns.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, nsRollup))
	testutil.Exec(t, nsRollup, fmt.Sprintf(`INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)
		VALUES (86400, %[1]d, 'team-a', 'b.example.net.', 0, 2, 2, 0, 2), (86400, %[1]d, 'team-a', '(other)', 0, 5, 5, 0, 5),
		(86400, %[1]d, 'team-b', 'a.fresh.example.net.', 0, 1, 1, 0, 1)`, day))
	got = runNewJSON(t, "--db", nsRollup, "--namespace", "team-a")
	if src := strings.Join(got.Sources, "\n"); got.summary() != "a.fresh.example.net.:3 | " || *got.KnownToNamespace != 1 ||
		!strings.Contains(src, "(other): of its rollups, the days 5 queries are of names past rollup_limit per namespace") {
		t.Errorf("new --namespace team-a with its day's rollup: %s, sources %q", got.summary(), got.Sources)
	}
	// -n cuts each list; the table says how many there are.
	out := mustRun(t, "new", "--db", db, "-n", "1", "--exact")
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "NEW NAME") || !strings.HasPrefix(lines[1], "a.fresh.example.net.") || !strings.Contains(out, "(1 of 3 new names; -n shows more)") ||
		!strings.Contains(out, "\nNEW DOMAIN") || !strings.Contains(out, "\nexample.net.") || !strings.Contains(out, "new: 3 names, 1 registered domain") ||
		!strings.Contains(out, "before the window: rows from ") || !strings.Contains(out, "(other): of those rollups, the days 40 queries are of names past") {
		t.Errorf("new -n 1:\n%s", out)
	}
}

// TestNewSkipsOldNumbers: the window's rows that hold a number the dictionary gave before it
// are not read one by one (their names are old): old.example.org., numbered in the minute before
// the window, is not new and not among the names read, and the window's queries are top's. The
// rows of --namespace are all read: the namespace's counts and names stay whole.
func TestNewSkipsOldNumbers(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "")
	q := asks
	s.send(t, q("old.example.org.", 2)) // the second row holds its number
	upTo := atoi(t, strs(t, db, `SELECT max(id) FROM log`)[0][0])
	s.send(t, append(q("old.example.org.", 3), q("fresh.example.org.", 2)...))
	s.stop()
	// The first two rows move to the minute before the window, 30 s before it begins.
	from := time.Now().Unix()/60*60 - 60
	moveBack(t, db, time.Duration(upTo>>8-(from*1000-30_000))*time.Millisecond, upTo)
	if n := strs(t, db, `SELECT count(*) FROM log WHERE typeof(name) = 'integer' AND id < ?`, from*1000<<8)[0][0]; n != "1" {
		t.Fatalf("%s rows before the window hold a number; want 1", n)
	}
	since := time.Unix(from, 0).UTC().Format(time.RFC3339)

	// Read as a file of schema 3 is, without the index of the rows holding a text (with it,
	// those rows alone are read: TestNewTextIndex).
	noIndex := filepath.Join(t.TempDir(), "noindex.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, noIndex))
	testutil.Exec(t, noIndex, `DROP TABLE log_texts; DROP TABLE name_firsts`)
	got := runNewJSON(t, "--db", noIndex, "--since", since)
	if got.summary() != "fresh.example.org.:2 | " || got.WindowNames != 1 || got.WindowQueries != runTopJSON(t, "rcodes", "--db", db, "--since", since).Total ||
		!strings.Contains(strings.Join(got.Sources, "\n"), "read by name: 1 name and 1 registered domain, those of its rows not holding a number the dictionary gave before it") {
		t.Errorf("new: %s, %d names read, %d queries; sources %q", got.summary(), got.WindowNames, got.WindowQueries, got.Sources)
	}
	// By namespace (the metadata of files before schema 3): team-x asked old.example.org. before
	// and in the window; by default its rollups say nothing of it (its minute's rollup is in
	// the window), so old.example.org. is new to it, with all three queries of the window.
	testutil.Exec(t, db, `ALTER TABLE log ADD COLUMN metadata TEXT; ALTER TABLE log ADD COLUMN answer_data TEXT;
		UPDATE log SET metadata = '{"`+namespaceLabel+`":"team-x"}'`)
	if got := runNewJSON(t, "--db", db, "--since", since, "--namespace", "team-x"); got.summary() != "fresh.example.org.:2 old.example.org.:3(known) | example.org.:5/2(known)" ||
		got.WindowQueries != 5 || got.WindowNames != 2 {
		t.Errorf("new --namespace team-x: %s, %d queries of %d names", got.summary(), got.WindowQueries, got.WindowNames)
	}
	if got := runNewJSON(t, "--db", db, "--since", since, "--namespace", "team-x", "--exact"); got.summary() != "fresh.example.org.:2 | " || *got.KnownToNamespace != 1 {
		t.Errorf("new --namespace team-x --exact: %s", got.summary())
	}
}

// TestNewTextIndex: over a file of schema 4 or 5, new reads only the window's rows that hold a
// name as text, by the list of them, and counts those names' numbered rows from the names
// dictionary. Its answer is that of reading every row of the window (a copy without the list,
// read as a file of schema 3 is), also where the dictionary's counts stop short of the rows, as
// a server that crashed leaves them. forgot.example.org., asked once before the window and numbered in
// it before a row that holds its text again (as when the writer forgets a name), is not new:
// its number was first used before that row.
func TestNewTextIndex(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "")
	// Before the window: a.example.edu. numbered, c.example.info. asked once (its text).
	s.send(t, slices.Concat(asks("forgot.example.org.", 1), asks("old.example.org.", 2), asks("a.example.edu.", 2), asks("c.example.info.", 1)))
	upTo := atoi(t, strs(t, db, `SELECT max(id) FROM log`)[0][0])
	var window []query
	for i := range 30 {
		window = append(window, asks(fmt.Sprintf("n%d.fresh.example.net.", i%7), 1)...)
		window = append(window, asks("old.example.org.", 1)...)
		if i < 29 { // fewer than example.net.'s, so that the domains' order is by queries
			window = append(window, asks(fmt.Sprintf("once%d.example.com.", i), 1)...)
		}
	}
	window = append(window, asks("forgot.example.org.", 3)...)
	// New names of old domains: example.edu. by a name numbered before the window, example.info.
	// by one numbered in it, at its second sighting, after d.example.info.'s text row (no text
	// row of the window holds c.example.info.: its first sighting came before).
	window = slices.Concat(window, asks("d.example.info.", 1), asks("b.example.edu.", 1), asks("c.example.info.", 1))
	s.send(t, window)
	s.stop()
	moveBack(t, db, 2*time.Hour, upTo)
	// The window's last row of forgot.example.org. holds its text, no longer its number.
	testutil.Exec(t, db, `UPDATE names SET n = n - 1 WHERE id = (SELECT name FROM log WHERE id = (SELECT max(id) FROM queries WHERE qname = 'forgot.example.org.'));
		UPDATE log SET name = 'forgot.example.org.' WHERE id = (SELECT max(id) FROM queries WHERE qname = 'forgot.example.org.');
		INSERT INTO log_texts (id) SELECT max(id) FROM queries WHERE qname = 'forgot.example.org.'`)
	// The rows' list, not the list of first sightings (schema 6, TestNewFirsts), which the
	// change above does not follow.
	testutil.Exec(t, db, `DROP TABLE name_firsts`)
	if got := strs(t, db, `SELECT typeof(name) FROM log WHERE id > ? AND id IN (SELECT id FROM queries WHERE qname = 'forgot.example.org.') ORDER BY id`, upTo); fmt.Sprint(got) != "[[integer] [integer] [text]]" {
		t.Fatalf("forgot.example.org.'s rows in the window hold %v", got)
	}
	// A crash: the dictionary counted the rows up to the middle of the window only.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, crashed))
	testutil.Exec(t, crashed, `UPDATE dict_epochs SET names_counted = (SELECT id FROM log ORDER BY id LIMIT 1 OFFSET 50) WHERE names_counted IS NOT NULL;
		UPDATE names SET n = (SELECT count(*) FROM log WHERE log.name = names.id AND log.id <= (SELECT max(names_counted) FROM dict_epochs))`)
	// Every row read: the same file without the index.
	rows := filepath.Join(t.TempDir(), "rows.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, rows))
	testutil.Exec(t, rows, `DROP TABLE log_texts`)
	// A dictionary too big to read whole for the window's 38 names: they are looked up by name.
	// Its other names, under example.invalid., were used before the window.
	big := filepath.Join(t.TempDir(), "big.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, big))
	testutil.Exec(t, big, `WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < 400)
		INSERT INTO names (name, first, n) SELECT 'f' || k || '.example.invalid.', 1, 1 FROM i`)

	// A file of schema 4: log_texts an index on (id).
	v4 := filepath.Join(t.TempDir(), "v4.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, v4))
	testutil.Exec(t, v4, `DROP TABLE log_texts; CREATE INDEX log_texts ON log (id) WHERE typeof(name) = 'text'; PRAGMA user_version = 4`)
	// Either list is read from the window's first row on, not scanned from the file's.
	for _, c := range []struct{ path, query, want string }{
		{db, windowTextsQuery, "SEARCH t USING INTEGER PRIMARY KEY (rowid>? AND rowid<?);SEARCH l USING INTEGER PRIMARY KEY (rowid=?);"},
		{v4, windowTextsIndexQuery, "SEARCH l USING INDEX log_texts (id>? AND id<?);"},
	} {
		if plan := testutil.QueryPlan(t, testutil.OpenRO(t, c.path), c.query, 0, 1, 0); plan != c.want {
			t.Errorf("new's query of the text rows, on %s: %s", filepath.Base(c.path), plan)
		}
	}

	want := "n0.fresh.example.net.:5 n1.fresh.example.net.:5 n2.fresh.example.net.:4 n3.fresh.example.net.:4 n4.fresh.example.net.:4 n5.fresh.example.net.:4 " +
		"n6.fresh.example.net.:4 once0.example.com.:1 once1.example.com.:1 once2.example.com.:1 | example.net.:30/7 example.com.:29/29"
	for _, c := range []struct {
		db, source string
		exact      bool
	}{
		{db, "by the file's list of those rows (a name whose first row in the window holds a number was seen before it); their numbered rows counted by the names dictionary (read whole)", false},
		{v4, "by the file's list of those rows (a name whose first row in the window holds a number was seen before it); their numbered rows counted by the names dictionary (read whole)", false},
		{big, "by the names dictionary (looked up by name)", false},
		{crashed, "after its counts read", false},
		// Every row of the window read, and those before it (there, no row of the minute before
		// the window tells the dictionary's numbers of a.example.edu. from the window's).
		{rows, "queries, 41 names, 5 registered domains", true},
	} {
		got := runNewJSON(t, "--db", c.db, "-n", "10", "--exact="+strconv.FormatBool(c.exact))
		if src := strings.Join(got.Sources, "\n"); got.summary() != want || got.NewNames != 38 || got.NewDomains != 2 || !strings.Contains(src, c.source) {
			t.Errorf("new on %s:\n got %s (%d names, %d domains)\nwant %s (38, 2)\nsources %q", filepath.Base(c.db), got.summary(), got.NewNames, got.NewDomains, want, got.Sources)
		}
	}
	// The crashed file's numbered rows after the counts were read (all in the window).
	after := strs(t, crashed, `SELECT count(*) FROM log WHERE id > (SELECT max(names_counted) FROM dict_epochs) AND typeof(name) = 'integer'`)[0][0]
	if got := runNewJSON(t, "--db", crashed); after == "0" || !strings.Contains(got.Sources[0], "and "+after+" rows after its counts read") {
		t.Errorf("new on the crashed file (%s numbered rows after the counts): sources %q", after, got.Sources)
	}
}

// TestNewSchema1: a file of schema 1 has only its rows, texts: new compares the window's names
// with the earlier rows' (none is new here), and top upstreams has nothing to count.
func TestNewSchema1(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "v1.db")
	// 5 s of rows 90 minutes ago, 2 s of them before a minute begins: 500 names and 3 more,
	// every one asked in those 2 s.
	from := time.Now().Add(-90*time.Minute).Unix() / 60 * 60 * 1000
	schema1File(t, db, 5000, from-2000)
	got := runNewJSON(t, "--db", db, "--since", time.UnixMilli(from).UTC().Format(time.RFC3339))
	wantNames := atoi(t, strs(t, db, `SELECT count(DISTINCT qname) FROM queries WHERE ts >= ?`, from)[0][0])
	wantNew := atoi(t, strs(t, db, `SELECT count(DISTINCT qname) FROM queries WHERE ts >= ?1 AND qname NOT IN (SELECT qname FROM queries WHERE ts < ?1)`, from)[0][0])
	if wantNames != 503 || wantNew != 0 || int64(got.WindowNames) != wantNames || int64(got.NewNames) != wantNew || !strings.Contains(strings.Join(got.Sources, "\n"), "rows of schema 1") {
		t.Errorf("new on schema 1: %d names, %d new; want %d, %d; sources %q", got.WindowNames, got.NewNames, wantNames, wantNew, got.Sources)
	}
	if out := mustRun(t, "top", "upstreams", "--db", db, "--since", "2h"); !strings.Contains(out, "no queries with an upstream") || !strings.Contains(out, "rows of schema 1 have no upstream") {
		t.Errorf("top upstreams on schema 1:\n%s", out)
	}
}

// TestOldNumbers: the range oldNumbers gives holds exactly the numbers the dictionary's epochs
// date before the window: those of an epoch that ended by then, and those of the epoch the
// window begins in no higher than the last a row before the window holds.
func TestOldNumbers(t *testing.T) {
	t.Parallel()
	epochs := []epoch{{logID: 1000, nameID: 10}, {logID: 2000, nameID: 50}, {logID: 3000, nameID: 90}}
	rule := func(num, w0 int64, recent sql.NullInt64) bool {
		i := epochIndex(epochs, num)
		if i < 0 || epochs[i].logID >= w0 {
			return false
		}
		ended := i+1 < len(epochs) && epochs[i+1].logID <= w0
		return ended || (recent.Valid && num <= recent.Int64 && num >= epochs[i].nameID)
	}
	for _, w0 := range []int64{500, 1000, 1500, 2000, 2500, 3000, 3500} {
		for _, recent := range []sql.NullInt64{{}, {Int64: 5, Valid: true}, {Int64: 30, Valid: true}, {Int64: 60, Valid: true}, {Int64: 95, Valid: true}} {
			lo, hi, ok := oldNumbers(epochs, w0, recent)
			for num := int64(0); num < 120; num++ {
				if got, want := ok && lo <= num && num <= hi, rule(num, w0, recent); got != want {
					t.Errorf("w0 %d, recent %v: number %d old %v, want %v (range %d-%d, %v)", w0, recent, num, got, want, lo, hi, ok)
				}
			}
		}
	}
}

// TestUnderAny: a name is under a domain on label boundaries only; an escaped dot is none.
func TestUnderAny(t *testing.T) {
	t.Parallel()
	domains := map[string]bool{"example.org.": true, `evil\.example.org.`: true}
	for name, want := range map[string]string{
		"example.org.":           "example.org.",
		"www.example.org.":       "example.org.",
		`evil\.example.org.`:     `evil\.example.org.`,
		`www.evil\.example.org.`: `evil\.example.org.`,
		`x\.y\.example.org.`:     "",
		"notexample.org.":        "",
		"org.":                   "",
		".":                      "",
		`a\\.example.org.`:       "example.org.", // the label a\, then example.org.
	} {
		if got := underAny(name, domains); got != want {
			t.Errorf("underAny(%q) = %q, want %q", name, got, want)
		}
	}
}
