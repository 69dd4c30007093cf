package ship

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/testutil"
)

func init() { clog.Discard() }

// fast is the pace of the tests' shippers.
var fast = Tuning{Every: 50 * time.Millisecond}

// testOptions ship to the test ClickHouse at addr, table default.querylog, as node.
func testOptions(addr, node string) Options {
	return Options{Addrs: addr, User: testutil.ClickHouseUser, Password: testutil.ClickHousePassword,
		Database: "default", Table: "querylog", Node: node}
}

// startShipper starts a shipper of src, stopped when the test ends.
func startShipper(t *testing.T, db string, src Source, o Options) *Shipper {
	s := Start(db, src, o, fast)
	t.Cleanup(s.Stop)
	return s
}

// shippedUpTo waits until the shipper has acknowledged every row up to seq.
func shippedUpTo(t *testing.T, s *Shipper, seq int64) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "every row shipped", func() bool { return s.Bound() == seq })
}

// checkOnce checks that table holds the n rows of node, each once.
func checkOnce(t *testing.T, ch *testutil.ClickHouse, table, node string, n uint64) {
	t.Helper()
	if got := ch.Uint64(t, "SELECT count() FROM "+table+" WHERE node = ?", node); got != n {
		t.Errorf("ClickHouse holds %d rows of %s, want %d", got, node, n)
	}
	if got := ch.Uint64(t, "SELECT uniqExact(seq) FROM "+table+" WHERE node = ?", node); got != n {
		t.Errorf("ClickHouse holds %d distinct seqs of %s, want %d", got, node, n)
	}
}

// TestShipResumesWithoutDuplicates plays the crash between an insert and the cursor update:
// ClickHouse already holds some of the rows after the saved cursor (a whole batch and a part
// of one). The shipper must send exactly the others.
func TestShipResumesWithoutDuplicates(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	o := testOptions(ch.Addr, "n1")
	src := newMemSource(testRows(3000, time.Now().Add(-time.Hour)))
	src.cursors[o.Target()] = 1000
	rows := src.rows[1000:]

	conn := &clickHouse{o: o}
	defer conn.close()
	ctx := context.Background()
	if err := ensureTable(ctx, conn, o); err != nil {
		t.Fatal(err)
	}
	// The 1001st to the 1500th rows (one batch), and the 1700th to the 1799th without the 1750th
	// (a torn one).
	torn := append(append([]Row(nil), rows[699:749]...), rows[750:799]...)
	for _, part := range [][]Row{rows[:500], torn} {
		if err := insertRows(ctx, conn, o, queryID("n1", part), part, &columns{}); err != nil {
			t.Fatal(err)
		}
	}

	shippedBefore := promtest.ToFloat64(shippedTotal.WithLabelValues("r.db")) // of earlier runs (-count)
	s := startShipper(t, "r.db", src, o)
	shippedUpTo(t, s, 3000)
	checkOnce(t, ch, "querylog", "n1", 2000)
	if got := ch.Uint64(t, "SELECT min(seq) FROM querylog WHERE node = 'n1'"); got != 1001 {
		t.Errorf("the first seq in ClickHouse is %d, want 1001, the first after the cursor", got)
	}
	if got := promtest.ToFloat64(shippedTotal.WithLabelValues("r.db")) - shippedBefore; got != 2000 {
		t.Errorf("shipped_total = %v, want 2000", got)
	}
	if c, _ := src.LoadCursor(o.Target()); c != 3000 {
		t.Errorf("saved cursor %d, want 3000", c)
	}
}

// TestShipWaitsForRunningInsert: while a query of the node's insert id prefix runs in ClickHouse
// (an insert whose reply was lost may still be committing), the shipper neither checks nor
// sends; it does once that query is over.
func TestShipWaitsForRunningInsert(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	ch.Exec(t, tableDDL("default", "querylog"))

	// A stand-in for the lost insert: a 2 s query under the node's insert id.
	running := make(chan error, 1)
	go func() {
		ctx := clickhouse.Context(context.Background(), clickhouse.WithQueryID(queryIDPrefix("n1")+"1-100"))
		running <- ch.Conn(t).Exec(ctx, "SELECT sleep(2)")
	}()
	testutil.WaitFor(t, 10*time.Second, "the query to run", func() bool {
		return ch.Uint64(t, "SELECT count() FROM system.processes WHERE startsWith(query_id, 'querylog:n1:')") == 1
	})
	s := startShipper(t, "w.db", newMemSource(testRows(100, time.Now())), testOptions(ch.Addr, "n1"))
	for {
		select {
		case err := <-running:
			if err != nil {
				t.Fatal(err)
			}
			shippedUpTo(t, s, 100)
			checkOnce(t, ch, "querylog", "n1", 100)
			return
		case <-time.After(20 * time.Millisecond):
			if n := ch.Uint64(t, "SELECT count() FROM querylog"); n != 0 {
				t.Fatalf("%d rows shipped while an insert of the node was still running", n)
			}
		}
	}
}

// TestShipErrorMessages checks that each kind of bad target names its cause.
func TestShipErrorMessages(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	ch.Exec(t, "CREATE TABLE wrong (node String, seq UInt64, ts String) ENGINE = MergeTree ORDER BY seq")
	base := testOptions(ch.Addr, "n")
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"unreachable", func(o *Options) { o.Addrs = "127.0.0.1:1" }, "connection refused"},
		{"wrong password", func(o *Options) { o.Password = "nope" }, "password"},
		{"unknown database", func(o *Options) { o.Database = "nothere" }, "nothere"},
		{"wrong columns", func(o *Options) { o.Table = "wrong" }, "column ts is String, want Int64; no column n, time, server, client_ip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			conn := &clickHouse{o: o}
			defer conn.close()
			err := ensureTable(context.Background(), conn, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestShipDeployFiles keeps deploy/clickhouse/querylog.sql the table the shipper creates,
// and checks that every statement of deploy/clickhouse runs on the real server.
func TestShipDeployFiles(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "deploy", "clickhouse")
	ddl, err := os.ReadFile(filepath.Join(dir, "querylog.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if want := tableDDL("dns", "querylog") + ";"; !strings.Contains(string(ddl), want) {
		t.Errorf("querylog.sql does not contain the table the shipper creates:\n%s", want)
	}
	ttl, err := os.ReadFile(filepath.Join(dir, "querylog-ttl.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range columnDefs {
		re := "`" + c.name + "` "
		i := strings.Index(string(ttl), re)
		if i < 0 {
			t.Errorf("querylog-ttl.sql has no column %s", c.name)
			continue
		}
		typ, _, _ := strings.Cut(string(ttl)[i+len(re):], "\n")
		typ = strings.TrimSuffix(strings.TrimSpace(typ), ",")
		typ, _, _ = strings.Cut(typ, " CODEC")
		if !compatibleType(typ, c.typ) {
			t.Errorf("querylog-ttl.sql: column %s is %s, which the shipper does not accept for %s", c.name, typ, c.typ)
		}
	}

	ch := testutil.StartClickHouse(t)
	for _, stmt := range sqlStatements(string(ddl)) {
		ch.Exec(t, stmt)
	}
	o := testOptions(ch.Addr, "n1")
	o.Database = "dns"
	s := startShipper(t, "d.db", newMemSource(testRows(100, time.Now())), o)
	shippedUpTo(t, s, 100)
	queries, err := os.ReadFile(filepath.Join(dir, "queries.sql"))
	if err != nil {
		t.Fatal(err)
	}
	stmts := sqlStatements(string(queries))
	if len(stmts) < 3 {
		t.Fatalf("queries.sql has %d statements", len(stmts))
	}
	for _, stmt := range stmts {
		res, err := ch.Conn(t).Query(context.Background(), stmt)
		if err != nil {
			t.Errorf("queries.sql: %v\n%s", err, stmt)
			continue
		}
		res.Close()
	}
	var n, distinct uint64
	var dups, missing int64
	if err := ch.Conn(t).QueryRow(context.Background(), stmts[0]).Scan(new(string), &n, &distinct, &dups, &missing, new(uint64), new(uint64)); err != nil {
		t.Fatal(err)
	}
	if n != 100 || distinct != 100 || dups != 0 || missing != 0 {
		t.Errorf("gap check: %d rows, %d distinct, %d duplicates, %d missing; want 100, 100, 0, 0", n, distinct, dups, missing)
	}
}

// sqlStatements splits a file of ';'-terminated statements, dropping '--' comment lines.
func sqlStatements(text string) []string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for _, s := range strings.Split(strings.Join(lines, "\n"), ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// TestShipReadsNothingWhileClickHouseIsDown: an attempt connects before it reads, so a
// ClickHouse that refuses connections costs no batch read and dropped at every retry (52 MiB of
// RSS at saturation before, bench/README.md's memory budget).
func TestShipReadsNothingWhileClickHouseIsDown(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.Ports(t, 1)[0]) // free: nothing listens
	src := newMemSource(testRows(3*20000, time.Now().Add(-time.Hour)))
	db := "down-" + t.Name()
	s := startShipper(t, db, src, testOptions(addr, "n1"))
	testutil.WaitFor(t, 30*time.Second, "three failed attempts", func() bool {
		return promtest.ToFloat64(errorsTotal.WithLabelValues(db)) >= 3
	})
	s.Stop()
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.read != 0 {
		t.Errorf("the shipper read %d rows while ClickHouse refused every connection, want 0", src.read)
	}
}
