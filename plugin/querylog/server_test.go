package querylog

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/metadata"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/root"
	_ "github.com/coredns/coredns/plugin/template"

	"github.com/querylog/querylog/internal/testutil"
)

// In-process CoreDNS for end-to-end tests, as CoreDNS's own test/server.go does.

func init() {
	dirs := WithDirective(dnsserver.Directives)
	// Test-only plugins: testmeta (e2e_test.go) and testpod (cluster_test.go) after metadata, panictest (panic_test.go) right
	// below querylog.
	dirs = slices.Insert(dirs, slices.Index(dirs, "metadata")+1, "testmeta", "testpod")
	dirs = slices.Insert(dirs, slices.Index(dirs, "querylog")+1, "panictest")
	if err := dnsserver.SetDirectives(dirs); err != nil {
		panic(err)
	}
	caddy.Quiet = true
	dnsserver.Quiet = true
}

func startCoreDNS(t *testing.T, corefile string) *caddy.Instance {
	t.Helper()
	inst, err := testutil.CaddyStart(corefile)
	if err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	return inst
}

// restart reloads inst with corefile as SIGUSR1 does.
func restart(t *testing.T, inst *caddy.Instance, corefile string) *caddy.Instance {
	t.Helper()
	next, err := inst.Restart(testutil.Corefile(corefile))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if next == nil { // Restart recovers a panic and returns nothing
		t.Fatalf("reload returned no instance and no error: it panicked (see the [PANIC] log line)")
	}
	return next
}

func udpAddr(inst *caddy.Instance, k int) string { return inst.Servers()[k].LocalAddr().String() }
func tcpAddr(inst *caddy.Instance, k int) string { return inst.Servers()[k].Addr().String() }

// corefile is one server block on a random loopback port answering A queries under
// example.org, logging to db with the given querylog block options.
func corefile(db, opts string) string { return serverBlock(".:0", db, opts, "192.0.2.1") }

// serverBlock is a server block for key answering A queries under example.org with ip.
func serverBlock(key, db, opts, ip string) string {
	return fmt.Sprintf(`%s {
    bind 127.0.0.1
    querylog %s {
%s
    }
    template IN A example.org {
        answer "{{ .Name }} 60 IN A %s"
    }
}
`, key, db, opts, ip)
}

// warmUp sends 2×n queries to inst's first server and waits until they are written to db.
func warmUp(t *testing.T, inst *caddy.Instance, db string, n int) *testutil.Load {
	t.Helper()
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "a", 2, n, 0)
	l.Wait()
	testutil.WaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return bufferEmpty(t, db) })
	return l
}

// bufferEmpty reports whether db's buffer holds no entries: all it was handed is written or
// dropped.
func bufferEmpty(t *testing.T, db string) bool {
	return testutil.Gather(t).Get(db, "buffer_size") == 0
}

// checkAccounting checks querylog's counters for db once everything is flushed:
// enqueued = written + dropped, written = rows, and dropped as expected.
func checkAccounting(t *testing.T, db string, rows int64, wantDropped float64) {
	t.Helper()
	a := testutil.Gather(t).Account(db)
	if a.Enqueued != a.Written+a.Dropped+a.Buffered {
		t.Errorf("accounting for %s: enqueued %v != written %v + dropped %v + buffered %v", db, a.Enqueued, a.Written, a.Dropped, a.Buffered)
	}
	if a.Written != float64(rows) || a.Dropped != wantDropped || a.Buffered != 0 {
		t.Errorf("accounting for %s: %+v, want written = %d rows, dropped = %v, nothing buffered", db, a, rows, wantDropped)
	}
}

// checkLoggedExcept is testutil.CheckLogged for the DNS queries (under example.org) in db,
// where the other rows are entries handed straight to the writer, named *<suffix>: it returns
// their number and fails on duplicates or rows that are neither.
func checkLoggedExcept(t *testing.T, answered, failed []string, db, suffix string) int {
	t.Helper()
	all := testutil.Names(t, db)
	want := map[string]bool{}
	for _, n := range answered {
		want[n] = true
		if all[n] != 1 {
			t.Errorf("answered %s: %d rows", n, all[n])
		}
	}
	for _, n := range failed {
		want[n] = true
	}
	other := 0
	for n, c := range all {
		switch {
		case strings.HasSuffix(n, ".example.org."):
			if !want[n] || c != 1 {
				t.Errorf("row %s (x%d) is no query of this test", n, c)
			}
		case strings.HasSuffix(n, suffix):
			if c != 1 {
				t.Errorf("%s logged %d times", n, c)
			}
			other++
		default:
			t.Errorf("unexpected row %s (x%d)", n, c)
		}
	}
	return other
}

// goroutines returns the number of goroutines and how many of them are querylog flushers
// and checkpointers, or database/sql connection openers (one per open *sql.DB).
func goroutines() (total, flushers, sqlDBs int) {
	total, n := testutil.Goroutines("querylog.(*writer).run(", "querylog.(*checkpointer).run(", "database/sql.(*DB).connectionOpener(")
	return total, n[0] + n[1], n[2]
}

// settledGoroutines waits until the goroutine counts are at most the given ones (goroutines
// of a stopped server or a closed database take a moment to exit) and fails otherwise.
func settledGoroutines(t *testing.T, what string, total, flushers, sqlDBs int) {
	t.Helper()
	var gt, gf, gs int
	if !testutil.Poll(testutil.Patience, 20*time.Millisecond, func() bool {
		gt, gf, gs = goroutines()
		return gt <= total && gf <= flushers && gs <= sqlDBs
	}) {
		t.Errorf("%s: goroutines %d (flushers %d, sql.DBs %d), before %d (%d, %d)", what, gt, gf, gs, total, flushers, sqlDBs)
	}
}
