package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// Shipping to ClickHouse, with the real build and a real clickhouse-server (18.16) of each
// test's own: outages, kill -9, two nodes, bad targets.

// shipServer is a CoreDNS whose querylog ships to ch as node, with the password in a file.
func shipServer(t *testing.T, ch *testutil.ClickHouse, node, extraOpts string) *server {
	t.Helper()
	return shipServerTo(t, ch.Addr+"/default", node, extraOpts)
}

// shipServerTo is a CoreDNS that ships to clickhouse://USER@target as node.
func shipServerTo(t *testing.T, target, node, extraOpts string) *server {
	t.Helper()
	s := newServer(t)
	pw := filepath.Join(s.dir, "ch-password")
	if err := os.WriteFile(pw, []byte(testutil.ClickHousePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("flush_interval 200ms\n        ship clickhouse://%s@%s\n        node %s\n        ship_password file %s",
		testutil.ClickHouseUser, target, node, pw)
	if extraOpts != "" {
		opts += "\n        " + extraOpts
	}
	s.write(s.config(opts, "", "192.0.2.1"))
	return s
}

// shippingUnderLoad starts a ClickHouse server and a CoreDNS shipping to it as node, under a
// steady load of names starting with prefix, and returns once rows have been shipped.
func shippingUnderLoad(t *testing.T, node, prefix string) (*testutil.ClickHouse, *server, *testutil.Load) {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	s := shipServer(t, ch, node, "")
	s.start()
	l := testutil.StartLoad(t, "udp", s.dns, prefix, 2, 1<<30, time.Millisecond)
	s.waitMetric("a first shipment", 20*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "shipped_total") > 500 })
	return ch, s, l
}

// waitShipped waits, once the load has stopped, until everything s has answered is in SQLite
// and shipped: nothing buffered and no lag, in two scrapes half a second apart (the shipper
// looks at SQLite when the flusher commits, a moment after the buffer empties).
func (s *server) waitShipped(timeout time.Duration) testutil.Metrics {
	s.t.Helper()
	done := func(m testutil.Metrics) bool {
		return m.Get(s.db, "buffer_size") == 0 && m.Get(s.db, "ship_lag_rows") == 0 &&
			m.Has("ship_lag_rows", "db", s.db) && m.Get(s.db, "shipped_total") > 0
	}
	deadline := time.Now().Add(timeout)
	for {
		s.waitMetric("every row shipped", time.Until(deadline), done)
		time.Sleep(500 * time.Millisecond)
		if m := s.mustScrape(); done(m) {
			return m
		}
	}
}

// checkShipped compares ClickHouse with the SQLite files of a node (its database, and the old
// file after a rotation): node's rows in ClickHouse are exactly the rows of the files (same seq
// and qname), each once. It returns the row count.
func checkShipped(t *testing.T, ch *testutil.ClickHouse, node string, dbs ...string) int {
	t.Helper()
	local := map[uint64]string{}
	for _, db := range dbs {
		rows, err := testutil.OpenRO(t, db).Query("SELECT id, qname FROM queries")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var seq uint64
			var q string
			if err := rows.Scan(&seq, &q); err != nil {
				t.Fatal(err)
			}
			if _, dup := local[seq]; dup {
				t.Errorf("seq %d is in two files", seq)
			}
			local[seq] = q
		}
		rows.Close()
	}

	ctx := context.Background()
	var n, distinct uint64
	if err := ch.Conn(t).QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM querylog WHERE node = ?", node).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	res, err := ch.Conn(t).Query(ctx, "SELECT seq, qname FROM querylog WHERE node = ?", node)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	seen := map[uint64]bool{}
	wrong := 0
	for res.Next() {
		var seq uint64
		var q string
		if err := res.Scan(&seq, &q); err != nil {
			t.Fatal(err)
		}
		seen[seq] = true
		if local[seq] != q {
			if wrong++; wrong <= 5 {
				t.Errorf("node %s seq %d: ClickHouse has %q, SQLite %q", node, seq, q, local[seq])
			}
		}
	}
	missing := 0
	for seq := range local {
		if !seen[seq] {
			missing++
		}
	}
	t.Logf("node %s: %d rows in SQLite; ClickHouse count() %d, distinct seq %d, %d missing", node, len(local), n, distinct, missing)
	if n != uint64(len(local)) || distinct != n || missing > 0 || wrong > 0 {
		t.Errorf("node %s: %d rows in SQLite, ClickHouse count() %d and %d distinct seqs, %d missing, %d different; want all equal, none missing",
			node, len(local), n, distinct, missing, wrong)
	}
	return len(local)
}

var shipFailedRE = regexp.MustCompile(`(?m)^\[ERROR\] plugin/querylog: Shipping .* failed \(\d+ similar errors suppressed\), will retry: (.*)$`)

// TestShipOutage stops ClickHouse for a while under a steady load and starts it again: the
// shipper retries (errors counted, logged at most once per 10s), the lag grows and then falls
// back to 0, every answered query is a row in SQLite, and every row is in ClickHouse once.
func TestShipOutage(t *testing.T) {
	t.Parallel()
	ch, s, l := shippingUnderLoad(t, "outage", "o")

	s.out.Mark("stopping ClickHouse")
	ch.Stop()
	down := time.Now()
	// The lag grows while ClickHouse is away: waited for, however slowly a busy machine
	// serves the load.
	s.waitMetric("failed attempts and a growing lag", time.Minute, func(m testutil.Metrics) bool {
		return m.Get(s.db, "ship_errors_total") >= 3 && m.Get(s.db, "ship_lag_seconds") >= 3 && m.Get(s.db, "ship_lag_rows") >= 100
	})
	s.out.Mark("starting ClickHouse")
	ch.Start()
	outage := time.Since(down)

	// Back: the lag returns under 5 s while the load goes on.
	back := time.Now()
	s.waitMetric("the lag back under 5s", 30*time.Second, func(m testutil.Metrics) bool {
		return m.Get(s.db, "ship_lag_seconds") < 5 && m.Get(s.db, "ship_errors_total") > 0
	})
	t.Logf("outage %s; lag under 5 s again %s after ClickHouse returned", outage.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	l.WaitAnswers(t, l.Count()+500)
	l.Stop()
	m := s.waitShipped(30 * time.Second)
	s.stop()

	answered, failed := l.Results()
	rows := testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db)[0]
	n := checkShipped(t, ch, "outage", s.db)
	lines := shipFailedRE.FindAllStringSubmatch(s.out.String(), -1)
	t.Logf("%d answered, %d rows, %v shipped, %v ship errors, %d error lines: %q", len(answered), n, m.Get(s.db, "shipped_total"), m.Get(s.db, "ship_errors_total"), len(lines), lines)
	if n != len(rows) {
		t.Errorf("%d rows in SQLite, %d distinct names", n, len(rows))
	}
	if max := int(outage/(10*time.Second)) + 2; len(lines) < 1 || len(lines) > max {
		t.Errorf("%d 'Shipping ... failed' lines for an outage of %s, want 1..%d (at most one per 10s)", len(lines), outage, max)
	}
	if d := m.Get(s.db, "dropped_total") + m.Get(s.db, "ship_dropped_total"); d != 0 {
		t.Errorf("dropped %v", d)
	}
	s.checkLog("WARNING: DATA RACE")
}

// TestShipFileRenamed renames the database (log rotation) while CoreDNS ships it under load:
// the shipper sends the rest of the old file before querylog opens the path afresh, and then
// the new file, so ClickHouse holds every row of both files exactly once.
func TestShipFileRenamed(t *testing.T) {
	t.Parallel()
	ch, s, l := shippingUnderLoad(t, "rotated", "r")

	s.out.Mark("renaming")
	old := s.db + ".1"
	if err := os.Rename(s.db, old); err != nil {
		t.Fatal(err)
	}
	s.waitLog("opening it afresh", 1, 15*time.Second)
	l.WaitAnswers(t, l.Count()+500)
	l.Stop()
	s.waitShipped(30 * time.Second)
	s.stop()

	answered, failed := l.Results()
	testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db, old)
	inOld, total := countQueries(t, old), checkShipped(t, ch, "rotated", s.db, old)
	if inOld == 0 || inOld == total {
		t.Errorf("%d of %d rows in the old file; want rows in both", inOld, total)
	}
	s.checkLog("not shipped", "[ERROR]")
}

// TestShipKill9 kills CoreDNS with SIGKILL while it catches up a backlog, as soon as
// ClickHouse has acknowledged the backlog's first insert, so likely between that insert and
// saving its cursor or during the next insert, and starts it again: ClickHouse ends up with
// every row of the SQLite file exactly once.
func TestShipKill9(t *testing.T) {
	t.Parallel()
	ch := testutil.StartClickHouse(t)
	s := shipServer(t, ch, "kill9", "")
	s.start()
	l := testutil.StartLoad(t, "udp", s.dns, "k", 3, 1<<30, 0)
	s.waitMetric("a first shipment", 20*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "shipped_total") > 0 })
	// A backlog of more than one insert (20,000 rows each): stop ClickHouse until 22,000 rows
	// wait. That is a volume: about 10s on an idle machine, well over a minute on busy cores.
	ch.Stop()
	backlog := s.waitMetric("a backlog", 3*time.Minute, func(m testutil.Metrics) bool { return m.Get(s.db, "ship_lag_rows") > 22000 })
	ch.Start()
	before := s.waitMetric("the backlog's first insert", 30*time.Second, func(m testutil.Metrics) bool {
		return m.Get(s.db, "shipped_total") > backlog.Get(s.db, "shipped_total")
	})
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)
	// ClickHouse holding rows past the saved cursor means the kill fell between an insert and
	// saving the cursor: the rows that the restart must not send again.
	cursor := testutil.SQLite3(t, s.db, "SELECT value FROM state WHERE key LIKE 'ship:%'")
	held := ch.Uint64(t, "SELECT max(seq) FROM querylog WHERE node = 'kill9'")
	t.Logf("killed while %v rows were to ship; cursor saved %s, ClickHouse holds up to %d", before.Get(s.db, "ship_lag_rows"), cursor, held)

	s.start()
	l.WaitAnswers(t, l.Count()+1000)
	l.Stop()
	s.waitShipped(60 * time.Second)
	s.stop()
	if out := testutil.SQLite3(t, s.db, "PRAGMA integrity_check"); out != "ok" {
		t.Fatalf("integrity_check: %s", out)
	}
	checkShipped(t, ch, "kill9", s.db)
	s.checkLog("WARNING: DATA RACE")
}

// TestShipTwoNodes runs two CoreDNS processes shipping to one ClickHouse table: each node's
// rows are complete and told apart by node.
func TestShipTwoNodes(t *testing.T) {
	t.Parallel()
	ch := testutil.StartClickHouse(t)
	a, b := shipServer(t, ch, "node-a", ""), shipServer(t, ch, "node-b", "")
	a.start()
	b.start()
	la := testutil.StartLoad(t, "udp", a.dns, "a", 2, 3000, 0)
	lb := testutil.StartLoad(t, "tcp", b.dns, "b", 2, 2000, 0)
	la.Wait()
	lb.Wait()
	for _, s := range []*server{a, b} {
		s.waitShipped(30 * time.Second)
		s.stop()
	}
	for _, c := range []struct {
		s    *server
		l    *testutil.Load
		node string
	}{{a, la, "node-a"}, {b, lb, "node-b"}} {
		answered, failed := c.l.Results()
		rows := testutil.CheckLogged(t, append(answered, c.s.probes...), failed, c.s.db)[0]
		if n := checkShipped(t, ch, c.node, c.s.db); n != len(rows) {
			t.Errorf("%s: %d rows, %d names", c.node, n, len(rows))
		}
		// Each node's rows carry only its own names.
		prefix := c.node[len(c.node)-1:] + "-"
		if stray := ch.Uint64(t, "SELECT count() FROM querylog WHERE node = ? AND NOT startsWith(qname, ?) AND NOT startsWith(qname, 'probe')", c.node, prefix); stray != 0 {
			t.Errorf("%s: %d rows of the other node", c.node, stray)
		}
	}
	if n := ch.Uint64(t, "SELECT uniqExact(node) FROM querylog"); n != 2 {
		t.Errorf("%d nodes in ClickHouse, want 2", n)
	}
}

// TestShipBadTarget runs three CoreDNS against a bad target each, under a light load: a
// ClickHouse that is down (unreachable), a wrong password, and a table with the wrong columns.
// Each logs a clear error at most once per 10s, counts every failed attempt, retries, and loses
// nothing locally; once the cause is fixed (ClickHouse started, the password file corrected and
// CoreDNS reloaded, the table dropped for the shipper to create), every row arrives once.
func TestShipBadTarget(t *testing.T) {
	t.Parallel()
	ch := testutil.StartClickHouse(t)
	other := testutil.StartClickHouse(t) // stopped: its address refuses connections
	other.Stop()
	ch.Exec(t, "CREATE DATABASE wrongcols")
	ch.Exec(t, "CREATE TABLE wrongcols.querylog (node String, seq UInt64, ts String) ENGINE = MergeTree ORDER BY seq")

	unreachable := shipServer(t, other, "unreachable", "")
	password := shipServer(t, ch, "password", "")
	pwFile := filepath.Join(password.dir, "ch-password")
	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	columns := shipServer(t, ch, "columns", "")
	columns.write(strings.Replace(mustRead(t, columns.corefile), "/default", "/wrongcols", 1))

	cases := []struct {
		s     *server
		cause string
	}{
		{unreachable, "connection refused"},
		{password, "Wrong password for user " + testutil.ClickHouseUser},
		{columns, "table wrongcols.querylog does not have the columns querylog ships: column ts is String, want Int64; no column n, time, server,"},
	}
	var loads []*testutil.Load
	starts := make([]time.Time, len(cases))
	for i, c := range cases {
		starts[i] = time.Now()
		c.s.start()
		loads = append(loads, testutil.StartLoad(t, "udp", c.s.dns, "x", 1, 1<<30, 5*time.Millisecond))
	}
	for i, c := range cases {
		// Wait for retries, their log line and rows waiting, however slowly the machine starts
		// CoreDNS (the shipper fails before the first flush); then the lines may be at most one
		// per 10 s since it started.
		m := c.s.waitMetric("retries and a lag", time.Minute, func(m testutil.Metrics) bool {
			return m.Get(c.s.db, "ship_errors_total") >= 3 && m.Get(c.s.db, "ship_lag_rows") > 0 &&
				shipFailedRE.MatchString(c.s.out.String())
		})
		lines := shipFailedRE.FindAllStringSubmatch(c.s.out.String(), -1)
		if m.Get(c.s.db, "shipped_total") != 0 || m.Get(c.s.db, "ship_lag_rows") == 0 {
			t.Errorf("%s: shipped %v, lag %v rows", c.s.db, m.Get(c.s.db, "shipped_total"), m.Get(c.s.db, "ship_lag_rows"))
		}
		if most := 1 + int(time.Since(starts[i])/(10*time.Second)); len(lines) > most {
			t.Errorf("%s: %d error lines in %s, want at most %d (once per 10s)", c.s.db, len(lines), time.Since(starts[i]).Round(time.Second), most)
		}
		for _, l := range lines {
			if !strings.Contains(l[1], c.cause) {
				t.Errorf("%s: error %q does not say %q", c.s.db, l[1], c.cause)
			}
		}
		t.Logf("%s: %v errors, lines %q", c.s.db, m.Get(c.s.db, "ship_errors_total"), lines)
	}

	// Fix each cause.
	other.Start()
	if err := os.WriteFile(pwFile, []byte(testutil.ClickHousePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	password.signal(syscall.SIGUSR1)
	ch.Exec(t, "DROP TABLE wrongcols.querylog")

	for i, c := range cases {
		loads[i].WaitAnswers(t, loads[i].Count()+100)
		loads[i].Stop()
		c.s.waitShipped(30 * time.Second)
		c.s.stop()
		answered, failed := loads[i].Results()
		testutil.CheckLogged(t, append(answered, c.s.probes...), failed, c.s.db)
		c.s.checkLog("WARNING: DATA RACE")
	}
	checkShipped(t, other, "unreachable", unreachable.db)
	checkShipped(t, ch, "password", password.db)
	checkShippedTable(t, ch, columns, "columns", "wrongcols.querylog")
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkShippedTable is checkShipped for a table other than default.querylog.
func checkShippedTable(t *testing.T, ch *testutil.ClickHouse, s *server, node, table string) {
	t.Helper()
	want := countQueries(t, s.db)
	n := ch.Uint64(t, "SELECT count() FROM "+table+" WHERE node = ?", node)
	distinct := ch.Uint64(t, "SELECT uniqExact(seq) FROM "+table+" WHERE node = ?", node)
	if n != uint64(want) || distinct != n {
		t.Errorf("%s: %d rows in SQLite, ClickHouse count() %d, distinct seqs %d", table, want, n, distinct)
	}
}

func countQueries(t *testing.T, db string) int {
	t.Helper()
	total := 0
	for _, c := range testutil.Names(t, db) {
		total += c
	}
	return total
}
