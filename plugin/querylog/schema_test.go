package querylog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
)

// v1File writes a database as schema 1 left it: its DDL, its name tables, its marks, and
// rows rows of text written a millisecond apart from ms, with the sqlite3 command-line tool
// (which makes a million rows in a second or two).
func v1File(t *testing.T, path string, rows int, ms int64) {
	t.Helper()
	testutil.SQLite3(t, path, fmt.Sprintf(`PRAGMA journal_mode = WAL;
		BEGIN;
		%s
		INSERT INTO qtype_names VALUES (1, 'A'), (28, 'AAAA');
		INSERT INTO rcode_names VALUES (0, 'NOERROR'), (3, 'NXDOMAIN');
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %d)
		INSERT INTO queries SELECT %d + i, 'dns://:53', '10.0.' || (i %% 250) || '.1', iif(i %% 7 = 0, 'tcp', 'udp'),
			'host' || (i %% 5000) || '.example.', iif(i %% 3 = 0, 28, 1), 1, iif(i %% 10 = 0, 3, 0), 60 + i %% 200,
			iif(i %% 10 = 0, 0, 1), 100 + i %% 900, i %% 2 FROM n;
		PRAGMA application_id = %d; PRAGMA user_version = 1;
		COMMIT;`, migrations[0], rows, ms, logrow.ApplicationID))
}

// schemaFile writes a database as a build of schema version (2 or more) made it new: the
// migrations up to version, without schema 1's table; then stmts.
func schemaFile(t *testing.T, path string, version int, stmts string) {
	t.Helper()
	testutil.SQLite3(t, path, fmt.Sprintf(`PRAGMA journal_mode = WAL;
		BEGIN; %s; DROP TABLE queries_v1; %s;
		PRAGMA application_id = %d; PRAGMA user_version = %d; COMMIT;`, strings.Join(migrations[:version], ";\n"), stmts, logrow.ApplicationID, version))
}

// v1Digest sums what every row of schema 1's columns holds, through the queries view.
func v1Digest(t *testing.T, path, where string) string {
	t.Helper()
	return testutil.SQLite3(t, path, `SELECT count(*), sum(ts), count(DISTINCT server || client_ip || proto || qname),
		sum(qtype * 7 + qclass * 11 + rcode * 13 + size + answers * 17 + duration_us + "do") FROM queries `+where)
}

// TestMigrateFromV1 upgrades a real schema 1 database of a million rows: its rows stay in place
// (the upgrade changes only the schema, so it takes as long for any number of rows, and CoreDNS
// starts at once), read the same through the views, and leave with retention, rows of schema 1
// first; then their table goes.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	rows := 1_000_000
	if testing.Short() {
		rows = 10_000
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	old := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	v1File(t, path, rows, old)
	before := v1Digest(t, path, "")
	rootBefore := testutil.SQLite3(t, path, `SELECT rootpage FROM sqlite_schema WHERE name = 'queries'`)
	pagesBefore := testutil.SQLite3(t, path, `PRAGMA page_count`)

	start := time.Now()
	s := testStore(t, path)
	t.Logf("opened and upgraded a schema 1 database of %d rows (%s of pages) in %s", rows, pagesBefore, time.Since(start))
	if !s.v1 {
		t.Fatal("the rows of schema 1 are not kept")
	}
	checkSchemaV1Kept(t, path, rootBefore, pagesBefore)
	if after := v1Digest(t, path, ""); after != before {
		t.Fatalf("rows read through the views after the upgrade: %s, before: %s", after, before)
	}
	newer := entryOf(&testLabels, queryRow{ts: time.Now().UnixMilli(), server: "dns://:53", client: "192.0.2.1", qname: "new.example.", qtype: 1, qclass: 1})
	if err := s.write([]entry{newer}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.SQLite3(t, path, `SELECT count(*), max(id) > (SELECT max(rowid) FROM queries_v1) FROM queries`); got != fmt.Sprintf("%d|1", rows+1) {
		t.Errorf("after a write: count, new id above the old ones = %s, want %d|1", got, rows+1)
	}

	// Retention removes the rows of schema 1 first, then tidy drops their table. (Most of
	// them go through the command-line tool first: the race detector makes a million
	// deletions through modernc.org/sqlite take minutes.)
	testutil.SQLite3(t, path, `DELETE FROM queries_v1 WHERE rowid > 5000`)
	for {
		n, err := s.pruneOlder(time.Now().Add(-time.Hour).UnixMilli(), 100_000, shipBound{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if _, err := s.tidy(1000); err != nil {
		t.Fatal(err)
	}
	if s.v1 {
		t.Error("queries_v1 is kept although it is empty")
	}
	if got := testutil.SQLite3(t, path, `SELECT count(*) FROM sqlite_schema WHERE name = 'queries_v1'`); got != "0" {
		t.Errorf("queries_v1 still in the schema")
	}
	if got := testutil.SQLite3(t, path, `SELECT qname FROM queries_readable`); got != "new.example." {
		t.Errorf("rows left: %q, want the new one", got)
	}
}

// checkSchemaV1Kept checks that the upgrade kept schema 1's table as it was (same root page,
// the file grown by the new schema's few pages only) and that the views read it.
func checkSchemaV1Kept(t *testing.T, path, rootBefore, pagesBefore string) {
	t.Helper()
	if root := testutil.SQLite3(t, path, `SELECT rootpage FROM sqlite_schema WHERE name = 'queries_v1'`); root != rootBefore {
		t.Errorf("queries_v1 has root page %s, queries had %s: the rows were copied", root, rootBefore)
	}
	// A new table or index takes a page (its root) until it has rows; the schema's own pages a
	// few more.
	var before, after, roots int
	fmt.Sscan(pagesBefore, &before)
	fmt.Sscan(testutil.SQLite3(t, path, `PRAGMA page_count`), &after)
	fmt.Sscan(testutil.SQLite3(t, path, `SELECT count(*) FROM sqlite_schema WHERE rootpage > 0`), &roots)
	if after > before+roots+4 {
		t.Errorf("the file grew from %d to %d pages in the upgrade, more than the %d tables and indexes it has and 4", before, after, roots)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromV3: the upgrade to schema 4 and 5 adds the names' first row and count, the
// epochs' names_counted, and log_texts, which lists the rows of schema 3 that hold a name as
// text; what schema 3 wrote says nothing counted (first NULL, n 0, names_counted NULL).
func TestMigrateFromV3(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	// Two rows per name and client: the first holds the text, the second the number.
	schemaFile(t, path, 3, `INSERT INTO dict_epochs (log_id, name_id, client_id, pod_id) VALUES (256, 1, 1, 1);
		INSERT INTO names (id, name) VALUES (1, 'a.example.'), (2, 'b.example.');
		INSERT INTO clients (id, addr) VALUES (1, '192.0.2.1');
		INSERT INTO log (id, name, client, late, a, b, c) VALUES (256, 'a.example.', '192.0.2.1', 0, 0, 0, 0),
			(257, 1, 1, 0, 0, 0, 0), (258, 'b.example.', 1, 0, 0, 0, 0), (259, 2, 1, 0, 0, 0, 0)`)
	s := testStore(t, path)
	checkSchema(t, s)
	if got := testutil.SQLite3(t, path, `SELECT group_concat(id || ' ' || quote(first) || ' ' || n, ', ') FROM names;
		SELECT group_concat(quote(names_counted)) FROM dict_epochs;
		SELECT group_concat(id) FROM log_texts`); got != "1 NULL 0, 2 NULL 0\nNULL\n256,258" {
		t.Errorf("after the upgrade: names (id, first, n), names_counted, rows of log_texts:\n%s\nwant\n1 NULL 0, 2 NULL 0\nNULL\n256,258", got)
	}
	// The writer goes on from there, numbering names afresh in an epoch of its own.
	e := entryOf(&testLabels, queryRow{ts: time.Now().UnixMilli(), qname: "a.example.", client: "192.0.2.1"})
	if err := s.write([]entry{e, e}); err != nil {
		t.Fatal(err)
	}
	if names, _ := checkNameRows(t, path, 2); names != 3 {
		t.Errorf("%d names rows after a write, want 3", names)
	}
}

// TestMigrateFromV4: the upgrade to schema 5 replaces the index log_texts of schema 4 with a
// table of the same rows, filled in bounded memory (see migrations[4]; a file of millions of
// rows holding a text took the index's sort in memory). A file whose index was dropped by hand
// is upgraded too, and gets the table.
func TestMigrateFromV4(t *testing.T) {
	t.Parallel()
	const rows = `INSERT INTO dict_epochs (log_id, name_id, client_id, pod_id) VALUES (256, 1, 1, 1);
		INSERT INTO names (id, name, first, n) VALUES (1, 'a.example.', 257, 1);
		INSERT INTO log (id, name, client, late, a, b, c) VALUES (256, 'a.example.', '192.0.2.1', 0, 0, 0, 0),
			(257, 1, '192.0.2.1', 0, 0, 0, 0), (258, 'b.example.', '192.0.2.1', 0, 0, 0, 0)`
	const index = `SELECT coalesce((SELECT type || ': ' || sql FROM sqlite_schema WHERE name = 'log_texts'), 'none')`
	for _, c := range []struct{ name, stmts, before string }{
		{"schema 4", `CREATE INDEX log_texts ON log (id) WHERE typeof(name) = 'text'; ` + rows, "index: CREATE INDEX log_texts ON log (id) WHERE typeof(name) = 'text'"},
		{"log_texts dropped", rows, "none"},
	} {
		path := tempDB(t)
		schemaFile(t, path, 4, c.stmts)
		if got := testutil.SQLite3(t, path, index); got != c.before {
			t.Fatalf("%s: log_texts before the upgrade: %s", c.name, got)
		}
		s := testStore(t, path)
		checkSchema(t, s)
		if got := testutil.SQLite3(t, path, index+`; SELECT group_concat(id) FROM log_texts`); got != `table: CREATE TABLE "log_texts" (id INTEGER PRIMARY KEY)`+"\n256,258" {
			t.Errorf("%s: after the upgrade, log_texts and its rows:\n%s", c.name, got)
		}
	}
}

// TestMigrateFromV5: the upgrade to schema 6 records the registered domains the file knew, from
// the names table and the rollups' names, with the first and last time known (as log ids); the
// list of first sightings begins after the last row. A name at a time: the chunks continue
// where the last ended.
func TestMigrateFromV5(t *testing.T) {
	chunk := backfillChunk
	backfillChunk = 1
	t.Cleanup(func() { backfillChunk = chunk })
	path := tempDB(t)
	schemaFile(t, path, 5, `INSERT INTO dict_epochs (log_id, name_id, client_id, pod_id) VALUES (256, 1, 1, 1);
		INSERT INTO names (id, name, first, n) VALUES (1, 'www.example.org.', 512, 1), (2, 'x.example.com.', NULL, 0), (3, 'mail.example.org.', 768, 1),
			(4, 'org.', 1024, 1);
		INSERT INTO log (id, name, client, late, a, b, c) VALUES (1280, 'a.example.', '192.0.2.1', 0, 0, 0, 0);
		INSERT INTO rollup_names (span, start, name, rcode, n) VALUES (60, 60, 'ftp.example.org.', 0, 1), (60, 120, 'ftp.example.org.', 0, 1),
			(3600, 0, 'y.example.net.', 0, 3), (60, 60, '(other)', 0, 9)`)
	s := testStore(t, path)
	checkSchema(t, s)
	got := strings.Join(testutil.Column[string](t, s.db, `SELECT domain || ' ' || first || ' ' || last FROM domains_seen ORDER BY domain`), ", ")
	if want := "example.com. 0 0, example.net. 0 0, example.org. 512 " + fmt.Sprint(120*1000<<8); got != want {
		t.Errorf("domains_seen after the upgrade: %q, want %q", got, want)
	}
	if from := testutil.Column[int64](t, s.db, `SELECT value FROM state WHERE key = 'name_firsts_from'`); len(from) != 1 || from[0] != 1281 {
		t.Errorf("name_firsts_from %v, want the id after the last row, 1281", from)
	}
}

// TestLogTexts: the writer lists in log_texts the rows that hold a name as text, which querylog
// new reads by id instead of every row of the window.
func TestLogTexts(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	var batch []entry
	for i := range 300 {
		batch = append(batch, entryOf(&testLabels, queryRow{ts: time.Now().UnixMilli(), qname: fmt.Sprintf("n%d.example.", i%100+i/200*1000), client: "192.0.2.1"}))
	}
	if err := s.write(batch); err != nil {
		t.Fatal(err)
	}
	checkTextRows(t, path)
	first := s.state.lastID - 299   // a batch's ids are consecutive
	from, to := first+50, first+250 // rows 50 to 249
	const query = `SELECT l.id, l.name FROM log_texts t CROSS JOIN log l ON l.id = t.id WHERE t.id >= ? AND t.id < ?`
	if plan, want := testutil.QueryPlan(t, s.db, query, from, to), "SEARCH t USING INTEGER PRIMARY KEY (rowid>? AND rowid<?);SEARCH l USING INTEGER PRIMARY KEY (rowid=?);"; plan != want {
		t.Errorf("%s\nis planned as %s\nwant         %s", query, plan, want)
	}
	list := func(q string) (n int, rows string) {
		t.Helper()
		if err := s.db.QueryRow(`SELECT count(*), coalesce(group_concat(id || ' ' || name, ', '), '') FROM (`+q+`)`, from, to).Scan(&n, &rows); err != nil {
			t.Fatal(err)
		}
		return n, rows
	}
	n, got := list(query)
	_, want := list(`SELECT id, name FROM log WHERE id >= ? AND id < ? AND typeof(name) = 'text'`)
	// Rows 50-99 hold names seen for the first time, 100-199 numbers, 200-249 new names again.
	if got != want || n != 100 {
		t.Errorf("log_texts gives %d rows, %q; the log %q; want the same, 100 rows", n, got, want)
	}
}
