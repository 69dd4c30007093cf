package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/coredns/coredns/plugin/metadata"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
)

func TestNearestRank(t *testing.T) {
	for _, c := range []struct {
		values []uint32
		p      float64
		want   int64
	}{
		{nil, 50, 0},
		{[]uint32{7}, 99, 7},
		{[]uint32{1, 2, 3, 4}, 50, 2},
		{[]uint32{1, 2, 3, 4}, 99, 4},
		{[]uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
		{[]uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
	} {
		if got := nearestRank(c.values, c.p); got != c.want {
			t.Errorf("nearestRank(%v, %v) = %d, want %d", c.values, c.p, got, c.want)
		}
	}
}

func TestBucketBound(t *testing.T) {
	for _, c := range []struct {
		buckets map[int]int64 // bucket: count
		p       float64
		want    int64
		bounded bool
	}{
		{nil, 50, 0, true},
		{map[int]int64{3: 1}, 50, 1000, true},                   // 500 µs to 1 ms
		{map[int]int64{0: 1, 6: 1}, 50, 100, true},              // the first of two
		{map[int]int64{0: 1, 6: 1}, 51, 10_000, true},           // past half
		{map[int]int64{0: 98, 1: 1, 9: 1}, 99, 250, true},       // the 99th of 100
		{map[int]int64{0: 98, 1: 1, 15: 1}, 100, 0, false},      // over 5 s
		{map[int]int64{0: 1, 15: 1000}, 50, 0, false},           // over 5 s
		{map[int]int64{14: 10, 15: 0}, 99, 5_000_000, true},     // the last bound
		{map[int]int64{2: 1 << 40, 12: 1 << 40}, 50, 500, true}, // large counts
	} {
		var b [16]int64
		for i, n := range c.buckets {
			b[i] = n
		}
		if got, ok := bucketBound(b, c.p); got != c.want || ok != c.bounded {
			t.Errorf("bucketBound(%v, %v) = %d, %v; want %d, %v", c.buckets, c.p, got, ok, c.want, c.bounded)
		}
	}
}

// upstreamsJSON is the JSON output of top upstreams.
type upstreamsJSON struct {
	Rows []struct {
		Upstream      string  `json:"upstream"`
		Queries       int64   `json:"queries"`
		Servfail      int64   `json:"servfail"`
		ServfailShare float64 `json:"servfail_share"`
		P50US         *int64  `json:"p50_us"`
		P99US         *int64  `json:"p99_us"`
	} `json:"rows"`
	Total         int64    `json:"total"`
	RollupQueries int64    `json:"rollup_queries"`
	RowsRead      int64    `json:"rows_read"`
	Percentiles   string   `json:"percentiles"`
	Sources       []string `json:"sources"`
}

func runUpstreamsJSON(t *testing.T, args ...string) upstreamsJSON {
	t.Helper()
	out := mustRun(t, append([]string{"top", "upstreams", "--json"}, args...)...)
	var v upstreamsJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("top upstreams --json: %v\n%s", err, out)
	}
	return v
}

// upstreamWant is what the rows of an upstream hold.
type upstreamWant struct {
	durations          []uint32 // sorted
	queries, servfails int64
}

// upstreamWants reads, with SQL through the view, what top upstreams must count.
func upstreamWants(t *testing.T, db string) (map[string]*upstreamWant, int64) {
	t.Helper()
	wants := map[string]*upstreamWant{}
	var total int64
	for _, r := range strs(t, db, `SELECT upstream, rcode, duration_us FROM queries_readable WHERE upstream IS NOT NULL ORDER BY duration_us`) {
		w := wants[r[0]]
		if w == nil {
			w = &upstreamWant{}
			wants[r[0]] = w
		}
		w.queries++
		total++
		if r[1] == "SERVFAIL" {
			w.servfails++
		}
		w.durations = append(w.durations, uint32(atoi(t, r[2])))
	}
	return wants, total
}

// checkUpstreams checks top upstreams' counts against the rows, and its percentiles: exact, or
// the bounds of the buckets the rows' exact percentiles fall in.
func checkUpstreams(t *testing.T, what, db string, got upstreamsJSON, exact bool) {
	t.Helper()
	wants, total := upstreamWants(t, db)
	if got.Total != total || len(got.Rows) != len(wants) {
		t.Errorf("%s: total %d (want %d), rows %+v (want %d)", what, got.Total, total, got.Rows, len(wants))
	}
	wantPercentiles := map[bool]string{true: "exact", false: "bucket_upper_bound"}[exact]
	if got.Percentiles != wantPercentiles {
		t.Errorf("%s: percentiles %q, want %q", what, got.Percentiles, wantPercentiles)
	}
	percentile := func(w *upstreamWant, p float64) int64 {
		us := nearestRank(w.durations, p)
		if !exact {
			i, _ := slices.BinarySearch(logrow.DurationBounds, us)
			us = logrow.DurationBounds[i] // the tests' reply times are under 5 s
		}
		return us
	}
	for i, r := range got.Rows {
		w := wants[r.Upstream]
		if i > 0 && r.Queries > got.Rows[i-1].Queries {
			t.Errorf("%s: not in descending order at %q", what, r.Upstream)
		}
		if w == nil || r.Queries != w.queries || r.Servfail != w.servfails || r.ServfailShare != float64(w.servfails)/float64(w.queries) ||
			r.P50US == nil || *r.P50US != percentile(w, 50) || r.P99US == nil || *r.P99US != percentile(w, 99) {
			t.Errorf("%s: %s: got %+v (p50 %v, p99 %v), want %+v (p50 %d, p99 %d)", what, r.Upstream, r, deref64(r.P50US), deref64(r.P99US),
				w, percentile(w, 50), percentile(w, 99))
		}
	}
}

func deref64(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestTopUpstreams: with the metadata plugin on, forward's upstream is in each forwarded row.
// top upstreams counts each upstream's queries and SERVFAILs as SQL on the rows does: from the
// rollups and the rows written after them while the server runs, from the rollups alone once it
// stopped (percentiles: the bounds of the rows' exact ones' buckets), and from the rows alone,
// exactly, before the rollups counted upstreams (a file upgraded from schema 2).
func TestTopUpstreams(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	fail := fakeUpstream(t, 0, dns.RcodeServerFailure)
	const block = "metadata\n    forward fail.example.com "
	qs := slices.Clone(mix) // two slow.example.com., answered NOERROR after 150 ms
	for i := range 5 {
		qs = append(qs, query{fmt.Sprintf("n%d.fail.example.com.", i), dns.TypeA, "127.0.0.6", false})
	}
	s := startServerBlock(t, db, "", block+fail)
	s.send(t, qs)
	s.stop()

	s = startServerBlock(t, db, "", block+fail)
	s.send(t, qs)
	got := runUpstreamsJSON(t, "--db", db, "--since", "1h")
	checkUpstreams(t, "rollups and rows", db, got, false)
	if got.RollupQueries < 7 || got.Rows[0].Upstream != fail || got.Rows[0].Servfail != 10 {
		t.Errorf("rollups and rows: %d queries from the rollups (want the first 7 at least), first row %+v (want %s's 10 SERVFAILs)",
			got.RollupQueries, got.Rows[0], fail)
	}
	s.stop()

	rolled := runUpstreamsJSON(t, "--db", db, "--since", "1h")
	checkUpstreams(t, "rollups", db, rolled, false)
	if rolled.RollupQueries != rolled.Total || rolled.RowsRead != 0 {
		t.Errorf("rollups: %d of %d queries from the rollups, %d rows read; want all from the rollups", rolled.RollupQueries, rolled.Total, rolled.RowsRead)
	}
	if r := rolled.Rows[1]; r.P50US == nil || *r.P50US < 250_000 {
		t.Errorf("the slow upstream's median bound %v µs, want 250 ms at least (its replies take 150 ms)", deref64(r.P50US))
	}
	table := mustRun(t, "top", "upstreams", "--db", db, "--since", "1h")
	t.Logf("top upstreams from the rollups:\n%s", table)
	lines := strings.Split(table, "\n")
	if !strings.HasPrefix(lines[0], "UPSTREAM") || !strings.Contains(lines[0], "SERVFAIL") || !strings.Contains(lines[0], "P99") ||
		!strings.HasPrefix(lines[1], fail) || !strings.Contains(lines[1], "100.0%") || !strings.Contains(table, "from rollups: ") ||
		!strings.Contains(table, "the upper bound of the reply-time bucket") {
		t.Errorf("top upstreams:\n%s", table)
	}

	// Files whose rollups counted no upstream: the same counts from the rows, and the exact
	// percentiles.
	for _, c := range []struct{ file, sql, says string }{
		{"upgraded from schema 2 after these rows", `INSERT INTO state SELECT 'rollup_upstreams_after', value FROM state WHERE key = 'rollup_id';
			DELETE FROM rollup_upstreams`, "the rollups count upstreams from "},
		{"of schema 2", `DROP TABLE rollup_upstreams; DELETE FROM state WHERE key = 'rollup_upstreams_after'; PRAGMA user_version = 2`,
			"from raw rows only (54 rows): this file's rollups do not count upstreams (schema 2)"},
	} {
		testutil.Exec(t, db, c.sql)
		rows := runUpstreamsJSON(t, "--db", db, "--since", "1h")
		checkUpstreams(t, c.file, db, rows, true)
		if rows.RollupQueries != 0 || rows.RowsRead != 2*int64(len(qs)) || !strings.Contains(strings.Join(rows.Sources, "\n"), c.says) {
			t.Errorf("%s: %d queries from the rollups, %d rows read (want 0, %d), sources %q", c.file, rows.RollupQueries, rows.RowsRead, 2*len(qs), rows.Sources)
		}
		for i, r := range rows.Rows {
			if r.Queries != rolled.Rows[i].Queries || r.Servfail != rolled.Rows[i].Servfail {
				t.Errorf("%s: %+v; from the rollups %+v", c.file, r, rolled.Rows[i])
			}
		}
		t.Logf("top upstreams of a file %s:\n%s", c.file, mustRun(t, "top", "upstreams", "--db", db, "--since", "1h"))
	}

	// A window without rows.
	if out := mustRun(t, "top", "upstreams", "--db", db, "--since", "3h", "--until", "2h"); !strings.Contains(out, "no queries with an upstream in the window") {
		t.Errorf("top upstreams of an empty window:\n%s", out)
	}
}
