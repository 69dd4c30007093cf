package querylog

// Lifecycle tests against an in-process CoreDNS with a real SQLite file: shutdown (SIGTERM
// semantics), reloads that succeed, fail, or move the database, and several server blocks.
// Every test checks the accounting: each answered query is one row, or is counted as dropped.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestLifecycleShutdownUnderLoad shuts CoreDNS down the way SIGTERM does (all shutdown
// callbacks while still serving, then the servers stop) during a steady load: every query
// answered before the servers stopped is in the database.
func TestLifecycleShutdownUnderLoad(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms"))
	udp := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := testutil.StartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	udp.WaitAnswers(t, 1500)

	testutil.StopCoreDNS(t, inst) // load continues through the callbacks until the servers stop
	udp.Stop()
	tcp.Stop()

	answered, failed := testutil.Results(udp, tcp)
	t.Logf("answered %d UDP + TCP, %d unanswered", len(answered), len(failed))
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleShutdownFullBuffer shuts down with a buffer that holds most of its capacity and
// a flusher that would not write for an hour, while queries keep arriving: the final drain
// writes all of it. (Most entries are handed straight to the writer, to fill it quickly; the
// process-level TestSIGTERMFullBuffer fills it with queries only.)
func TestLifecycleShutdownFullBuffer(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, corefile(db, `buffer_size 10000
        batch_size 10000
        adaptive off
        flush_interval 1h`))
	w, _ := liveWriter(db)
	const injected = 7500
	for i := range injected {
		w.log(entryOf(&w.labels, queryRow{ts: time.Now().UnixMilli(), server: "bulk", qname: fmt.Sprintf("bulk%d.example.", i), qtype: 1, qclass: 1}))
	}
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "f", 2, 1<<30, 0)
	l.WaitAnswers(t, 500)
	if a := testutil.Gather(t).Account(db); a.Written != 0 || a.Buffered < 0.75*10000 {
		t.Fatalf("before shutdown: %+v, want nothing written and the buffer mostly full", a)
	}
	testutil.StopCoreDNS(t, inst)
	l.Stop()
	answered, failed := l.Results()
	if n := checkLoggedExcept(t, answered, failed, db, ".example."); n != injected {
		t.Errorf("%d of the %d entries handed to the writer are rows", n, injected)
	}
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleShutdownTailBacklog shuts down the way SIGTERM does while another connection
// holds the database's write lock and queries keep arriving. The drain gives up after
// shutdown_timeout and counts what it could not write as dropped (reason shutdown); queries
// answered after that must be counted too. When the servers' Stop returns (it waits for DNS
// handlers at most 5s), caddy's SIGTERM handler exits the process, so by then every answered
// query must be a row or a counted drop: a handler still handing over its entry is a query
// lost without a trace.
func TestLifecycleShutdownTailBacklog(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms\n        shutdown_timeout 1s"))
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "f", 1, 1<<30, 5*time.Millisecond)
	l.WaitAnswers(t, 100)
	testutil.WaitFor(t, 10*time.Second, "a first write", func() bool { return testutil.Gather(t).Account(db).Written > 0 })
	unlock := testutil.Lock(t, db)

	start := time.Now()
	for _, err := range inst.ShutdownCallbacks() {
		t.Errorf("shutdown callback: %v", err)
	}
	drained := time.Since(start)
	inst.Stop()
	stopped := time.Since(start)
	// Here the process would exit.
	pending := tailWriters()
	a := testutil.Gather(t).Account(db)
	answered, failed := l.Results()
	l.Stop()
	t.Logf("drain gave up after %s, servers stopped after %s; %d answered (%d unanswered); %+v; %d handlers still handing over their entry",
		drained.Round(time.Millisecond), stopped.Round(time.Millisecond), len(answered), len(failed), a, pending)
	if pending > 0 || a.Written+a.Dropped < float64(len(answered)) {
		t.Errorf("when Stop returned (the process exits there), %d handlers were still handing over their entry, and only %v of %d answered queries were rows or counted drops: every entry that arrives after the buffer closed must be accounted for before the servers' Stop returns (the tail group-commits them and, once a write has failed on the lock, counts the rest as shutdown drops at once)",
			pending, a.Written+a.Dropped, len(answered))
	}
	// Release the lock so the stragglers finish before the next test.
	unlock()
	testutil.WaitFor(t, 60*time.Second, "the handlers to finish", func() bool { return tailWriters() == 0 })
	if a := testutil.Gather(t).Account(db); a.Enqueued != a.Written+a.Dropped {
		t.Errorf("accounting after all: %+v", a)
	}
}

// tailWriters counts goroutines inside writer.log (DNS handlers handing over an entry).
func tailWriters() int {
	_, n := testutil.Goroutines("querylog.(*writer).log(")
	return n[0]
}

// TestLifecycleReloadUnderLoad reloads three times during a steady UDP and TCP load. The writer
// (buffer, flusher, connection) is handed over: it is the same one throughout, the process
// never has a second connection to the file, no write ever fails, and every answer is a row.
func TestLifecycleReloadUnderLoad(t *testing.T) {
	logs := testutil.CaptureLog(t)
	db := filepath.Join(t.TempDir(), "q.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, corefile(db, opts))
	w0, _ := liveWriter(db)

	// Watch the registry and the file descriptors throughout.
	var swapped, absent, maxConns int
	stopWatch := testutil.Watch(time.Millisecond, func() {
		switch w, _ := liveWriter(db); {
		case w == nil:
			absent++
		case w != w0:
			swapped++
		}
		maxConns = max(maxConns, testutil.Conns(0, db))
	})

	udp := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := testutil.StartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	for i := range 3 {
		udp.WaitAnswers(t, 800*(i+1))
		inst = restart(t, inst, serverBlock(".:0", db, opts, fmt.Sprintf("192.0.2.%d", i+2)))
	}
	udp.WaitAnswers(t, 800*4)
	udp.Stop()
	tcp.Stop()
	stopWatch()
	testutil.StopCoreDNS(t, inst)

	if absent > 0 || swapped > 0 {
		t.Errorf("the writer for %s was absent %d and replaced %d times during reloads, want one writer throughout", db, absent, swapped)
	}
	// The writer's connection and its checkpointer's; a second writer would add more.
	if maxConns > 2 {
		t.Errorf("up to %d connections to %s, want the writer's and its checkpointer's (2)", maxConns, db)
	}
	answered, failed := testutil.Results(udp, tcp)
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
	if n := testutil.Gather(t).Get(db, "flush_errors_total"); n != 0 {
		t.Errorf("flush errors: %v, want 0", n)
	}
	if strings.Contains(logs.String(), "locked") {
		t.Errorf("log mentions a lock:\n%s", logs)
	}
	if strings.Contains(logs.String(), failedInstanceLine) {
		t.Errorf("healthy reloads logged %q", failedInstanceLine)
	}
}

// failedInstanceLine is logged when querylog releases what an instance that failed to start
// had acquired: only then.
const failedInstanceLine = "Releasing the databases of an instance that failed to start"

// TestLifecycleReloadInvalid tries reloads that fail before any OnStartup (a querylog option
// error, a later plugin's error after querylog's setup looked at a new path, a syntax error, a
// foreign database): the old instance keeps serving and logging, nothing is lost, and no
// goroutine, database handle or file is left behind.
func TestLifecycleReloadInvalid(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, corefile(db, opts))
	before := warmUp(t, inst, db, 500)

	foreign := filepath.Join(dir, "foreign.db")
	createOtherDB(t, foreign, true)
	foreignBytes, _ := os.ReadFile(foreign)
	other := filepath.Join(dir, "other.db")
	bad := map[string]string{
		"unknown option":   corefile(db, "flush_interval 200ms\n        no_such_option 1"),
		"later plugin":     strings.Replace(corefile(other, opts), `answer "`, `answer "{{ .Broken `, 1),
		"syntax":           corefile(db, opts) + "\n}\n{",
		"foreign database": corefile(foreign, opts),
	}

	fds := testutil.SettledOpenFiles(t, 0, dir)
	total, flushers, sqlDBs := goroutines()
	_, refs := liveWriter(db)
	for name, cf := range bad {
		next, err := inst.Restart(testutil.Corefile(cf))
		if err == nil {
			t.Fatalf("%s: reload succeeded", name)
		}
		if next != inst {
			t.Fatalf("%s: a failed reload returned another instance", name)
		}
		t.Logf("%s: %v", name, err)
	}
	settledGoroutines(t, "after failed reloads", total, flushers, sqlDBs)
	if n := testutil.OpenFiles(t, 0, dir); n != fds {
		t.Errorf("open files under %s: %d, before the failed reloads %d", dir, n, fds)
	}
	if _, r := liveWriter(db); r != refs {
		t.Errorf("writer refs %d, before the failed reloads %d", r, refs)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("a failed reload created %s", other)
	}
	if b, _ := os.ReadFile(foreign); !bytes.Equal(b, foreignBytes) {
		t.Errorf("a failed reload modified %s", foreign)
	}

	after := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	after.Wait()
	testutil.StopCoreDNS(t, inst)
	answered, failed := testutil.Results(before, after)
	if after.Count() == 0 {
		t.Fatal("the old instance answered nothing after the failed reloads")
	}
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleReloadFailsAfterStartup reloads with a Corefile whose querylog blocks start
// (OnStartup runs, writers are acquired) but whose second server block cannot listen, on a port
// this test holds. Caddy drops that instance without a shutdown callback; querylog must release
// what it acquired: no extra reference on the shared writer, no flusher or connection for the
// second database, its old options back. A later shutdown still drains everything.
func TestLifecycleReloadFailsAfterStartup(t *testing.T) {
	logs := testutil.CaptureLog(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	db2 := filepath.Join(dir, "second.db")
	opts := "buffer_size 20000\n        flush_interval 200ms"
	inst := startCoreDNS(t, corefile(db, opts))
	w, refs := liveWriter(db)
	oldOpts := w.options()
	before := warmUp(t, inst, db, 500)

	port := testutil.Ports(t, 1)[0]
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	fds := testutil.SettledOpenFiles(t, 0, db)
	total, flushers, sqlDBs := goroutines()
	// The first block keeps the database but with other options; the second cannot listen.
	failing := corefile(db, "buffer_size 10000\n        flush_interval 200ms") +
		serverBlock(fmt.Sprintf(".:%d", port), db2, opts, "192.0.2.9")
	if _, err := inst.Restart(testutil.Corefile(failing)); err == nil {
		t.Fatal("reload succeeded although its port is taken")
	} else {
		t.Logf("reload failed as intended: %v", err)
	}

	settledGoroutines(t, "after the failed reload", total, flushers, sqlDBs)
	if n := strings.Count(logs.String(), failedInstanceLine); n != 1 {
		t.Errorf("%q logged %d times after one failed reload, want once", failedInstanceLine, n)
	}
	if w2, r := liveWriter(db); w2 != w || r != refs {
		t.Errorf("writer for %s: %p with %d refs, want the original %p with %d", db, w2, r, w, refs)
	}
	if w2, _ := liveWriter(db2); w2 != nil {
		t.Errorf("the failed instance's writer for %s is still live", db2)
	}
	if n := testutil.OpenFiles(t, 0, db2); n != 0 {
		t.Errorf("%d file descriptors still open on %s", n, db2)
	}
	if n := testutil.OpenFiles(t, 0, db); n != fds {
		t.Errorf("%d file descriptors open on %s, %d before the reload", n, db, fds)
	}
	if got := w.options(); got != oldOpts {
		t.Errorf("after the failed reload the writer for %s runs with the failed Corefile's options %+v, want the running instance's %+v", db, got, oldOpts)
	}

	after := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	after.Wait()
	testutil.StopCoreDNS(t, inst)
	answered, failed := testutil.Results(before, after)
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleReloadFailsAfterStartupWithoutQuerylog is the same failure when the running
// Corefile has no querylog yet: the failed instance's writer must still be released, so that a
// later successful reload owns the database alone and its shutdown drains it.
func TestLifecycleReloadFailsAfterStartupWithoutQuerylog(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	opts := "flush_interval 200ms"
	plain := `.:0 {
    bind 127.0.0.1
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}
`
	inst := startCoreDNS(t, plain)
	port := testutil.Ports(t, 1)[0]
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	total, flushers, sqlDBs := goroutines()
	failing := corefile(db, opts) + serverBlock(fmt.Sprintf(".:%d", port), db, opts, "192.0.2.9")
	if _, err := inst.Restart(testutil.Corefile(failing)); err == nil {
		t.Fatal("reload succeeded although its port is taken")
	}
	settledGoroutines(t, "after the failed reload", total, flushers, sqlDBs)
	if w, refs := liveWriter(db); w != nil {
		t.Errorf("the failed instance's writer for %s is still live with %d refs", db, refs)
	}
	if n := testutil.OpenFiles(t, 0, db); n != 0 {
		t.Errorf("%d file descriptors still open on %s", n, db)
	}
	held.Close()

	inst = restart(t, inst, corefile(db, opts))
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 500, 0)
	l.Wait()
	testutil.StopCoreDNS(t, inst)
	if w, refs := liveWriter(db); w != nil {
		t.Errorf("after shutdown the writer for %s is still live with %d refs", db, refs)
	}
	answered, failed := l.Results()
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleReloadChangesPath moves the database during a steady load: queries answered
// before the reload began are in the old file, queries sent after it completed in the new one,
// and every answered query is in exactly one of them.
func TestLifecycleReloadChangesPath(t *testing.T) {
	dir := t.TempDir()
	oldDB, newDB := filepath.Join(dir, "old.db"), filepath.Join(dir, "new.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, corefile(oldDB, opts))
	udp := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := testutil.StartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	udp.WaitAnswers(t, 600)

	begin := time.Now()
	inst = restart(t, inst, corefile(newDB, opts))
	end := time.Now()
	udp.WaitAnswers(t, udp.Count()+600)
	udp.Stop()
	tcp.Stop()
	testutil.StopCoreDNS(t, inst)

	answered, failed := testutil.Results(udp, tcp)
	per := testutil.CheckLogged(t, answered, failed, oldDB, newDB)
	var early, late, wrong int
	for _, a := range append(udp.Answers(), tcp.Answers()...) {
		switch {
		case a.Recv.Before(begin):
			early++
			if per[0][a.Name] != 1 {
				wrong++
				t.Errorf("%s was answered before the reload but is not in the old database", a.Name)
			}
		case a.Sent.After(end):
			late++
			if per[1][a.Name] != 1 {
				wrong++
				t.Errorf("%s was sent after the reload but is not in the new database", a.Name)
			}
		}
		if wrong > 5 {
			break
		}
	}
	t.Logf("%d answered: %d before the reload, %d after, %d during it; old %d rows, new %d rows",
		len(answered), early, late, len(answered)-early-late, testutil.CountRows(t, oldDB, ""), testutil.CountRows(t, newDB, ""))
	if early == 0 || late == 0 {
		t.Errorf("no queries before (%d) or after (%d) the reload", early, late)
	}
	if w, _ := liveWriter(oldDB); w != nil {
		t.Errorf("the old database's writer is still live")
	}
	checkAccounting(t, oldDB, testutil.CountRows(t, oldDB, ""), 0)
	checkAccounting(t, newDB, testutil.CountRows(t, newDB, ""), 0)
}

// TestLifecycleTwoBlocksOneFile has two server blocks on two ports logging to the same file
// under load: one writer, and each port's queries are its rows.
func TestLifecycleTwoBlocksOneFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	opts := "flush_interval 200ms"
	ports := testutil.Ports(t, 2)
	p1, p2 := ports[0], ports[1]
	inst := startCoreDNS(t, serverBlock(fmt.Sprintf(".:%d", p1), db, opts, "192.0.2.1")+
		serverBlock(fmt.Sprintf(".:%d", p2), db, opts, "192.0.2.2"))
	if _, refs := liveWriter(db); refs != 2 {
		t.Errorf("writer refs = %d, want 2 (one writer shared by both blocks)", refs)
	}
	l1 := testutil.StartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p1), "one", 2, 1000, 0)
	l2 := testutil.StartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p2), "two", 2, 1000, 0)
	l1.Wait()
	l2.Wait()
	testutil.StopCoreDNS(t, inst)

	answered, failed := testutil.Results(l1, l2)
	testutil.CheckLogged(t, answered, failed, db)
	for i, l := range []*testutil.Load{l1, l2} {
		server := fmt.Sprintf("dns://127.0.0.1:%d", []int{p1, p2}[i])
		prefix := []string{"one-", "two-"}[i]
		if n := testutil.CountRows(t, db, "WHERE server = ? AND qname LIKE ?", server, prefix+"%"); n < int64(l.Count()) {
			t.Errorf("%s: %d rows for its own queries, want %d", server, n, l.Count())
		}
		if n := testutil.CountRows(t, db, "WHERE server = ? AND qname NOT LIKE ?", server, prefix+"%"); n != 0 {
			t.Errorf("%s: %d rows for the other block's queries", server, n)
		}
	}
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestLifecycleTwoBlocksTwoFiles has two server blocks logging to two files under load: each
// file holds exactly its own block's queries.
func TestLifecycleTwoBlocksTwoFiles(t *testing.T) {
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	opts := "flush_interval 200ms"
	ports := testutil.Ports(t, 2)
	p1, p2 := ports[0], ports[1]
	inst := startCoreDNS(t, serverBlock(fmt.Sprintf(".:%d", p1), db1, opts, "192.0.2.1")+
		serverBlock(fmt.Sprintf(".:%d", p2), db2, "batch_size 500\n        flush_interval 300ms", "192.0.2.2"))
	l1 := testutil.StartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p1), "one", 2, 1000, 0)
	l2 := testutil.StartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p2), "two", 2, 1000, 0)
	l1.Wait()
	l2.Wait()
	testutil.StopCoreDNS(t, inst)

	a1, f1 := l1.Results()
	a2, f2 := l2.Results()
	testutil.CheckLogged(t, a1, f1, db1)
	testutil.CheckLogged(t, a2, f2, db2)
	checkAccounting(t, db1, testutil.CountRows(t, db1, ""), 0)
	checkAccounting(t, db2, testutil.CountRows(t, db2, ""), 0)
}

// TestAcquireNotBlockedByDrainingWriter: opening one database never waits for another one's
// drain, which may take shutdown_timeout plus the shipper's finish. Here an acquire of A finds
// A draining (a stand-in writer that never finishes) only once it holds openMu, as when A was
// opened and released while it waited for the lock; meanwhile an acquire of B must go ahead.
func TestAcquireNotBlockedByDrainingWriter(t *testing.T) {
	dir := t.TempDir()
	a, b := writerOpts(filepath.Join(dir, "a.db")), writerOpts(filepath.Join(dir, "b.db"))
	draining := &writer{path: a.path, closing: true, closed: make(chan struct{})}
	finish := sync.OnceFunc(func() {
		registryMu.Lock()
		delete(writers, a.path)
		registryMu.Unlock()
		close(draining.closed)
	})
	t.Cleanup(finish)

	openMu.Lock()
	gotA := make(chan *writer, 1)
	go func() {
		w, err := acquire(a, tuning{})
		if err != nil {
			t.Errorf("acquire(%s): %v", a.path, err)
		}
		gotA <- w
	}()
	testutil.WaitFor(t, 10*time.Second, "the acquire of A to wait for openMu", func() bool {
		return testutil.Waiting("sync.Mutex.Lock", "querylog.acquire(") == 1
	})
	registryMu.Lock()
	writers[a.path] = draining
	registryMu.Unlock()
	openMu.Unlock()
	testutil.WaitFor(t, 10*time.Second, "the acquire of A to wait for A's drain", func() bool {
		return testutil.Waiting("chan receive", "querylog.acquire(") == 1
	})

	gotB := make(chan *writer, 1)
	go func() {
		w, err := acquire(b, tuning{})
		if err != nil {
			t.Errorf("acquire(%s): %v", b.path, err)
		}
		gotB <- w
	}()
	var wb *writer
	if !testutil.Poll(20*time.Second, 5*time.Millisecond, func() bool {
		select {
		case wb = <-gotB:
			return true
		default:
			return false
		}
	}) {
		t.Errorf("acquire(B) still waits after 20s while A drains: it waits behind the acquire of A, which holds openMu")
	}
	finish()
	wa := <-gotA
	if wb == nil {
		wb = <-gotB
	}
	for _, w := range []*writer{wa, wb} {
		if w != nil {
			w.release(w.options(), false)
		}
	}
	if wa == draining {
		t.Errorf("acquire(A) joined the draining writer")
	}
}

// TestJoinWaitsForStoreClose: a writer released by a final shutdown keeps its database open
// for tailGrace, for replies still being answered. A new acquire of the same file meanwhile
// waits until that store is closed, and only then opens its own: never two connections
// writing to one file from one process.
func TestJoinWaitsForStoreClose(t *testing.T) {
	t.Parallel()
	o := writerOpts(tempDB(t))
	w := testWriter(t, o)
	logN(w, "dns://:53", 0, 3)
	w.release(w.options(), true)
	if !w.ready() {
		t.Fatalf("the store closed at once, not after tailGrace: nothing to test")
	}
	next := testWriter(t, o)
	if w.ready() {
		t.Errorf("acquire returned a new writer while the released one still had %s open", o.path)
	}
	if next == w {
		t.Errorf("acquire joined the released writer")
	}
	logN(next, "dns://:53", 3, 2)
	next.release(next.options(), false)
	if n := testutil.CountRows(t, o.path, ""); n != 5 {
		t.Errorf("%d rows, want 5", n)
	}
}
