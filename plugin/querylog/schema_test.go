package querylog

import (
	"fmt"
	"os"
	"path/filepath"
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
