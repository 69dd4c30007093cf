package querylog

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
	"github.com/querylog/querylog/plugin/querylog/ship"
)

func TestParseShip(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(testCAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QUERYLOG_TEST_PW", "from-env")
	host, _ := os.Hostname()
	tests := []struct {
		name  string
		input string
		want  ship.Options
	}{
		{"one address, defaults", "ship clickhouse://ch.example.org:9000/logs",
			ship.Options{Addrs: "ch.example.org:9000", User: "default", Database: "logs", Table: "querylog", Node: host}},
		{"default port", "ship clickhouse://ch.example.org/logs",
			ship.Options{Addrs: "ch.example.org:9000", User: "default", Database: "logs", Table: "querylog", Node: host}},
		{"user, table, node, failover, IPv6", "ship clickhouse://ql@a.example.org:9000/logs?table=dns clickhouse://ql@[2001:db8::1]:9001/logs?table=dns\n node ns1",
			ship.Options{Addrs: "a.example.org:9000,[2001:db8::1]:9001", User: "ql", Database: "logs", Table: "dns", Node: "ns1"}},
		{"password from a file", "ship clickhouse://ql@ch.example.org:9000/logs\n ship_password file pw",
			ship.Options{Addrs: "ch.example.org:9000", User: "ql", Database: "logs", Table: "querylog", Node: host, Password: "s3cret"}},
		{"TLS on its default port, with a CA", "ship clickhouse://ch.example.org/logs?secure=true clickhouse://ch2.example.org:9441/logs?secure=true\n ship_ca ca.pem",
			ship.Options{Addrs: "ch.example.org:9440,ch2.example.org:9441", User: "default", Database: "logs", Table: "querylog", Node: host, Secure: true, CAPEM: testCAPEM}},
		{"TLS with the system's roots", "ship clickhouse://ch.example.org/logs?secure=true&table=dns",
			ship.Options{Addrs: "ch.example.org:9440", User: "default", Database: "logs", Table: "dns", Node: host, Secure: true}},
		{"secure=false", "ship clickhouse://ch.example.org/logs?secure=false",
			ship.Options{Addrs: "ch.example.org:9000", User: "default", Database: "logs", Table: "querylog", Node: host}},
		{"password from the environment, node first", "node n-1.example\n ship_password env QUERYLOG_TEST_PW\n ship clickhouse://ch.example.org:9000/logs",
			ship.Options{Addrs: "ch.example.org:9000", User: "default", Database: "logs", Table: "querylog", Node: "n-1.example", Password: "from-env"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := controller("querylog "+filepath.Join(dir, "q.db")+" {\n "+tc.input+"\n}", dir)
			o, _, err := parse(c)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if want := (shipOptions{Options: tc.want}); o.ship != want {
				t.Errorf("ship options = %+v, want %+v", o.ship, want)
			}
		})
	}

	bad := []struct{ name, input, msg string }{
		{"no address", "ship", "at least one"},
		{"other scheme", "ship tcp://ch.example.org:9000/logs", "clickhouse://"},
		{"password in the URL", "ship clickhouse://ql:pw@ch.example.org:9000/logs", "does not belong in the Corefile"},
		{"no database", "ship clickhouse://ch.example.org:9000", "DATABASE"},
		{"bad database", "ship clickhouse://ch.example.org:9000/a-b", "DATABASE"},
		{"bad table", "ship clickhouse://ch.example.org:9000/logs?table=x;drop", "table"},
		{"unknown parameter", "ship clickhouse://ch.example.org:9000/logs?compress=1", "unknown parameter"},
		{"secure not a boolean", "ship clickhouse://ch.example.org/logs?secure=yes", `secure="yes": want true or false`},
		{"secure on one address only", "ship clickhouse://a.example.org/logs?secure=true clickhouse://b.example.org/logs", "same user, database, table and secure"},
		{"ship_ca without secure", "ship clickhouse://a.example.org/logs\n ship_ca ca.pem", "needs ?secure=true"},
		{"ship_ca missing", "ship clickhouse://a.example.org/logs?secure=true\n ship_ca nothing.pem", "no such file"},
		{"ship_ca not PEM", "ship clickhouse://a.example.org/logs?secure=true\n ship_ca pw", "no PEM certificate"},
		{"ship_ca without ship", "ship_ca ca.pem", "need a ship line"},
		{"addresses disagree", "ship clickhouse://ch.example.org:9000/logs clickhouse://ch.example.org:9000/other", "same user, database, table and secure"},
		{"ship twice", "ship clickhouse://a.example.org/logs\n ship clickhouse://b.example.org/logs", "twice"},
		{"node without ship", "node ns1", "need a ship line"},
		{"password without ship", "ship_password env QUERYLOG_TEST_PW", "need a ship line"},
		{"node with a colon", "ship clickhouse://a.example.org/logs\n node a:b", "':'"},
		{"node with two names", "ship clickhouse://a.example.org/logs\n node a b", "one NAME"},
		{"password how", "ship clickhouse://a.example.org/logs\n ship_password s3cret", "file PATH or env NAME"},
		{"password env unset", "ship clickhouse://a.example.org/logs\n ship_password env QUERYLOG_NO_SUCH_VARIABLE", "not set"},
		{"password file missing", "ship clickhouse://a.example.org/logs\n ship_password file nothing-here", "no such file"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := controller("querylog "+filepath.Join(dir, "q.db")+" {\n "+tc.input+"\n}", dir)
			_, _, err := parse(c)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("parse error = %v, want one containing %q", err, tc.msg)
			}
		})
	}

	// A refused URL's password is never echoed, whether the URL parses or not.
	for _, u := range []string{"clickhouse://ql:hunter2@ch.example.org:9000/logs", "clickhouse://ql:hunter2@ch.example.org:x/logs",
		"clickhouse://ql:hunter2@[::1/logs"} {
		c := controller("querylog "+filepath.Join(dir, "q.db")+" {\n ship "+u+"\n}", dir)
		_, _, err := parse(c)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "ql:xxxxx@") {
			t.Errorf("ship %s: error %v echoes the password or not the redacted URL", u, err)
		}
	}
}

// testCAPEM is a certificate for the ship_ca tests (testdata of no use beyond parsing).
var testCAPEM = func() string {
	cert, _, _ := testutil.LoopbackCertPEM()
	return string(cert)
}()

// shipEntries makes n entries, of varied types, classes and rcodes, that arrived from start on.
func shipEntries(n int, start time.Time) []entry {
	es := benchEntries(n)
	types := []uint16{dns.TypeA, dns.TypeAAAA, 65280, dns.TypeHTTPS}
	classes := []uint16{dns.ClassINET, dns.ClassCHAOS, 77, dns.ClassANY}
	rcodes := []uint16{dns.RcodeSuccess, dns.RcodeNameError, 3841, dns.RcodeServerFailure}
	for i := range es {
		es[i].start = start.UnixNano() + int64(i)*int64(time.Millisecond)
		es[i].qtype, es[i].qclass, es[i].rcode = types[i%4], classes[i%3], rcodes[i%4]
		if i%5 == 0 {
			es[i].flags |= flagDO
		}
		if i%7 == 0 {
			es[i].setAddr(netip.MustParseAddr("2001:db8::7"))
			es[i].setProto(protoTCP)
		}
	}
	return es
}

// TestShipMetricsFromStart: every ship series of a database exists, at 0, as soon as its writer
// ships, before anything was shipped or failed.
func TestShipMetricsFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	testWriter(t, shipOpts(path, "127.0.0.1:1", "n1")) // no rows yet: nothing is sent, nothing fails
	m := testutil.Gather(t)
	for _, series := range []struct{ name, reason string }{{"shipped_total", ""}, {"ship_errors_total", ""},
		{"ship_dropped_total", "max_size"}, {"ship_lag_rows", ""}, {"ship_lag_seconds", ""}} {
		kv := []string{"db", path}
		if series.reason != "" {
			kv = append(kv, "reason", series.reason)
		}
		if !m.Has(series.name, kv...) || m.Get(path, series.name, kv[2:]...) != 0 {
			t.Errorf("coredns_querylog_%s%v: present %v, value %v; want present at 0", series.name, kv, m.Has(series.name, kv...), m.Get(path, series.name, kv[2:]...))
		}
	}
}

// logIDs are the ids of the log table's rows, in order.
func logIDs(t *testing.T, path string) []int64 {
	t.Helper()
	rows, err := testutil.OpenRO(t, path).Query(`SELECT id FROM log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		ids = append(ids, id)
	}
	return ids
}

// TestShipRowMatchesReadableView checks that the shipper's reader shows each row as the SQLite
// view queries_readable does, with its ordinal, on a new file and on one upgraded from schema 1
// (whose rows come first), read 150 rows at a time by one reader (whose caches the later reads
// use), so that reads start inside batches.
func TestShipRowMatchesReadableView(t *testing.T) {
	t.Parallel()
	for _, v1Rows := range []int{0, 300} {
		t.Run(fmt.Sprintf("v1rows=%d", v1Rows), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "v.db")
			if v1Rows > 0 {
				v1File(t, path, v1Rows, time.Now().Add(-time.Hour).UnixMilli())
			}
			s := testStore(t, path)
			if err := s.write(shipEntries(500, time.Now())); err != nil {
				t.Fatal(err)
			}
			reader := newShipReader(s.db)
			var rows []ship.Row
			for after := int64(0); ; {
				got, err := reader.read(after, 150, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) == 0 {
					break
				}
				rows, after = append(rows, got...), got[len(got)-1].Seq
			}
			if len(rows) != v1Rows+500 {
				t.Fatalf("read %d rows, want %d", len(rows), v1Rows+500)
			}
			view, err := s.db.Query(`SELECT r.id, r.ts, r.server, r.client_ip, r.proto, r.qname, r.qtype, r.qclass, r.rcode, r.size, r.answers,
				r.duration_us, r."do", coalesce(r.plugin, ''), coalesce(q.aa, 0), coalesce(q.tc, 0), coalesce(q.rd, 0), coalesce(q.ra, 0),
				coalesce(q.ad, 0), coalesce(q.cd, 0), coalesce(r.ede, -1), coalesce(r.upstream, '')
				FROM queries_readable r JOIN queries q USING (id) ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			defer view.Close()
			for i := 0; view.Next(); i++ {
				var v ship.Row
				if err := view.Scan(&v.Seq, &v.TS, &v.Server, &v.ClientIP, &v.Proto, &v.Qname, &v.Qtype, &v.Qclass, &v.Rcode,
					&v.Size, &v.Answers, &v.DurationUS, &v.DO, &v.Plugin, &v.AA, &v.TC, &v.RD, &v.RA, &v.AD, &v.CD, &v.EDE, &v.Upstream); err != nil {
					t.Fatal(err)
				}
				// Rows of schema 1 are numbered by their rowid, the others in the order written.
				v.N = v.Seq
				if i >= v1Rows {
					v.N = rows[v1Rows].N + int64(i-v1Rows)
				}
				if rows[i] != v {
					t.Fatalf("row %d:\n shipped %+v\n view    %+v", i, rows[i], v)
				}
			}
			if rows[v1Rows].N != int64(v1Rows+1) {
				t.Errorf("the first row of schema 2 has ordinal %d, want %d", rows[v1Rows].N, v1Rows+1)
			}
		})
	}
}

// shipOpts is a writer that flushes quickly and ships to addr as node.
func shipOpts(path, addr, node string) options {
	o := retentionOpts(path)
	o.retention = 0
	o.ship = shipOptions{Options: ship.Options{Addrs: addr, User: testutil.ClickHouseUser, Password: testutil.ClickHousePassword,
		Database: "default", Table: "querylog", Node: node}}
	return o
}

// shipFast is a writer's pace with the shipper sending every 50 ms.
var shipFast = tuning{ship: ship.Tuning{Every: 50 * time.Millisecond}}

// checkShipped checks that ClickHouse holds every row of the SQLite file at path exactly once,
// for node: the same seqs, each once, with the same qname.
func checkShipped(t *testing.T, ch *testutil.ClickHouse, table, path, node string) {
	t.Helper()
	local := map[int64]string{}
	db := testutil.OpenRO(t, path)
	rows, err := db.Query(`SELECT id, qname FROM queries`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq int64
		var q string
		rows.Scan(&seq, &q)
		local[seq] = q
	}
	rows.Close()
	res, err := ch.Conn(t).Query(context.Background(), fmt.Sprintf("SELECT seq, qname FROM %s WHERE node = ?", table), node)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	seen := map[int64]int{}
	bad := 0
	for res.Next() {
		var seq uint64
		var q string
		if err := res.Scan(&seq, &q); err != nil {
			t.Fatal(err)
		}
		seen[int64(seq)]++
		if local[int64(seq)] != q && bad < 5 {
			bad++
			t.Errorf("seq %d: ClickHouse has %q, SQLite %q", seq, q, local[int64(seq)])
		}
	}
	missing, dup := 0, 0
	for seq := range local {
		if seen[seq] == 0 {
			missing++
		}
	}
	// The ordinals have no gap: nothing was deleted before it was shipped.
	var rowsN, distinctN uint64
	var gaps int64
	if err := ch.Conn(t).QueryRow(context.Background(), fmt.Sprintf("SELECT count(), uniqExact(n), max(n) - min(n) + 1 - uniqExact(n) FROM %s WHERE node = ?", table), node).Scan(&rowsN, &distinctN, &gaps); err != nil {
		t.Fatal(err)
	}
	if distinctN != rowsN || gaps != 0 {
		t.Errorf("node %s: %d rows, %d distinct ordinals, %d gaps; want one ordinal a row, no gap", node, rowsN, distinctN, gaps)
	}
	for _, n := range seen {
		if n > 1 {
			dup += n - 1
		}
	}
	if missing > 0 || dup > 0 || len(seen) > len(local) {
		t.Errorf("node %s: %d rows in SQLite, %d distinct in ClickHouse: %d missing, %d duplicates", node, len(local), len(seen), missing, dup)
	}
}

func shipWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

// sqliteCount counts rows through one connection, for polling: what is "count(*)", or an
// aggregate over the log table's ids.
func sqliteCount(t *testing.T, db *sql.DB, what string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow("SELECT " + what + " FROM log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// shippedUpTo waits until the writer's shipper has acknowledged every row of its database.
func shippedUpTo(t *testing.T, w *writer, timeout time.Duration) {
	t.Helper()
	db := testutil.OpenRO(t, w.path)
	shipWait(t, timeout, "every row shipped", func() bool {
		s := w.ship.Load()
		if s == nil {
			return false
		}
		size, _ := w.buf.fill()
		return size == 0 && s.Bound() == sqliteCount(t, db, "coalesce(max(id), 0)")
	})
}

func TestShipExactlyOnce(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	path := filepath.Join(t.TempDir(), "s.db")
	w := tunedWriter(t, shipOpts(path, ch.Addr, "n1"), shipFast)
	for _, e := range shipEntries(5000, time.Now()) {
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)
	checkShipped(t, ch, "querylog", path, "n1")
	if got := testutil.Gather(t).Get(path, "shipped_total"); got != 5000 {
		t.Errorf("shipped_total = %v, want 5000", got)
	}
	if got := testutil.Gather(t).Get(path, "ship_errors_total"); got != 0 {
		t.Errorf("ship_errors_total = %v, want 0", got)
	}
	// The cursor is in the file.
	if got := testutil.CountRows(t, path, ""); got != 5000 {
		t.Fatalf("%d rows in SQLite", got)
	}
	var cursor int64
	ids := logIDs(t, path)
	if err := testutil.OpenRO(t, path).QueryRow(`SELECT value FROM state WHERE key = 'ship:default.querylog'`).Scan(&cursor); err != nil || cursor != ids[len(ids)-1] {
		t.Errorf("cursor = %d (%v), want the last id, %d", cursor, err, ids[len(ids)-1])
	}
}

// TestShipFinishOnRelease: when the writer closes (shutdown), the rows not shipped yet are
// sent at once, not left for a next start that may never come (a pod's file goes with it).
func TestShipFinishOnRelease(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	path := filepath.Join(t.TempDir(), "f.db")
	w, err := acquire(shipOpts(path, ch.Addr, "n1"), tuning{ship: ship.Tuning{Every: time.Hour}}) // nothing is sent on the timer
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range shipEntries(3000, time.Now()) {
		w.log(e)
	}
	start := time.Now()
	w.release(w.options(), false)
	t.Logf("release took %s", time.Since(start))
	checkShipped(t, ch, "querylog", path, "n1")
	if got := ch.Uint64(t, "SELECT count() FROM querylog"); got != 3000 {
		t.Errorf("%d rows in ClickHouse after release, want 3000", got)
	}
}

// TestShipFinishBounded: with ClickHouse away, closing the writer does not wait for it beyond
// shutdown_timeout, and the rows stay in SQLite.
func TestShipFinishBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.db")
	o := shipOpts(path, "127.0.0.1:1", "n1")
	o.shutdownTimeout = time.Second
	w, err := acquire(o, tuning{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range shipEntries(1000, time.Now()) {
		w.log(e)
	}
	start := time.Now()
	w.release(w.options(), false)
	// Without the bound it would retry for as long as ClickHouse is away; 15 s leaves a busy
	// machine room for the drain around the 1 s.
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("release took %s with ClickHouse away and shutdown_timeout 1s", took)
	}
	if n := testutil.CountRows(t, path, ""); n != 1000 {
		t.Errorf("%d rows in SQLite, want 1000", n)
	}
}

// TestShipRowsDeletedByHand: rows deleted by another program leave the cursor above the
// newest rowid, and SQLite numbers new rows below it again. The shipper must start over rather
// than skip them.
func TestShipRowsDeletedByHand(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	path := filepath.Join(t.TempDir(), "h.db")
	s := testStore(t, path)
	if err := s.write(shipEntries(300, time.Now())); err != nil {
		t.Fatal(err)
	}
	ids := logIDs(t, path)
	if err := s.saveCursor("default.querylog", ids[len(ids)-1]+5000); err != nil {
		t.Fatal(err)
	}
	s.close()
	w := tunedWriter(t, shipOpts(path, ch.Addr, "n1"), shipFast)
	shippedUpTo(t, w, 30*time.Second)
	checkShipped(t, ch, "querylog", path, "n1")
}

// TestShipOutage kills ClickHouse while rows keep coming: shipping fails and is retried, the
// lag grows, nothing is lost in SQLite; once ClickHouse is back, every row arrives once.
func TestShipOutage(t *testing.T) {
	tu := shipFast
	tu.ship.BatchRows = 500 // the backlog of the outage is several full batches
	ch := testutil.StartClickHouse(t)
	path := filepath.Join(t.TempDir(), "o.db")
	w := tunedWriter(t, shipOpts(path, ch.Addr, "n1"), tu)
	entries := shipEntries(6000, time.Now().Add(-10*time.Second))
	for _, e := range entries[:2000] {
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)

	ch.Kill()
	errs := testutil.Gather(t).Get(path, "ship_errors_total")
	for _, e := range entries[2000:4000] {
		w.log(e)
	}
	shipWait(t, 10*time.Second, "failed attempts", func() bool { return testutil.Gather(t).Get(path, "ship_errors_total") >= errs+2 })
	// Backoff (100 ms doubling) holds however many rows wait: about 5 attempts in 3 s, not one
	// per flush.
	time.Sleep(3 * time.Second)
	if n := testutil.Gather(t).Get(path, "ship_errors_total") - errs; n > 8 {
		t.Errorf("%v failed attempts in about 3 s of outage, want backoff to keep them under 8", n)
	}
	db := testutil.OpenRO(t, path)
	shipWait(t, 10*time.Second, "the rows in SQLite", func() bool { return sqliteCount(t, db, "count(*)") == 4000 })
	time.Sleep(1200 * time.Millisecond)
	rows, seconds := w.ship.Load().Lag(time.Now())
	if rows != 2000 || seconds < 5 {
		t.Errorf("during the outage: lag %d rows, %.1fs; want 2000 rows and the age of row 2001 (over 5s)", rows, seconds)
	}
	ch.Start()
	for _, e := range entries[4000:] {
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)
	checkShipped(t, ch, "querylog", path, "n1")
	if rows, seconds := w.ship.Load().Lag(time.Now()); rows != 0 || seconds != 0 {
		t.Errorf("after catching up: lag %d rows, %.1fs", rows, seconds)
	}
}

// TestShipRecoveryLogged: once shipping works again after failed attempts, one line at INFO
// says so, with the number of attempts that failed and since when; shipping that never failed
// says nothing.
func TestShipRecoveryLogged(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	logs := testutil.CaptureLog(t)
	path := filepath.Join(t.TempDir(), "r.db")
	w := tunedWriter(t, shipOpts(path, ch.Addr, "n1"), shipFast)
	entries := shipEntries(300, time.Now().Add(-time.Second))
	for _, e := range entries[:100] {
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)
	if strings.Contains(logs.String(), "recovered") {
		t.Errorf("shipping that never failed logged a recovery:\n%s", logs)
	}

	ch.Kill()
	outage := time.Now()
	errs := testutil.Gather(t).Get(path, "ship_errors_total")
	for _, e := range entries[100:200] {
		w.log(e)
	}
	shipWait(t, 10*time.Second, "failed attempts", func() bool { return testutil.Gather(t).Get(path, "ship_errors_total") >= errs+2 })
	ch.Start()
	shippedUpTo(t, w, 30*time.Second)
	for _, e := range entries[200:] { // shipped without a failure: no second line
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)

	failed := int(testutil.Gather(t).Get(path, "ship_errors_total") - errs)
	text := logs.String()
	want := fmt.Sprintf("[INFO] plugin/querylog: Shipping %s to ClickHouse default.querylog recovered after %d failed attempts (since ", path, failed)
	if n := strings.Count(text, "recovered"); n != 1 || !strings.Contains(text, want) {
		t.Fatalf("want one line %q..., got %d:\n%s", want, n, text)
	}
	since, _, _ := strings.Cut(text[strings.Index(text, want)+len(want):], ")")
	at, err := time.Parse(time.RFC3339, since)
	if err != nil || at.Before(outage.Truncate(time.Second)) || at.After(time.Now()) {
		t.Errorf("since %q (%v): want the time of the first failure, after the outage began at %s", since, err, outage.UTC().Format(time.RFC3339))
	}
}

// TestShipFailover lists a dead address first: rows go to the second.
func TestShipFailover(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	path := filepath.Join(t.TempDir(), "f.db")
	o := shipOpts(path, "127.0.0.1:1,"+ch.Addr, "n1")
	w := tunedWriter(t, o, shipFast)
	for _, e := range shipEntries(1000, time.Now()) {
		w.log(e)
	}
	shippedUpTo(t, w, 30*time.Second)
	checkShipped(t, ch, "querylog", path, "n1")
}

// TestShipBadTarget: a wrong password and a table with the wrong columns fail every attempt
// (counted, retried), lose nothing locally, and shipping resumes once the cause is fixed.
func TestShipBadTarget(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	ch.Exec(t, "CREATE TABLE wrong (node String, seq UInt64, ts String) ENGINE = MergeTree ORDER BY seq")

	dir := t.TempDir()
	badPassword := shipOpts(filepath.Join(dir, "p.db"), ch.Addr, "n1")
	badPassword.ship.Password = "wrong"
	wrongColumns := shipOpts(filepath.Join(dir, "c.db"), ch.Addr, "n2")
	wrongColumns.ship.Table = "wrong"

	var ws []*writer
	for _, o := range []options{badPassword, wrongColumns} {
		w := tunedWriter(t, o, shipFast)
		for _, e := range shipEntries(1000, time.Now()) {
			w.log(e)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		shipWait(t, 10*time.Second, "failed attempts", func() bool { return testutil.Gather(t).Get(w.path, "ship_errors_total") >= 3 })
		db := testutil.OpenRO(t, w.path)
		shipWait(t, 10*time.Second, "the rows in SQLite", func() bool { return sqliteCount(t, db, "count(*)") == 1000 })
		if got := testutil.Gather(t).Get(w.path, "shipped_total"); got != 0 {
			t.Errorf("%s: shipped_total %v", w.path, got)
		}
	}
	// Fix both: the right password (a reload), and the table dropped for the shipper to create.
	o := badPassword
	o.ship.Password = testutil.ClickHousePassword
	ws[0].configure(o)
	ch.Exec(t, "DROP TABLE wrong")
	for _, w := range ws {
		shippedUpTo(t, w, 30*time.Second)
	}
	checkShipped(t, ch, "querylog", ws[0].path, "n1")
	checkShipped(t, ch, "wrong", ws[1].path, "n2")
}

// TestShipRetention: retention deletes only rows ClickHouse has, and never the newest row;
// max_size deletes what it must and counts the unshipped rows among them.
func TestShipRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	s := testStore(t, path)
	if err := s.write(shipEntries(5000, time.Now().Add(-48*time.Hour))); err != nil {
		t.Fatal(err)
	}
	ids := logIDs(t, path)
	if err := s.saveCursor("default.querylog", ids[2999]); err != nil {
		t.Fatal(err)
	}
	s.close()

	o := shipOpts(path, "127.0.0.1:1", "n1") // nothing more is shipped
	o.retention = 24 * time.Hour
	o.bufferSize = 40000
	w := tunedWriter(t, o, tuning{maintenanceEvery: fastMaintenance.maintenanceEvery, ship: shipFast.ship})
	db := testutil.OpenRO(t, path)
	count := func() int64 { return sqliteCount(t, db, "count(*)") }
	testutil.WaitFor(t, 10*time.Second, "shipped rows pruned", func() bool { return count() == 2000 })
	time.Sleep(100 * time.Millisecond) // a few more maintenance passes
	if n, min := testutil.CountRows(t, path, ""), testutil.CountRows(t, path, "WHERE id <= ?", ids[2999]); n != 2000 || min != 0 {
		t.Errorf("retention left %d rows, %d of them shipped; want the 2000 unshipped", n, min)
	}

	// All shipped: retention keeps the newest row, so no seq is handed out twice. The cursor is
	// saved in the file and read by a shipper started afresh (another node).
	if err := (shipSource{w}).SaveCursor("default.querylog", ids[4999]); err != nil {
		t.Fatal(err)
	}
	o.ship.Node = "n2"
	w.configure(o)
	testutil.WaitFor(t, 10*time.Second, "all but the newest pruned", func() bool { return count() == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := testutil.CountRows(t, path, "WHERE id = ?", ids[4999]); n != 1 {
		t.Errorf("the newest row was deleted")
	}

	// max_size with unshipped rows: they go, counted.
	for _, e := range shipEntries(30000, time.Now()) {
		w.log(e)
	}
	// The 5000th row, shipped and old, is no longer the newest: retention deletes it.
	testutil.WaitFor(t, 10*time.Second, "written", func() bool { return count() == 30000 })
	o.maxSize = 1 << 20
	w.configure(o)
	// None of them is shipped: every row deleted counts.
	testutil.WaitFor(t, 10*time.Second, "max_size enforced and counted", func() bool {
		dropped := testutil.Gather(t).Get(path, "ship_dropped_total", "reason", "max_size")
		return dropped > 0 && int64(dropped) == 30000-count()
	})
}

// BenchmarkShip ships a backlog of 1,000,000 rows from a real SQLite file into the real
// ClickHouse, from a cursor of 0 to the last row. It reports rows/s, and the CPU time per row
// of this process (reading SQLite, encoding) and of clickhouse-server (the inserts, and merges
// while they run), which do not depend on what else the machine is doing.
//
//	go test -run '^$' -bench Ship -benchtime 1x ./plugin/querylog/
func BenchmarkShip(b *testing.B) {
	const backlog = 1_000_000
	path := filepath.Join(b.TempDir(), "b.db")
	s := testStore(b, path)
	es := shipEntries(100_000, time.Now())
	for i := 0; i < backlog; i += len(es) {
		if err := s.write(es); err != nil {
			b.Fatal(err)
		}
	}
	last := s.state.lastID // the cursor is a row id, and ids carry the time
	s.close()
	ch := testutil.StartClickHouse(b)
	runs := 0
	for _, batch := range []int{10_000, 20_000, 50_000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for range b.N {
				// A table, and so a cursor, of its own for each run.
				runs++
				table := fmt.Sprintf("bench_%d", runs)
				o := shipOpts(path, ch.Addr, "n1")
				o.ship.Table = table
				self, server := selfCPU(b), processCPU(b, ch.Pid())
				start := time.Now()
				w, err := acquire(o, tuning{ship: ship.Tuning{BatchRows: batch}})
				if err != nil {
					b.Fatal(err)
				}
				for w.ship.Load().Bound() < last {
					time.Sleep(time.Millisecond)
				}
				took := time.Since(start)
				self, server = selfCPU(b)-self, processCPU(b, ch.Pid())-server
				w.release(w.options(), false)
				b.ReportMetric(backlog/took.Seconds(), "rows/s")
				b.ReportMetric(float64(self.Nanoseconds())/backlog, "shipper-cpu-ns/row")
				b.ReportMetric(float64(server.Nanoseconds())/backlog, "clickhouse-cpu-ns/row")
				if n := ch.Uint64(b, "SELECT count() FROM "+table); n != backlog {
					b.Fatalf("%d rows in ClickHouse, want %d", n, backlog)
				}
				ch.Exec(b, "DROP TABLE "+table)
			}
		})
	}
}

// selfCPU is this process's CPU time so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time of process pid so far (utime + stime from /proc, in clock ticks
// of 10 ms).
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkShipSaveCursor measures the cursor update the shipper makes after each batch, on the
// writer's connection between two flushes.
//
//	go test -run '^$' -bench ShipSaveCursor ./plugin/querylog/
func BenchmarkShipSaveCursor(b *testing.B) {
	s, ckpt := benchStore(b, "c.db")
	defer s.close()
	defer ckpt.close()
	if _, err := s.loadCursor("db.table"); err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		if err := s.saveCursor("db.table", int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// The ClickHouse table has no namespace and pod columns: a row's namespace and pod are shipped
// in its metadata JSON, under the kubernetes plugin's labels, beside the labels it had.
func TestShipMetadataWithPod(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ metadata, namespace, pod, want string }{
		{"", "", "", ""},
		{`{"geoip/country/code":"DE"}`, "", "", `{"geoip/country/code":"DE"}`},
		{"", "team-a", "web-1", `{"kubernetes/client-namespace":"team-a","kubernetes/client-pod-name":"web-1"}`},
		{`{"geoip/country/code":"DE"}`, "team-a", "", `{"geoip/country/code":"DE","kubernetes/client-namespace":"team-a"}`},
		{`not json`, "team-a", "web-1", `{"kubernetes/client-namespace":"team-a","kubernetes/client-pod-name":"web-1"}`},
	} {
		row := shipRowOf(&logrow.Row{Metadata: tc.metadata, Namespace: tc.namespace, Pod: tc.pod})
		if row.Metadata != tc.want {
			t.Errorf("metadata %q, namespace %q, pod %q: shipped %q, want %q", tc.metadata, tc.namespace, tc.pod, row.Metadata, tc.want)
		}
	}
}
