package querylog

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// upRow is a row of the upstream tests: when (ms after the test's hour), which upstream ("":
// none), its rcode and reply time.
type upRow struct {
	ms       int64
	upstream string
	rcode    int64
	us       int64
}

// upstreamEntries are the entries of rows from the hour (Unix ms), answered by forward.
func upstreamEntries(hour int64, rows []upRow) []entry {
	var out []entry
	for _, r := range rows {
		e := entryOf(&testLabels, queryRow{ts: hour + r.ms, server: "dns://:53", client: "192.0.2.1", proto: "udp", qname: "a.example.",
			qtype: 1, qclass: 1, rcode: r.rcode, us: r.us})
		e.plugin = uint8(testLabels.id(labelPlugin, "forward"))
		e.upstream = testLabels.id(labelUpstream, r.upstream)
		out = append(out, e)
	}
	return out
}

// rollupUpstreams lists a span's rollup_upstreams rows: the minute or hour (from the test's
// hour), upstream, queries, SERVFAILs, the durations' sum, and the buckets that count any.
func rollupUpstreams(t *testing.T, path string, span, hour int64) string {
	t.Helper()
	buckets := ""
	for i := range 16 {
		buckets += fmt.Sprintf(" || iif(d%[1]d > 0, ' d%[1]d=' || d%[1]d, '')", i)
	}
	return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT group_concat(x, ', ') FROM (SELECT ((start - %[2]d) / 60) || ':' || upstream || '=' ||
		n || ':' || servfail || ':' || duration_us %[3]s AS x FROM rollup_upstreams WHERE span = %[1]d ORDER BY start, upstream)`, span, hour/1000, buckets))
}

// TestRollupsCountUpstreams: the rows with an upstream are counted per upstream, minute and
// hour: queries, SERVFAILs, the durations' sum and buckets; rows without one are not; a minute
// keeps limit upstreams (those it met first) and an hour the most asked, the rest under
// (other). Counted after the fact (rollups turned back on, a row at a time as catching up
// reads them, each chunk flushed), the same rows give the same rollups.
func TestRollupsCountUpstreams(t *testing.T) {
	t.Parallel()
	const hour = 1_700_000_000 / 3600 * 3600 * 1000 // ms, an hour's start
	// A row two hours later ends the hour (and its grace): the hour is summed.
	end := []upRow{{2*3600_000 + 1, "", 0, 100}}
	for _, c := range []struct {
		name          string
		limit         int
		batches       [][]upRow
		minutes, hour string
	}{
		{
			name:  "counts",
			limit: 1000,
			batches: [][]upRow{
				{{0, "10.0.0.1:53", 0, 700}, {1, "10.0.0.1:53", dns.RcodeServerFailure, 3000}, {2, "10.0.0.2:53", 0, 90}, {3, "", 0, 500}},
				{{4, "10.0.0.1:53", 0, 7_000_000}, {60_000, "10.0.0.2:53", dns.RcodeServerFailure, 250}},
				end,
			},
			minutes: "0:10.0.0.1:53=3:1:7003700 d3=1 d5=1 d15=1, 0:10.0.0.2:53=1:0:90 d0=1, 1:10.0.0.2:53=1:1:250 d1=1",
			hour:    "0:10.0.0.1:53=3:1:7003700 d3=1 d5=1 d15=1, 0:10.0.0.2:53=2:1:340 d0=1 d1=1",
		},
		{
			name:  "folded past the limit",
			limit: 2,
			batches: [][]upRow{
				{{0, "10.0.0.1:53", 0, 700}, {1, "10.0.0.2:53", 0, 700}},
				{{2, "10.0.0.3:53", 0, 700}, {3, "10.0.0.3:53", 0, 700}, {4, "10.0.0.1:53", 0, 700}},
				{{60_000, "10.0.0.3:53", dns.RcodeServerFailure, 700}, {60_001, "10.0.0.3:53", 0, 700}},
				end,
			},
			minutes: "0:(other)=2:0:1400 d3=2, 0:10.0.0.1:53=2:0:1400 d3=2, 0:10.0.0.2:53=1:0:700 d3=1, 1:10.0.0.3:53=2:1:1400 d3=2",
			// The hour keeps the two most asked: 10.0.0.2:53's one query goes to (other).
			hour: "0:(other)=3:0:2100 d3=3, 0:10.0.0.1:53=2:0:1400 d3=2, 0:10.0.0.3:53=2:1:1400 d3=2",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			livePath, laterPath := tempDB(t), tempDB(t)
			live := rollupStore(t, livePath, c.limit)
			for _, b := range c.batches {
				live.state.rollups.flushed = live.state.rollups.flushed.Add(-rollupEvery) // due with this batch
				if err := live.write(upstreamEntries(hour, b)); err != nil {
					t.Fatal(err)
				}
			}
			if err := live.flushRollups(); err != nil {
				t.Fatal(err)
			}

			later := rollupStore(t, laterPath, c.limit)
			later.state.rollups.configure(0)
			for _, b := range c.batches {
				if err := later.write(upstreamEntries(hour, b)); err != nil {
					t.Fatal(err)
				}
			}
			later.state.rollups.configure(c.limit)
			later.state.rollups.catchUpRows = 1
			for !later.state.rollups.live() {
				if err := later.catchUpRollups(); err != nil {
					t.Fatal(err)
				}
				if err := later.flushRollups(); err != nil {
					t.Fatal(err)
				}
			}

			for _, path := range []string{livePath, laterPath} {
				if got := rollupUpstreams(t, path, 60, hour); got != c.minutes {
					t.Errorf("%s: minutes\n got %s\nwant %s", path, got, c.minutes)
				}
				if got := rollupUpstreams(t, path, 3600, hour); got != c.hour {
					t.Errorf("%s: hours\n got %s\nwant %s", path, got, c.hour)
				}
			}
		})
	}
}

// TestMigrateKeepsUpstreamsAfter: a file of schema 2 upgraded to 3 keeps, as
// rollup_upstreams_after, the rollup_id up to which its rollups counted no upstream; a new file,
// and one whose rollups never counted, have none (every rollup counts upstreams).
func TestMigrateKeepsUpstreamsAfter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, state, want string
	}{
		{"new file", "", ""},
		{"schema 2 with rollups", `INSERT INTO state VALUES ('rollup_id', 435200000000000)`, "435200000000000"},
		{"schema 2 without rollups", ``, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := tempDB(t)
			if c.name != "new file" {
				schemaFile(t, path, 2, c.state)
			}
			testStore(t, path)
			if got := testutil.SQLite3(t, path, `SELECT value FROM state WHERE key = 'rollup_upstreams_after'`); got != c.want {
				t.Errorf("rollup_upstreams_after = %q, want %q", got, c.want)
			}
		})
	}
}
