package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// topJSON is the JSON output of top.
type topJSON struct {
	Rows []struct {
		Key     string  `json:"key"`
		Queries int64   `json:"queries"`
		Share   float64 `json:"share"`
		topCache
	} `json:"rows"`
	Total   int64    `json:"total"`
	Other   *int64   `json:"other"`
	Cache   topCache `json:"cache"`
	Sources struct {
		RollupQueries int64    `json:"rollup_queries"`
		RawRows       int64    `json:"raw_rows"`
		OldRawRows    int64    `json:"old_raw_rows"`
		Schema1Rows   int64    `json:"schema1_rows"`
		RowsOnly      bool     `json:"rows_only"`
		Text          []string `json:"text"`
	} `json:"sources"`
}

// topCache is a cache hit ratio of top's JSON.
type topCache struct {
	Hits     int64    `json:"hits"`
	Replies  int64    `json:"cache_replies"`
	HitRatio *float64 `json:"hit_ratio"`
}

func runTopJSON(t *testing.T, args ...string) topJSON {
	t.Helper()
	out := mustRun(t, append([]string{"top", "--json", "-n", "1000"}, args...)...)
	var v topJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("top output is not JSON: %v\n%s", err, out)
	}
	return v
}

// topColumns is the column of queries_readable (the view of either schema) that each top
// counts.
var topColumns = map[string]string{"domains": "qname", "clients": "client_ip", "rcodes": "rcode", "types": "qtype"}

// sqlCounts counts the rows of queries_readable by column where.
func sqlCounts(t *testing.T, db, col, where string, args ...any) (map[string]int64, int64) {
	t.Helper()
	m, total := map[string]int64{}, int64(0)
	for _, r := range strs(t, db, `SELECT `+col+`, count(*) FROM queries_readable WHERE `+where+` GROUP BY 1`, args...) {
		n := atoi(t, r[1])
		m[r[0]], total = n, total+n
	}
	return m, total
}

// checkTop checks top's counts against want (key → count), its total, the order, and that
// every query is counted from exactly one source.
func checkTop(t *testing.T, what string, got topJSON, want map[string]int64, total int64) {
	t.Helper()
	if got.Total != total {
		t.Errorf("%s: total %d, want %d", what, got.Total, total)
	}
	if s := got.Sources; s.RollupQueries+s.RawRows+s.OldRawRows+s.Schema1Rows != got.Total {
		t.Errorf("%s: sources %+v do not add up to the total %d", what, s, got.Total)
	}
	m := map[string]int64{}
	for i, r := range got.Rows {
		m[r.Key] = r.Queries
		if i > 0 && r.Queries > got.Rows[i-1].Queries {
			t.Errorf("%s: not in descending order at %q", what, r.Key)
		}
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, m, want)
	}
}

// TestTopMatchesRows: top counts what the rows hold, while the server runs (rows not yet in the
// rollups counted raw), after it stopped (everything in the minute rollups), and after it
// restarted and wrote more (both); the sources add up.
func TestTopMatchesRows(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	s.send(t, mix)
	check := func(stage string) []topJSON {
		var all []topJSON
		for kind, col := range topColumns {
			want, total := sqlCounts(t, db, col, `1`)
			got := runTopJSON(t, kind, "--db", db, "--since", "1h")
			checkTop(t, stage+": top "+kind, got, want, total)
			all = append(all, got)
		}
		return all
	}
	check("server running")
	s.stop()
	for _, got := range check("server stopped") {
		if got.Sources.RawRows != 0 || got.Sources.RollupQueries != got.Total {
			t.Errorf("server stopped: want every query from the rollups, got %+v", got.Sources)
		}
	}
	s = startServer(t, db)
	s.send(t, mix)
	for _, got := range check("restarted") {
		if got.Sources.RollupQueries != int64(len(mix)) {
			t.Errorf("restarted: %d queries from the rollups, want the first %d", got.Sources.RollupQueries, len(mix))
		}
	}
	s.stop()

	out := mustRun(t, "top", "rcodes", "--db", db)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "RCODE") || !strings.HasPrefix(lines[1], "NOERROR") || !strings.Contains(out, "from rollups: ") ||
		!strings.Contains(out, "rounded to whole minutes") {
		t.Errorf("top rcodes for people:\n%s", out)
	}
}

// TestTopFolded: with rollup_limit 10, the names past the limit in a minute are counted as
// (other); top says how many, and the counts it gives are never above the rows'.
func TestTopFolded(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "rollup_limit 10")
	var qs []query
	for i := range 25 {
		for range 1 + i%4 {
			qs = append(qs, query{fmt.Sprintf("n%d.example.org.", i), dns.TypeA, "127.0.0.2", false})
		}
	}
	s.send(t, qs)
	s.stop()
	want, total := sqlCounts(t, db, "qname", `1`)
	got := runTopJSON(t, "domains", "--db", db)
	if got.Total != total || got.Other == nil || *got.Other == 0 {
		t.Fatalf("total %d (want %d), other %v: want some folded", got.Total, total, got.Other)
	}
	sum := *got.Other
	for _, r := range got.Rows {
		sum += r.Queries
		if r.Queries > want[r.Key] {
			t.Errorf("%s: %d, above the rows' %d", r.Key, r.Queries, want[r.Key])
		}
	}
	if sum != total {
		t.Errorf("the counts and (other) add up to %d, want %d", sum, total)
	}
	if out := mustRun(t, "top", "domains", "--db", db); !strings.Contains(out, fmt.Sprintf("(other): %d queries", *got.Other)) {
		t.Errorf("top domains does not say what is folded:\n%s", out)
	}
}

// TestTopRollupLevels: top takes whole days, then whole hours, then minutes of the rollups,
// never two levels for the same time, and says which.
func TestTopRollupLevels(t *testing.T) {
	t.Parallel()
	db := loggedFile(t)
	day := time.Now().Unix()/86400*86400 - 2*86400
	hour := day + 86400 + 3600
	// Older rollups, as if the rows of those days had been counted and pruned. The hour inside
	// the day (inside.example.) must never be added to the day.
	testutil.SQLite3(t, db, fmt.Sprintf(`
		INSERT INTO rollup_names VALUES (86400, %[1]d, 'old.example.', 0, 100), (86400, %[1]d, '(other)', 0, 50),
			(3600, %[2]d, 'old.example.', 3, 7), (3600, %[3]d, 'inside.example.', 0, 1000);
		INSERT INTO rollup_clients VALUES (86400, %[1]d, '10.9.9.9', 150), (3600, %[2]d, '10.9.9.9', 7), (3600, %[3]d, '10.9.9.9', 1000);
		INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us) VALUES
			(86400, %[1]d, 0, 1, 'udp', 'cache', 150, 15000), (3600, %[2]d, 3, 28, 'tcp', '', 7, 700),
			(3600, %[3]d, 0, 1, 'udp', 'cache', 1000, 100000);`, day, hour, day+3600))
	rows, rowsTotal := sqlCounts(t, db, "qname", `1`)

	got := runTopJSON(t, "domains", "--db", db, "--since", "3d")
	want := map[string]int64{"old.example.": 107}
	for k, v := range rows {
		want[k] = v
	}
	checkTop(t, "--since 3d", got, want, rowsTotal+157)
	text := strings.Join(got.Sources.Text, "\n")
	if !strings.Contains(text, "from rollups: 1 day, 1 hour, ") || !strings.Contains(text, "not counted: ") || *got.Other != 50 {
		t.Errorf("--since 3d: sources %q, (other) %d", text, *got.Other)
	}

	// Starting inside the day: its hours, not the day.
	since := time.Unix(day+1800, 0).UTC().Format(time.RFC3339)
	got = runTopJSON(t, "domains", "--db", db, "--since", since)
	want = map[string]int64{"old.example.": 7, "inside.example.": 1000}
	for k, v := range rows {
		want[k] = v
	}
	checkTop(t, "--since "+since, got, want, rowsTotal+1007)

	// Ending before the rows; rcodes and clients from the outcomes and clients tables.
	until := time.Unix(hour+3600, 0).UTC().Format(time.RFC3339)
	got = runTopJSON(t, "rcodes", "--db", db, "--since", "3d", "--until", until)
	checkTop(t, "rcodes --until "+until, got, map[string]int64{"NOERROR": 150, "NXDOMAIN": 7}, 157)
	got = runTopJSON(t, "clients", "--db", db, "--since", "3d", "--until", until)
	checkTop(t, "clients --until "+until, got, map[string]int64{"10.9.9.9": 157}, 157)
}

// TestTopSchema1: a file of schema 1 has no rollups: top counts its rows.
func TestTopSchema1(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "v1.db")
	start := time.Now().Add(-90 * time.Minute).UnixMilli()
	schema1File(t, db, 5000, start)
	for kind, col := range topColumns {
		// Whole minutes: the window begins at the minute --since falls in.
		from := time.UnixMilli(start+2500).Unix() / 60 * 60 * 1000
		want, total := sqlCounts(t, db, col, `ts >= ?`, from)
		got := runTopJSON(t, kind, "--db", db, "--since", time.UnixMilli(start+2500).UTC().Format(time.RFC3339Nano))
		checkTop(t, "top "+kind, got, want, total)
		if got.Sources.Schema1Rows != total {
			t.Errorf("top %s: %+v, want every row of schema 1", kind, got.Sources)
		}
	}
}
