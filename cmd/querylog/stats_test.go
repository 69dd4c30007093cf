package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
)

// statsJSON is the JSON output of stats.
type statsJSON struct {
	File     string      `json:"file"`
	Bytes    int64       `json:"bytes"`
	Schema   int         `json:"schema"`
	Rows     int64       `json:"rows"`
	V1Rows   *int64      `json:"schema1_rows"`
	First    *string     `json:"first"`
	Last     *string     `json:"last"`
	PerDayJS []dayCount  `json:"rows_per_day"`
	Rollups  []rollupSet `json:"rollups"`
	After    *int64      `json:"rows_after_rollups"`
}

func runStatsJSON(t *testing.T, db string) statsJSON {
	t.Helper()
	out := mustRun(t, "stats", "--json", "--db", db)
	var s statsJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("stats output is not JSON: %v\n%s", err, out)
	}
	return s
}

// checkStats compares stats with SQL on the file: rows, first and last arrival, rows per day,
// size.
// checkStats compares stats' report with SQL on the file, whose size was minBytes before stats
// ran (-1: the file does not change, the sizes must be equal).
func checkStats(t *testing.T, what, db string, got statsJSON, schema int, minBytes int64) {
	t.Helper()
	want := strs(t, db, `SELECT count(*), strftime('%Y-%m-%dT%H:%M:%fZ', min(ts) / 1000.0, 'unixepoch'),
		strftime('%Y-%m-%dT%H:%M:%fZ', max(ts) / 1000.0, 'unixepoch') FROM queries`)[0]
	if fmt.Sprint(got.Rows) != want[0] || got.First == nil || *got.First != want[1] || *got.Last != want[2] || got.Schema != schema {
		t.Errorf("%s: rows %d, first %v, last %v, schema %d; want %q, schema %d", what, got.Rows, deref(got.First), deref(got.Last), got.Schema, want, schema)
	}
	days := strs(t, db, `SELECT strftime('%Y-%m-%d', ts / 1000, 'unixepoch'), count(*) FROM queries GROUP BY 1 ORDER BY 1`)
	if fmt.Sprint(got.PerDayJS) != fmt.Sprint(dayCounts(t, days)) {
		t.Errorf("%s: rows per day %v, want %v", what, got.PerDayJS, days)
	}
	// While a server runs, a checkpoint may grow the file between stats and this look: the
	// size reported must be one the file had (it never shrinks here: no max_size).
	if minBytes < 0 {
		minBytes = fileSize(t, db)
	}
	if fi, _ := os.Stat(db); got.Bytes < minBytes || got.Bytes > fi.Size() {
		t.Errorf("%s: %d bytes, the file had %d before stats and %d after", what, got.Bytes, minBytes, fi.Size())
	}
}

func dayCounts(t *testing.T, rows [][]string) []dayCount {
	var out []dayCount
	for _, r := range rows {
		out = append(out, dayCount{r[0], atoi(t, r[1])})
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestStats: stats reports what SQL on the file says, for both schemas, with the server
// running (the last rows not yet in the rollups) and stopped (every row in them).
func TestStats(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	s.send(t, mix)
	before := fileSize(t, db)
	got := runStatsJSON(t, db)
	checkStats(t, "server running", db, got, logrow.SchemaVersion, before)
	s.send(t, mix)
	s.stop()
	got = runStatsJSON(t, db)
	checkStats(t, "server stopped", db, got, logrow.SchemaVersion, -1)
	minutes := strs(t, db, `SELECT count(DISTINCT start), min(start), max(start) FROM rollup_outcomes WHERE span = 60`)[0]
	if len(got.Rollups) != 1 || got.Rollups[0].Span != 60 || fmt.Sprint(got.Rollups[0].Periods) != minutes[0] ||
		got.Rollups[0].First != rfc3339(atoi(t, minutes[1])) || got.After == nil || *got.After != 0 {
		t.Errorf("rollups %+v, rows after them %v; want the minutes %v, none after", got.Rollups, got.After, minutes)
	}
	if out := mustRun(t, "stats", "--db", db); !containsAll(out, "schema", "rows per day (UTC):", "rollups: minutes", db) {
		t.Errorf("stats for people:\n%s", out)
	}

	v1 := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, v1, 3000, time.Now().Add(-36*time.Hour).UnixMilli())
	checkStats(t, "schema 1", v1, runStatsJSON(t, v1), 1, -1)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestStatsDictionaries: stats counts the names and clients in the dictionaries, and says that
// one enters when seen twice, which is what the plugin does: of a name asked once, one asked
// twice and one asked three times, from one client, the dictionaries hold two names and the
// client.
func TestStatsDictionaries(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	once := query{"once.example.org.", dns.TypeA, "127.0.0.2", false}
	twice := query{"twice.example.org.", dns.TypeA, "127.0.0.2", false}
	thrice := query{"thrice.example.org.", dns.TypeA, "127.0.0.2", false}
	s.send(t, []query{once, twice, thrice, twice, thrice, thrice})
	s.stop()
	if got := strs(t, db, `SELECT count(*) FROM queries`)[0][0]; got != "6" {
		t.Fatalf("%s rows, want the 6 queries sent", got)
	}
	var got struct {
		Names   int64 `json:"dictionary_names"`
		Clients int64 `json:"dictionary_clients"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "stats", "--json", "--db", db)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Names != 2 || got.Clients != 1 {
		t.Errorf("dictionaries: %d names, %d clients; want 2 (the names asked twice and three times) and 1", got.Names, got.Clients)
	}
	out := mustRun(t, "stats", "--db", db)
	if !containsAll(strings.Join(strings.Fields(out), " "), "dictionaries 2 names, 1 clients",
		"a name or client enters when seen twice", "the rows of one seen once hold its text") {
		t.Errorf("stats does not say when a name enters the dictionary:\n%s", out)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
