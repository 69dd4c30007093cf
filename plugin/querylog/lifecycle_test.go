package querylog

// Lifecycle tests against an in-process CoreDNS with a real SQLite file: shutdown (SIGTERM
// semantics), reloads that succeed, fail, or move the database, and several server blocks.
// Every test checks the accounting: each answered query is one row, or is counted as dropped.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	golog "log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
)

// ---- helpers (ft prefix: shared by lifecycle_test.go, faults_test.go, dnsinput_test.go) ----

// ftCorefile is one server block on a random loopback port answering A queries under
// example.org, logging to db with the given querylog block options.
func ftCorefile(db, opts string) string {
	return ftBlock(".:0", db, opts, "192.0.2.1")
}

func ftBlock(key, db, opts, ip string) string {
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

// ftLoad is a steady query load: workers send A queries for unique names until stopped or
// until each has sent max queries, and remember which names were answered and which not.
type ftLoad struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	answered []ftAnswer
	failed   []string
}

type ftAnswer struct {
	name       string
	sent, recv time.Time
}

// ftStartLoad starts workers sending <prefix>-<worker>-<i>.example.org. to addr over network.
// gap paces each worker (0: as fast as it can). The load stops by itself after deadline.
func ftStartLoad(t *testing.T, network, addr, prefix string, workers, max int, gap time.Duration) *ftLoad {
	t.Helper()
	l := &ftLoad{stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &dns.Client{Net: network, Timeout: time.Second}
			var conn *dns.Conn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for i := 0; i < max; i++ {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if conn == nil {
					var err error
					if conn, err = c.Dial(addr); err != nil {
						conn = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				name := fmt.Sprintf("%s-%d-%d.example.org.", prefix, w, i)
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				sent := time.Now()
				r, _, err := c.ExchangeWithConn(m, conn)
				if err != nil || r == nil || r.Id != m.Id {
					l.mu.Lock()
					l.failed = append(l.failed, name)
					l.mu.Unlock()
					conn.Close() // a late reply must not be taken for the next query's
					conn = nil
				} else {
					recv := time.Now()
					l.mu.Lock()
					l.answered = append(l.answered, ftAnswer{name, sent, recv})
					l.mu.Unlock()
				}
				if gap > 0 {
					time.Sleep(gap)
				}
			}
		}()
	}
	go func() { l.wg.Wait(); cancel() }()
	t.Cleanup(func() { l.Stop() })
	return l
}

// Stop ends the load and waits for the workers.
func (l *ftLoad) Stop() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// Wait waits for the workers to finish their max queries.
func (l *ftLoad) Wait() { l.wg.Wait() }

func (l *ftLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answered)
}

// results returns the answers and failures so far.
func (l *ftLoad) results() ([]ftAnswer, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ftAnswer(nil), l.answered...), append([]string(nil), l.failed...)
}

// ftWaitAnswers waits until the load has had n answers.
func (l *ftLoad) waitAnswers(t *testing.T, n int) {
	t.Helper()
	ftWaitFor(t, 30*time.Second, fmt.Sprintf("%d answers", n), func() bool { return l.count() >= n })
}

// ftOpenDB opens db read-only for the test, waiting for locks (a checkpoint or the writer's
// WAL reset can make a reader wait a moment).
func ftOpenDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ftCountRows is countRows with ftOpenDB's patience.
func ftCountRows(t *testing.T, path, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := ftOpenDB(t, path).QueryRow("SELECT count(*) FROM queries "+where, args...).Scan(&n); err != nil {
		t.Fatalf("counting rows in %s: %v", path, err)
	}
	return n
}

// ftNames reads the qname of every row of db, with its number of rows.
func ftNames(t *testing.T, db string) map[string]int {
	t.Helper()
	rows, err := ftOpenDB(t, db).Query("SELECT qname FROM queries")
	if err != nil {
		t.Fatalf("reading %s: %v", db, err)
	}
	defer rows.Close()
	names := map[string]int{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names[n]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// ftCheckLogged checks that every answered query is exactly one row in exactly one of dbs, and
// that every other row belongs to a query whose answer the client did not wait for (a timeout
// is not an answer, but the server may well have answered and logged it). It returns the rows
// of each database by name.
func ftCheckLogged(t *testing.T, answered []ftAnswer, failed []string, dbs ...string) []map[string]int {
	t.Helper()
	per := make([]map[string]int, len(dbs))
	total := map[string]int{}
	for i, db := range dbs {
		per[i] = ftNames(t, db)
		for n, c := range per[i] {
			total[n] += c
		}
	}
	missing, dup := 0, 0
	for _, a := range answered {
		switch c := total[a.name]; {
		case c == 0:
			if missing++; missing <= 5 {
				t.Errorf("answered query %s is not in %v", a.name, dbs)
			}
		case c > 1:
			if dup++; dup <= 5 {
				t.Errorf("answered query %s is logged %d times", a.name, c)
			}
		}
		delete(total, a.name)
	}
	isFailed := map[string]bool{}
	for _, n := range failed {
		isFailed[n] = true
	}
	extra := 0
	for n, c := range total {
		if !isFailed[n] || c > 1 {
			if extra++; extra <= 5 {
				t.Errorf("row %s (x%d) is not an answered query", n, c)
			}
		}
	}
	if missing+dup+extra > 0 {
		t.Errorf("%d answered: %d missing, %d duplicated, %d unexplained rows", len(answered), missing, dup, extra)
	}
	return per
}

// ftCheckAccounting checks querylog's counters for db once everything is flushed:
// enqueued = written + dropped, written = rows, and dropped as expected.
func ftCheckAccounting(t *testing.T, db string, rows int64, wantDropped float64) {
	t.Helper()
	a := accountFor(t, db)
	if a.enqueued != a.written+a.dropped+a.buffered {
		t.Errorf("accounting for %s: enqueued %v != written %v + dropped %v + buffered %v", db, a.enqueued, a.written, a.dropped, a.buffered)
	}
	if a.written != float64(rows) || a.dropped != wantDropped || a.buffered != 0 {
		t.Errorf("accounting for %s: %+v, want written = %d rows, dropped = %v, nothing buffered", db, a, rows, wantDropped)
	}
}

func ftWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ftWriter returns the live writer for path and its reference count.
func ftWriter(path string) (*writer, int) {
	registryMu.Lock()
	defer registryMu.Unlock()
	w := writers[path]
	if w == nil {
		return nil, 0
	}
	return w, len(w.holders)
}

// ftFDs counts this process's open file descriptors on files whose path starts with prefix.
func ftFDs(t *testing.T, prefix string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, prefix) {
			n++
		}
	}
	return n
}

// ftSettledFDs returns the number of open file descriptors under prefix once it has not
// changed for a while: connections opened lazily (the checkpointer's, on its first tick) are
// then open, so a later count compares like with like.
func ftSettledFDs(t *testing.T, prefix string) int {
	t.Helper()
	n, since := ftFDs(t, prefix), time.Now()
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if m := ftFDs(t, prefix); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 1500*time.Millisecond {
			return n
		}
	}
	t.Fatalf("open files under %s keep changing", prefix)
	return 0
}

// ftConns counts this process's open descriptors on path itself: one per SQLite connection.
func ftConns(t *testing.T, path string) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			n++
		}
	}
	return n
}

// ftGoroutines returns the number of goroutines and how many of them are querylog flushers
// and checkpointers, or database/sql connection openers (one per open *sql.DB).
func ftGoroutines() (total, flushers, sqlDBs int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		total++
		if bytes.Contains(g, []byte("querylog.(*writer).run(")) || bytes.Contains(g, []byte("querylog.(*checkpointer).run(")) {
			flushers++
		}
		if bytes.Contains(g, []byte("database/sql.(*DB).connectionOpener(")) {
			sqlDBs++
		}
	}
	return total, flushers, sqlDBs
}

// ftSettledGoroutines waits until the goroutine counts are at most the given ones (goroutines
// of a stopped server or a closed database take a moment to exit) and fails otherwise.
func ftSettledGoroutines(t *testing.T, what string, total, flushers, sqlDBs int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		gt, gf, gs := ftGoroutines()
		if gt <= total && gf <= flushers && gs <= sqlDBs {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: goroutines %d (flushers %d, sql.DBs %d), before %d (%d, %d)", what, gt, gf, gs, total, flushers, sqlDBs)
			return
		}
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond)
	}
}

// ftFreePort returns a loopback port free for both UDP and TCP at the time of the call.
func ftFreePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		p, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			p.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// ftCaptureLog sends the std logger (which CoreDNS's plugin loggers use) to a buffer for the
// rest of the test.
func ftCaptureLog(t *testing.T) *ftSyncBuffer {
	b := &ftSyncBuffer{}
	golog.SetOutput(b)
	t.Cleanup(func() {
		golog.SetOutput(io.Discard)
		if t.Failed() {
			t.Logf("log:\n%s", b)
		}
	})
	return b
}

type ftSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *ftSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *ftSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ftFlushErrors is coredns_querylog_flush_errors_total for db.
func ftFlushErrors(db string) float64 {
	m := &dto.Metric{}
	flushErrors.WithLabelValues(db).Write(m)
	return m.GetCounter().GetValue()
}

// ftStart starts CoreDNS on corefile, returning the error instead of failing.
func ftStart(corefile string) (*caddy.Instance, error) { return caddy.Start(corefileInput(corefile)) }

// ftRestart reloads inst with corefile as SIGUSR1 does.
func ftRestart(t *testing.T, inst *caddy.Instance, corefile string) *caddy.Instance {
	t.Helper()
	next, err := inst.Restart(corefileInput(corefile))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if next == nil { // Restart recovers a panic and returns nothing
		t.Fatalf("reload returned no instance and no error: it panicked (see the [PANIC] log line)")
	}
	return next
}

// ---- 1. Shutdown (SIGTERM semantics) ----

// TestLifecycleShutdownUnderLoad shuts CoreDNS down the way SIGTERM does (all shutdown
// callbacks while still serving, then the servers stop) during a steady load: every query
// answered before the servers stopped is in the database.
func TestLifecycleShutdownUnderLoad(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, ftCorefile(db, "flush_interval 200ms"))
	udp := ftStartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := ftStartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	udp.waitAnswers(t, 1500)

	stopCoreDNS(t, inst) // load continues through the callbacks until the servers stop
	udp.Stop()
	tcp.Stop()

	ua, uf := udp.results()
	ta, tf := tcp.results()
	t.Logf("answered %d UDP + %d TCP, %d unanswered", len(ua), len(ta), len(uf)+len(tf))
	ftCheckLogged(t, append(ua, ta...), append(uf, tf...), db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// TestLifecycleShutdownFullBuffer shuts down with a buffer that holds most of its capacity and
// a flusher that would not write for an hour, while queries keep arriving: the final drain
// writes all of it. (Most entries are handed straight to the writer, to fill it quickly; the
// process-level TestSIGTERMFullBuffer fills it with queries only.)
func TestLifecycleShutdownFullBuffer(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, ftCorefile(db, `buffer_size 10000
        batch_size 10000
        adaptive off
        flush_interval 1h`))
	w, _ := ftWriter(db)
	const injected = 7500
	for i := range injected {
		w.log(entry{start: time.Now().UnixNano(), server: "bulk", qname: fmt.Sprintf("bulk%d.example.", i), qtype: 1, qclass: 1})
	}
	l := ftStartLoad(t, "udp", udpAddr(inst, 0), "f", 2, 1<<30, 0)
	l.waitAnswers(t, 500)
	if a := accountFor(t, db); a.written != 0 || a.buffered < 0.75*10000 {
		t.Fatalf("before shutdown: %+v, want nothing written and the buffer mostly full", a)
	}
	stopCoreDNS(t, inst)
	l.Stop()
	answered, failed := l.results()
	if n := ftCheckLoggedExcept(t, answered, failed, db, ".example."); n != injected {
		t.Errorf("%d of the %d entries handed to the writer are rows", n, injected)
	}
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// TestLifecycleShutdownTailBacklog shuts down the way SIGTERM does while another process holds
// the database's write lock and queries keep arriving. The drain gives up after
// shutdown_timeout and counts what it could not write as dropped (reason shutdown); queries
// answered after that must be counted too. When the servers' Stop returns (it waits for DNS
// handlers at most 5s), caddy's SIGTERM handler exits the process, so by then every answered
// query must be a row or a counted drop: a handler still handing over its entry is a query
// lost without a trace.
func TestLifecycleShutdownTailBacklog(t *testing.T) {
	ftNeedSQLite3(t)
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, ftCorefile(db, "flush_interval 200ms\n        shutdown_timeout 1s"))
	l := ftStartLoad(t, "udp", udpAddr(inst, 0), "f", 1, 1<<30, 5*time.Millisecond)
	l.waitAnswers(t, 100)
	ftWaitFor(t, 10*time.Second, "a first write", func() bool { return accountFor(t, db).written > 0 })
	locker := ftStartCLI(t, db)
	locker.run(t, ".timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 'locked';", "locked")

	start := time.Now()
	for _, err := range inst.ShutdownCallbacks() {
		t.Errorf("shutdown callback: %v", err)
	}
	drained := time.Since(start)
	inst.Stop()
	stopped := time.Since(start)
	// Here the process would exit.
	pending := ftTailWriters()
	a := accountFor(t, db)
	answered, failed := l.results()
	l.Stop()
	t.Logf("drain gave up after %s, servers stopped after %s; %d answered (%d unanswered); %+v; %d handlers still handing over their entry",
		drained.Round(time.Millisecond), stopped.Round(time.Millisecond), len(answered), len(failed), a, pending)
	if pending > 0 || a.written+a.dropped < float64(len(answered)) {
		t.Errorf("when Stop returned (the process exits there), %d handlers were still handing over their entry, and only %v of %d answered queries were rows or counted drops: writer.log writes each entry that arrives after the buffer closed in its own transaction, one at a time under storeMu, each waiting up to the 1s busy timeout",
			pending, a.written+a.dropped, len(answered))
	}
	// Release the lock so the stragglers finish before the next test.
	locker.run(t, "COMMIT;\nSELECT 'unlocked';", "unlocked")
	locker.quit(t)
	ftWaitFor(t, 60*time.Second, "the handlers to finish", func() bool { return ftTailWriters() == 0 })
	if a := accountFor(t, db); a.enqueued != a.written+a.dropped {
		t.Errorf("accounting after all: %+v", a)
	}
}

// ftTailWriters counts goroutines inside writer.log (DNS handlers handing over an entry).
func ftTailWriters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return bytes.Count(buf, []byte("querylog.(*writer).log("))
}

// ---- 2. Reload under load ----

// TestLifecycleReloadUnderLoad reloads three times during a steady UDP and TCP load. The writer
// (buffer, flusher, connection) is handed over: it is the same one throughout, the process
// never has a second connection to the file, no write ever fails, and every answer is a row.
func TestLifecycleReloadUnderLoad(t *testing.T) {
	logs := ftCaptureLog(t)
	db := filepath.Join(t.TempDir(), "q.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, ftCorefile(db, opts))
	w0, _ := ftWriter(db)

	// Watch the registry and the file descriptors throughout.
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	var swapped, absent, maxConns atomic.Int64
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			switch w, _ := ftWriter(db); {
			case w == nil:
				absent.Add(1)
			case w != w0:
				swapped.Add(1)
			}
			if n := int64(ftConns(t, db)); n > maxConns.Load() {
				maxConns.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	udp := ftStartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := ftStartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	for i := range 3 {
		udp.waitAnswers(t, 800*(i+1))
		inst = ftRestart(t, inst, ftBlock(".:0", db, opts, fmt.Sprintf("192.0.2.%d", i+2)))
	}
	udp.waitAnswers(t, 800*4)
	udp.Stop()
	tcp.Stop()
	close(stopWatch)
	<-watchDone
	stopCoreDNS(t, inst)

	if absent.Load() > 0 || swapped.Load() > 0 {
		t.Errorf("the writer for %s was absent %d and replaced %d times during reloads, want one writer throughout", db, absent.Load(), swapped.Load())
	}
	// The writer's connection and its checkpointer's; a second writer would add more.
	if n := maxConns.Load(); n > 2 {
		t.Errorf("up to %d connections to %s, want the writer's and its checkpointer's (2)", n, db)
	}
	ua, uf := udp.results()
	ta, tf := tcp.results()
	ftCheckLogged(t, append(ua, ta...), append(uf, tf...), db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
	if n := ftFlushErrors(db); n != 0 {
		t.Errorf("flush errors: %v, want 0", n)
	}
	if strings.Contains(logs.String(), "locked") {
		t.Errorf("log mentions a lock:\n%s", logs)
	}
}

// ---- 3. Failed reloads ----

// TestLifecycleReloadInvalid tries reloads that fail before any OnStartup (a querylog option
// error, a later plugin's error after querylog's setup looked at a new path, a syntax error, a
// foreign database): the old instance keeps serving and logging, nothing is lost, and no
// goroutine, database handle or file is left behind.
func TestLifecycleReloadInvalid(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, ftCorefile(db, opts))
	before := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 500, 0)
	before.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })

	foreign := filepath.Join(dir, "foreign.db")
	ftForeignDB(t, foreign)
	foreignBytes, _ := os.ReadFile(foreign)
	other := filepath.Join(dir, "other.db")
	bad := map[string]string{
		"unknown option":   ftCorefile(db, "flush_interval 200ms\n        no_such_option 1"),
		"later plugin":     strings.Replace(ftCorefile(other, opts), `answer "`, `answer "{{ .Broken `, 1),
		"syntax":           ftCorefile(db, opts) + "\n}\n{",
		"foreign database": ftCorefile(foreign, opts),
	}

	fds := ftSettledFDs(t, dir)
	total, flushers, sqlDBs := ftGoroutines()
	_, refs := ftWriter(db)
	for name, corefile := range bad {
		next, err := inst.Restart(corefileInput(corefile))
		if err == nil {
			t.Fatalf("%s: reload succeeded", name)
		}
		if next != inst {
			t.Fatalf("%s: a failed reload returned another instance", name)
		}
		t.Logf("%s: %v", name, err)
	}
	ftSettledGoroutines(t, "after failed reloads", total, flushers, sqlDBs)
	if n := ftFDs(t, dir); n != fds {
		t.Errorf("open files under %s: %d, before the failed reloads %d", dir, n, fds)
	}
	if _, r := ftWriter(db); r != refs {
		t.Errorf("writer refs %d, before the failed reloads %d", r, refs)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("a failed reload created %s", other)
	}
	if b, _ := os.ReadFile(foreign); !bytes.Equal(b, foreignBytes) {
		t.Errorf("a failed reload modified %s", foreign)
	}

	after := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	after.Wait()
	stopCoreDNS(t, inst)
	a1, f1 := before.results()
	a2, f2 := after.results()
	if len(a2) == 0 {
		t.Fatal("the old instance answered nothing after the failed reloads")
	}
	ftCheckLogged(t, append(a1, a2...), append(f1, f2...), db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// ftForeignDB creates another application's SQLite database (in WAL mode) at path.
func ftForeignDB(t *testing.T, path string) {
	t.Helper()
	ftSQLite(t, path, `PRAGMA journal_mode=WAL; CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
		INSERT INTO users (name) VALUES ('alice'), ('bob');`)
}

// ftSQLite runs sql on path with the sqlite3 command-line tool.
func ftSQLite(t *testing.T, path, sql string) string {
	t.Helper()
	out, err := ftSQLiteCmd(path, sql)
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", path, err, out)
	}
	return out
}

// TestLifecycleReloadFailsAfterStartup reloads with a Corefile whose querylog blocks start
// (OnStartup runs, writers are acquired) but whose second server block cannot listen, on a port
// this test holds. Caddy drops that instance without a shutdown callback; querylog must release
// what it acquired: no extra reference on the shared writer, no flusher or connection for the
// second database, its old options back. A later shutdown still drains everything.
func TestLifecycleReloadFailsAfterStartup(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	db2 := filepath.Join(dir, "second.db")
	opts := "buffer_size 20000\n        flush_interval 200ms"
	inst := startCoreDNS(t, ftCorefile(db, opts))
	w, refs := ftWriter(db)
	oldOpts := w.options()
	before := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 500, 0)
	before.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })

	port := ftFreePort(t)
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	fds := ftSettledFDs(t, db)
	total, flushers, sqlDBs := ftGoroutines()
	// The first block keeps the database but with other options; the second cannot listen.
	failing := ftCorefile(db, "buffer_size 10000\n        flush_interval 200ms") +
		ftBlock(fmt.Sprintf(".:%d", port), db2, opts, "192.0.2.9")
	if _, err := inst.Restart(corefileInput(failing)); err == nil {
		t.Fatal("reload succeeded although its port is taken")
	} else {
		t.Logf("reload failed as intended: %v", err)
	}

	ftSettledGoroutines(t, "after the failed reload", total, flushers, sqlDBs)
	if w2, r := ftWriter(db); w2 != w || r != refs {
		t.Errorf("writer for %s: %p with %d refs, want the original %p with %d", db, w2, r, w, refs)
	}
	if w2, _ := ftWriter(db2); w2 != nil {
		t.Errorf("the failed instance's writer for %s is still live", db2)
	}
	if n := ftFDs(t, db2); n != 0 {
		t.Errorf("%d file descriptors still open on %s", n, db2)
	}
	if n := ftFDs(t, db); n != fds {
		t.Errorf("%d file descriptors open on %s, %d before the reload", n, db, fds)
	}
	if got := w.options(); got != oldOpts {
		t.Errorf("after the failed reload the writer for %s runs with the failed Corefile's options %+v, want the running instance's %+v", db, got, oldOpts)
	}

	after := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	after.Wait()
	stopCoreDNS(t, inst)
	a1, f1 := before.results()
	a2, f2 := after.results()
	ftCheckLogged(t, append(a1, a2...), append(f1, f2...), db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
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
	port := ftFreePort(t)
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	total, flushers, sqlDBs := ftGoroutines()
	failing := ftCorefile(db, opts) + ftBlock(fmt.Sprintf(".:%d", port), db, opts, "192.0.2.9")
	if _, err := inst.Restart(corefileInput(failing)); err == nil {
		t.Fatal("reload succeeded although its port is taken")
	}
	ftSettledGoroutines(t, "after the failed reload", total, flushers, sqlDBs)
	if w, refs := ftWriter(db); w != nil {
		t.Errorf("the failed instance's writer for %s is still live with %d refs", db, refs)
	}
	if n := ftFDs(t, db); n != 0 {
		t.Errorf("%d file descriptors still open on %s", n, db)
	}
	held.Close()

	inst = ftRestart(t, inst, ftCorefile(db, opts))
	l := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 500, 0)
	l.Wait()
	stopCoreDNS(t, inst)
	if w, refs := ftWriter(db); w != nil {
		t.Errorf("after shutdown the writer for %s is still live with %d refs", db, refs)
	}
	answered, failed := l.results()
	ftCheckLogged(t, answered, failed, db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// ---- 4. Reload to another database ----

// TestLifecycleReloadChangesPath moves the database during a steady load: queries answered
// before the reload began are in the old file, queries sent after it completed in the new one,
// and every answered query is in exactly one of them.
func TestLifecycleReloadChangesPath(t *testing.T) {
	dir := t.TempDir()
	oldDB, newDB := filepath.Join(dir, "old.db"), filepath.Join(dir, "new.db")
	opts := "flush_interval 200ms"
	inst := startCoreDNS(t, ftCorefile(oldDB, opts))
	udp := ftStartLoad(t, "udp", udpAddr(inst, 0), "u", 3, 1<<30, 0)
	tcp := ftStartLoad(t, "tcp", tcpAddr(inst, 0), "t", 1, 1<<30, 0)
	udp.waitAnswers(t, 600)

	begin := time.Now()
	inst = ftRestart(t, inst, ftCorefile(newDB, opts))
	end := time.Now()
	udp.waitAnswers(t, udp.count()+600)
	udp.Stop()
	tcp.Stop()
	stopCoreDNS(t, inst)

	ua, uf := udp.results()
	ta, tf := tcp.results()
	answered := append(ua, ta...)
	per := ftCheckLogged(t, answered, append(uf, tf...), oldDB, newDB)
	var early, late, wrong int
	for _, a := range answered {
		switch {
		case a.recv.Before(begin):
			early++
			if per[0][a.name] != 1 {
				wrong++
				t.Errorf("%s was answered before the reload but is not in the old database", a.name)
			}
		case a.sent.After(end):
			late++
			if per[1][a.name] != 1 {
				wrong++
				t.Errorf("%s was sent after the reload but is not in the new database", a.name)
			}
		}
		if wrong > 5 {
			break
		}
	}
	t.Logf("%d answered: %d before the reload, %d after, %d during it; old %d rows, new %d rows",
		len(answered), early, late, len(answered)-early-late, ftCountRows(t, oldDB, ""), ftCountRows(t, newDB, ""))
	if early == 0 || late == 0 {
		t.Errorf("no queries before (%d) or after (%d) the reload", early, late)
	}
	if w, _ := ftWriter(oldDB); w != nil {
		t.Errorf("the old database's writer is still live")
	}
	ftCheckAccounting(t, oldDB, ftCountRows(t, oldDB, ""), 0)
	ftCheckAccounting(t, newDB, ftCountRows(t, newDB, ""), 0)
}

// ---- 5. Several server blocks ----

// TestLifecycleTwoBlocksOneFile has two server blocks on two ports logging to the same file
// under load: one writer, and each port's queries are its rows.
func TestLifecycleTwoBlocksOneFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	opts := "flush_interval 200ms"
	p1, p2 := ftFreePort(t), ftFreePort(t)
	inst := startCoreDNS(t, ftBlock(fmt.Sprintf(".:%d", p1), db, opts, "192.0.2.1")+
		ftBlock(fmt.Sprintf(".:%d", p2), db, opts, "192.0.2.2"))
	if _, refs := ftWriter(db); refs != 2 {
		t.Errorf("writer refs = %d, want 2 (one writer shared by both blocks)", refs)
	}
	l1 := ftStartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p1), "one", 2, 1000, 0)
	l2 := ftStartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p2), "two", 2, 1000, 0)
	l1.Wait()
	l2.Wait()
	stopCoreDNS(t, inst)

	a1, f1 := l1.results()
	a2, f2 := l2.results()
	ftCheckLogged(t, append(a1, a2...), append(f1, f2...), db)
	for i, a := range [][]ftAnswer{a1, a2} {
		server := fmt.Sprintf("dns://127.0.0.1:%d", []int{p1, p2}[i])
		prefix := []string{"one-", "two-"}[i]
		if n := ftCountRows(t, db, "WHERE server = ? AND qname LIKE ?", server, prefix+"%"); n < int64(len(a)) {
			t.Errorf("%s: %d rows for its own queries, want %d", server, n, len(a))
		}
		if n := ftCountRows(t, db, "WHERE server = ? AND qname NOT LIKE ?", server, prefix+"%"); n != 0 {
			t.Errorf("%s: %d rows for the other block's queries", server, n)
		}
	}
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// TestLifecycleTwoBlocksTwoFiles has two server blocks logging to two files under load: each
// file holds exactly its own block's queries.
func TestLifecycleTwoBlocksTwoFiles(t *testing.T) {
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	opts := "flush_interval 200ms"
	p1, p2 := ftFreePort(t), ftFreePort(t)
	inst := startCoreDNS(t, ftBlock(fmt.Sprintf(".:%d", p1), db1, opts, "192.0.2.1")+
		ftBlock(fmt.Sprintf(".:%d", p2), db2, "batch_size 500\n        flush_interval 300ms", "192.0.2.2"))
	l1 := ftStartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p1), "one", 2, 1000, 0)
	l2 := ftStartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", p2), "two", 2, 1000, 0)
	l1.Wait()
	l2.Wait()
	stopCoreDNS(t, inst)

	a1, f1 := l1.results()
	a2, f2 := l2.results()
	ftCheckLogged(t, a1, f1, db1)
	ftCheckLogged(t, a2, f2, db2)
	ftCheckAccounting(t, db1, ftCountRows(t, db1, ""), 0)
	ftCheckAccounting(t, db2, ftCountRows(t, db2, ""), 0)
}
