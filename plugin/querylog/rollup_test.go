package querylog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/querylog/querylog/internal/testutil"
)

// rollupStore is a store whose rollups keep limit names and clients per period.
func rollupStore(t *testing.T, path string, limit int) *store {
	t.Helper()
	s := testStore(t, path)
	s.state.rollups.configure(limit)
	return s
}

// writeAt writes one row per name at ms from client, and the rollups' counts with them.
func writeAt(t *testing.T, s *store, ms int64, client string, names ...string) {
	t.Helper()
	var batch []entry
	for _, n := range names {
		e := entryOf(&testLabels, queryRow{ts: ms, server: "dns://:53", client: client, proto: "udp", qname: n, qtype: 1, qclass: 1, us: 700})
		batch = append(batch, e)
	}
	s.state.rollups.flushed = s.state.rollups.flushed.Add(-rollupEvery) // due with this batch
	if err := s.write(batch); err != nil {
		t.Fatal(err)
	}
}

// rollupNames lists the names a period counts, "name=n" in the order of names.
func rollupNames(t *testing.T, path string, span, start int64) string {
	t.Helper()
	return testutil.SQLite3(t, path, fmt.Sprintf(`SELECT group_concat(name || '=' || n, ' ') FROM
		(SELECT name, n FROM rollup_names WHERE span = %d AND start = %d ORDER BY name)`, span, start))
}

// checkRollupsAddUp checks that, for every period of every span, each rollup table counts as
// many queries as the log has rows arriving in it.
func checkRollupsAddUp(t *testing.T, path string) {
	t.Helper()
	for _, span := range rollupSpans {
		for _, table := range rollupTables {
			if strings.HasPrefix(table, "rollup_searchpath") {
				continue // folds of lookups, not counts of rows (TestRollupsSearchpath)
			}
			got := testutil.SQLite3(t, path, fmt.Sprintf(`
				WITH raw AS (SELECT ts / 1000 / %[1]d * %[1]d AS start, count(*) AS n FROM queries GROUP BY 1),
				     rolled AS (SELECT start, sum(n) AS n FROM %[2]s WHERE span = %[1]d GROUP BY start)
				SELECT count(*) FROM raw JOIN rolled USING (start) WHERE raw.n <> rolled.n`, span, table))
			if got != "0" {
				t.Errorf("%s, span %d: %s periods whose counts differ from the rows", table, span, got)
			}
		}
	}
}

// TestRollupsCount: minutes, hours and days count every row, a period keeps limit names and
// clients and folds the rest into (other), and the duration buckets hold every query.
func TestRollupsCount(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 3)
	const hour = 1_700_000_000 / 3600 * 3600 * 1000 // ms, an hour's start
	for m := range int64(3) {
		var names []string
		for i := range 10 { // 10 different names, a.: 10 times
			names = append(names, fmt.Sprintf("n%d-%d.example.", m, i), "a.example.")
		}
		writeAt(t, s, hour+m*60_000, fmt.Sprintf("192.0.2.%d", m), names...)
		writeAt(t, s, hour+m*60_000+1, "198.51.100.1", "a.example.", "b.example.")
	}
	// A row two hours later ends the first hour (and its grace), which is then summed.
	writeAt(t, s, hour+2*3600_000+2*60_000, "192.0.2.9", "late.example.")
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	checkRollupsAddUp(t, path)
	if got := rollupNames(t, path, 60, hour/1000); got != "(other)=9 a.example.=11 n0-0.example.=1 n0-1.example.=1" {
		t.Errorf("first minute's names: %s, want 3 names (the first seen) and (other)", got)
	}
	if got := rollupNames(t, path, 3600, hour/1000); got != "(other)=31 a.example.=33 n0-0.example.=1 n0-1.example.=1" {
		t.Errorf("the hour's names: %s, want the 3 most asked and (other)", got)
	}
	if got := testutil.SQLite3(t, path, `SELECT sum(n), sum(d3), sum(d0 + d1 + d2 + d4 + d5 + d6 + d7 + d8 + d9 + d10 + d11 + d12 + d13 + d14 + d15),
		sum(duration_us) / sum(n) FROM rollup_outcomes WHERE span = 60`); got != "67|67|0|700" {
		t.Errorf("outcomes n|d3 (500 µs to 1 ms)|other buckets|mean µs = %s, want 67|67|0|700", got)
	}
}

// TestRollupsRecover: counts still in memory when the process dies are counted again from
// the rows at the next open, and late rows add to periods already written.
func TestRollupsRecover(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.use(&testLabels, &keyring{})
	const minute = 1_700_000_040_000
	writeAt(t, s, minute, "192.0.2.1", "a.example.", "b.example.")
	// Not flushed: as after kill -9.
	s.state.rollups.flushed = s.state.rollups.flushed.Add(rollupEvery)
	if err := s.write([]entry{entryOf(&testLabels, queryRow{ts: minute + 1, client: "192.0.2.1", qname: "c.example."})}); err != nil {
		t.Fatal(err)
	}
	s.db.Close()

	s = rollupStore(t, path, 1000)
	writeAt(t, s, minute+120_000, "192.0.2.1", "d.example.")
	writeAt(t, s, minute+5, "192.0.2.1", "late.example.") // to a minute already written
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	checkRollupsAddUp(t, path)
	if got := testutil.SQLite3(t, path, fmt.Sprintf(`SELECT sum(n) FROM rollup_names WHERE span = 60 AND start = %d`, minute/1000)); got != "4" {
		t.Errorf("the first minute counts %s queries, want 4", got)
	}
}

// TestRollupsAfterFold: after a restart, a minute that already has rows for limit names keeps
// them: a name counted before the first flush found them is folded into (other), and so are its
// later rows, though its dictionary entry remembers where it was counted (a tally).
func TestRollupsAfterFold(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	const minute = 1_700_000_040_000
	s := rollupStore(t, path, 2)
	writeAt(t, s, minute, "192.0.2.1", "x1.example.", "x2.example.")
	s.db.Close()

	s = rollupStore(t, path, 2)
	writeAt(t, s, minute+1, "192.0.2.1", "y.example.", "y.example.") // folded at this batch's flush
	writeAt(t, s, minute+2, "192.0.2.1", "y.example.", "x1.example.")
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	checkRollupsAddUp(t, path)
	if got := rollupNames(t, path, 60, minute/1000); got != "(other)=3 x1.example.=2 x2.example.=1" {
		t.Errorf("the minute's names: %s, want (other)=3 x1.example.=2 x2.example.=1", got)
	}
}

// TestRollupsFlood: a flood of new names and clients in one minute grows the rollups by limit
// rows, not by the flood.
func TestRollupsFlood(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 50)
	const minute = 1_700_000_040_000
	for round := range 10 {
		var names []string
		for i := range 500 {
			names = append(names, fmt.Sprintf("%d-%d.flood.example.", round, i))
		}
		writeAt(t, s, minute+int64(round), fmt.Sprintf("10.0.0.%d", round), names...)
	}
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	checkRollupsAddUp(t, path)
	if got := testutil.SQLite3(t, path, `SELECT (SELECT count(*) FROM rollup_names), (SELECT n FROM rollup_names WHERE name = '(other)')`); got != "51|4950" {
		t.Errorf("name rows|(other) = %s, want 51|4950", got)
	}
}

// TestRollupsOff: with rollup_limit 0 nothing is counted and rollup_id stays where it was, so the
// rows written meanwhile read as not counted yet. Turned back on, by a reload or at the next
// start (even after a kill -9), the writer catches up a few rows before each batch, until the
// rollups count every row again.
func TestRollupsOff(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 1000)
	s.state.rollups.catchUpRows = 2
	const minute = 1_700_000_040_000
	counted := func() string {
		return testutil.SQLite3(t, path, `SELECT (SELECT sum(n) FROM rollup_names) || ' of ' || (SELECT count(*) FROM log)`)
	}
	writeAt(t, s, minute, "192.0.2.1", "on1.example.")
	catchUp := func(how string) {
		t.Helper()
		batches := 0
		for ; !s.state.rollups.live(); batches++ {
			writeAt(t, s, minute+int64(10+batches), "192.0.2.1", fmt.Sprintf("%s%d.example.", how, batches))
		}
		if err := s.flushRollups(); err != nil {
			t.Fatal(err)
		}
		if got, want := counted(), testutil.SQLite3(t, path, `SELECT count(*) || ' of ' || count(*) FROM log`); got != want || batches < 2 {
			t.Errorf("after %s: rollups count %s rows after %d batches; want every row, a few before each batch", how, got, batches)
		}
		checkRollupsAddUp(t, path)
	}

	s.state.rollups.configure(0)
	writeAt(t, s, minute+1, "192.0.2.1", "off1.example.", "off2.example.", "off3.example.")
	if got := counted(); got != "1 of 4" {
		t.Errorf("with rollup_limit 0 the rollups count %s rows; want only the one written before", got)
	}
	s.state.rollups.configure(1000)
	catchUp("reload")

	s.state.rollups.configure(0)
	writeAt(t, s, minute+2, "192.0.2.1", "off4.example.", "off5.example.", "off6.example.")
	s.db.Close() // kill -9
	s = rollupStore(t, path, 1000)
	s.state.rollups.catchUpRows = 2
	catchUp("restart")
}

// TestRollupsCatchUpCountsAsLive: rows counted after the fact, read back from the log table,
// give the same minutes as the same rows counted as they were written: names stored inline and
// by number, clients, rcodes, types, transports, answering plugins and durations, cache hits and
// misses, and namespaces with their retransmissions.
func TestRollupsCatchUpCountsAsLive(t *testing.T) {
	t.Parallel()
	entries := benchMix("kube", 3000)
	forward := uint8(testLabels.id(labelPlugin, "forward"))
	for i := range entries {
		entries[i].plugin = [3]uint8{0, entries[i].plugin, forward}[i%3]
		if i%7 == 0 {
			entries[i].setProto(protoTCP)
		}
		if i%100 == 50 { // the query of 40 entries before, sent again
			e := &entries[i-40]
			entries[i].client, entries[i].flags, entries[i].port, entries[i].id = e.client, e.flags, e.port, e.id
			entries[i].qname, entries[i].qtype, entries[i].extra = e.qname, e.qtype, e.extra
		}
	}
	minutes := func(path string) string {
		return testutil.SQLite3(t, path, `
			SELECT (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || name || ':' || rcode || '=' || n AS x
				FROM rollup_names WHERE span = 60 ORDER BY 1)),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || client || '=' || n AS x
				FROM rollup_clients WHERE span = 60 ORDER BY 1)),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || rcode || ':' || qtype || ':' || proto || ':' ||
				plugin || '=' || n || ':' || duration_us || ':' || d0 || ':' || d5 || ':' || d15 AS x
				FROM rollup_outcomes WHERE span = 60 ORDER BY 1)),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || namespace || '=' || n || ':' || nxdomain || ':' || hits || ':' ||
				misses || ':' || retries AS x FROM rollup_namespaces WHERE span = 60 ORDER BY 1)),
			       (SELECT sum(hits) || ':' || sum(misses) FROM rollup_outcomes WHERE span = 60),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || namespace || ':' || name || ':' || rcode || '=' || n || ':' || a || ':' ||
				aaaa || ':' || answered AS x FROM rollup_namespace_names WHERE span = 60 ORDER BY 1)),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || namespace || ':' || client || '=' || n AS x
				FROM rollup_namespace_clients WHERE span = 60 ORDER BY 1)),
			       (SELECT group_concat(x, ' ') FROM (SELECT start || ':' || namespace || ':' || pod || '=' || n || ':' || hits || ':' || misses AS x
				FROM rollup_namespace_pods WHERE span = 60 ORDER BY 1))`)
	}
	write := func(s *store) {
		for off := 0; off < len(entries); off += 500 {
			if err := s.write(entries[off : off+500]); err != nil {
				t.Fatal(err)
			}
		}
	}
	livePath, laterPath := tempDB(t), tempDB(t)
	live := rollupStore(t, livePath, 100_000)
	write(live)
	if err := live.flushRollups(); err != nil {
		t.Fatal(err)
	}

	later := rollupStore(t, laterPath, 100_000)
	later.state.rollups.configure(0)
	write(later)
	later.state.rollups.configure(100_000)
	for !later.state.rollups.live() {
		if err := later.catchUpRollups(); err != nil {
			t.Fatal(err)
		}
	}
	if err := later.flushRollups(); err != nil {
		t.Fatal(err)
	}
	want, got := minutes(livePath), minutes(laterPath)
	if got := testutil.SQLite3(t, laterPath, `SELECT sum(retries) FROM rollup_namespaces WHERE span = 60`); got != "30" {
		t.Errorf("the rollups counted after the fact count %s retransmissions, want the 30 sent", got)
	}
	if got := testutil.SQLite3(t, livePath, `SELECT (SELECT count(*) > 0 FROM rollup_namespace_names), (SELECT count(*) > 0 FROM rollup_namespace_clients),
		(SELECT count(*) > 0 FROM rollup_namespace_pods)`); got != "1|1|1" {
		t.Errorf("rollup_namespace_names|clients|pods have rows: %s, want 1|1|1 (the mix's pods have namespaces)", got)
	}
	if got != want || !strings.Contains(want, ":forward=") || !strings.Contains(want, ":tcp:") {
		t.Errorf("minutes counted after the fact differ from those counted live:\n got ...%s\nwant ...%s", got[max(0, len(got)-700):], want[max(0, len(want)-700):])
	}
}

// TestRollupsSumAfterRestart: an hour whose last minutes were written before the process
// stopped, before the hour was over, is summed (and its day) once the next start writes rows
// after it.
func TestRollupsSumAfterRestart(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 1000)
	const hour = 1_699_999_200_000 // a whole hour, in ms, the day's last but one
	writeAt(t, s, hour+60_000, "192.0.2.1", "a.example.", "b.example.")
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s = rollupStore(t, path, 1000)
	writeAt(t, s, hour+3*3_600_000, "192.0.2.1", "c.example.")
	writeAt(t, s, hour+2*86_400_000, "192.0.2.1", "d.example.")
	for span, start := range map[int]int64{3600: hour / 1000, 86400: hour / 1000 / 86400 * 86400} {
		if got := testutil.SQLite3(t, path, fmt.Sprintf(`SELECT sum(n) FROM rollup_names WHERE span = %d AND start = %d`, span, start)); got != "2" {
			t.Errorf("span %d from %d counts %q queries; want the 2 written in it", span, start, got)
		}
	}
}
