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

// TestTopUpstreams: with the metadata plugin on, forward's upstream is in each forwarded row;
// top upstreams counts the rows of each, its SERVFAIL share and its reply times' percentiles,
// as SQL on the same rows does.
func TestTopUpstreams(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	fail := fakeUpstream(t, 0, dns.RcodeServerFailure)
	s := startServerBlock(t, db, "", "metadata\n    forward fail.example.com "+fail)
	qs := slices.Clone(mix) // two slow.example.com., answered NOERROR after 150 ms
	for i := range 5 {
		qs = append(qs, query{fmt.Sprintf("n%d.fail.example.com.", i), dns.TypeA, "127.0.0.6", false})
	}
	s.send(t, qs)
	s.stop()

	type want struct {
		durations          []uint32
		queries, servfails int64
	}
	wants := map[string]*want{}
	var total int64
	for _, r := range strs(t, db, `SELECT upstream, rcode, duration_us FROM queries_readable WHERE upstream IS NOT NULL ORDER BY duration_us`) {
		w := wants[r[0]]
		if w == nil {
			w = &want{}
			wants[r[0]] = w
		}
		w.queries++
		total++
		if r[1] == "SERVFAIL" {
			w.servfails++
		}
		w.durations = append(w.durations, uint32(atoi(t, r[2])))
	}
	if len(wants) != 2 || wants[fail] == nil || wants[fail].queries != 5 {
		t.Fatalf("the rows' upstreams: %v; want 2 of slow.example.com. and 5 of %s", wants, fail)
	}

	var got struct {
		Rows []struct {
			Upstream      string  `json:"upstream"`
			Queries       int64   `json:"queries"`
			Servfail      int64   `json:"servfail"`
			ServfailShare float64 `json:"servfail_share"`
			P50US         int64   `json:"p50_us"`
			P99US         int64   `json:"p99_us"`
		} `json:"rows"`
		Total    int64    `json:"total"`
		RowsRead int64    `json:"rows_read"`
		Sources  []string `json:"sources"`
	}
	out := mustRun(t, "top", "upstreams", "--db", db, "--since", "1h", "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("top upstreams --json: %v\n%s", err, out)
	}
	if got.Total != total || got.RowsRead != int64(len(qs)) || len(got.Rows) != 2 || got.Rows[0].Upstream != fail {
		t.Fatalf("top upstreams --json: total %d (want %d), rows read %d (want %d), rows %+v", got.Total, total, got.RowsRead, len(qs), got.Rows)
	}
	for _, r := range got.Rows {
		w := wants[r.Upstream]
		if w == nil || r.Queries != w.queries || r.Servfail != w.servfails || r.ServfailShare != float64(w.servfails)/float64(w.queries) ||
			r.P50US != nearestRank(w.durations, 50) || r.P99US != nearestRank(w.durations, 99) {
			t.Errorf("%s: got %+v, want %+v", r.Upstream, r, w)
		}
	}
	if r := got.Rows[1]; r.P50US < 150_000 || got.Rows[0].Servfail != 5 {
		t.Errorf("the slow upstream's median %d µs (want at least 150 ms), the failing one's SERVFAILs %d", r.P50US, got.Rows[0].Servfail)
	}

	table := mustRun(t, "top", "upstreams", "--db", db, "--since", "1h")
	lines := strings.Split(table, "\n")
	if !strings.HasPrefix(lines[0], "UPSTREAM") || !strings.Contains(lines[0], "SERVFAIL") || !strings.Contains(lines[0], "P99") ||
		!strings.HasPrefix(lines[1], fail) || !strings.Contains(lines[1], "100.0%") || !strings.Contains(table, "from raw rows only") {
		t.Errorf("top upstreams:\n%s", table)
	}
	// A window without rows.
	if out := mustRun(t, "top", "upstreams", "--db", db, "--since", "3h", "--until", "2h"); !strings.Contains(out, "no queries with an upstream in the window") {
		t.Errorf("top upstreams of an empty window:\n%s", out)
	}
}
