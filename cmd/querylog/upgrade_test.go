package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestUpgradedFile: a file upgraded from schema 1 keeps its old rows in queries_v1, and every
// command reads them with the log's: search pages through the log rows, newest first, then on
// into the rows of schema 1, newest first, each filter applying to both; export gives the old
// rows first; top counts the old rows (which rollups never count) with the new; stats counts
// both.
func TestUpgradedFile(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "up.db")
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	schema1File(t, db, 300, old)
	s := startServer(t, db)
	s.send(t, mix)
	s.stop()
	if got := strs(t, db, `SELECT (SELECT count(*) FROM queries_v1), (SELECT count(*) FROM log)`)[0]; got[0] != "300" || got[1] != fmt.Sprint(len(mix)) {
		t.Fatalf("rows of schema 1 | log rows = %q, want 300 | %d", got, len(mix))
	}
	for _, c := range []struct {
		args  []string
		where string
	}{
		{nil, `1`},
		{[]string{"--name", "example.org"}, `qname = 'example.org.' OR qname LIKE '%.example.org.'`},
		{[]string{"--rcode", "NXDOMAIN", "--since", "3h"}, `rcode = 'NXDOMAIN'`},
	} {
		want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id >= 1 << 40 AND (`+c.where+`) ORDER BY id DESC`)
		v1 := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id < 1 << 40 AND (`+c.where+`) ORDER BY ts DESC, id DESC`)
		if len(want) == 0 || len(v1) == 0 {
			t.Fatalf("search %s: %d log rows and %d of schema 1 to compare, want some of each", c.args, len(want), len(v1))
		}
		got, _ := searchPages(t, 7, append([]string{"--db", db}, c.args...)...)
		checkSame(t, fmt.Sprint("search ", c.args), got, append(want, v1...))
	}

	want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id < 1 << 40 ORDER BY ts, id`)
	want = append(want, strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id >= 1 << 40 ORDER BY id`)...)
	checkSame(t, "export", jsonRecords(t, mustRun(t, "export", "--json", "--db", db)), want)

	for kind, col := range topColumns {
		want, total := sqlCounts(t, db, col, `ts >= ?`, time.Now().Add(-3*time.Hour).Unix()/60*60*1000)
		got := runTopJSON(t, kind, "--db", db, "--since", "3h")
		checkTop(t, "top "+kind, got, want, total)
		if got.Sources.Schema1Rows != 300 {
			t.Errorf("top %s: %d rows of schema 1, want 300", kind, got.Sources.Schema1Rows)
		}
	}

	st := runStatsJSON(t, db)
	checkStats(t, "stats", db, st, 3, -1)
	if st.V1Rows == nil || *st.V1Rows != 300 {
		t.Errorf("stats: rows of schema 1 %v, want 300", st.V1Rows)
	}
}
