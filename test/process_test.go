package test

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestSIGTERMUnderLoad sends SIGTERM during a steady UDP and TCP load: every query answered
// before the process exited is a row, and nothing is dropped.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	s := startServer(t, "flush_interval 200ms", "")
	udp := testutil.StartLoad(t, "udp", s.dns, "u", 3, 1<<30, 0)
	tcp := testutil.StartLoad(t, "tcp", s.dns, "t", 1, 1<<30, 0)
	udp.WaitAnswers(t, 2000)
	m := s.mustScrape()

	s.stop() // the load keeps going until the servers stop
	udp.Stop()
	tcp.Stop()

	answered, failed := testutil.Results(udp, tcp)
	t.Logf("%d answered, %d unanswered; %v buffered at the signal", len(answered), len(failed), m.Get(s.db, "buffer_size"))
	testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db)
	s.checkLog("[ERROR]", "locked")
}

// TestSIGTERMFullBuffer sends SIGTERM while the buffer holds most of its capacity and the
// flusher would not write for an hour (batch_size = buffer_size, adaptive off, flush_interval
// 1h), with the load still running: the final drain writes everything.
func TestSIGTERMFullBuffer(t *testing.T) {
	t.Parallel()
	s := startServer(t, "buffer_size 10000\n        batch_size 10000\n        adaptive off\n        flush_interval 1h", "")
	fill := testutil.StartLoad(t, "udp", s.dns, "f", 4, 2000, 0)
	fill.Wait()
	m := s.mustScrape()
	if b, w := m.Get(s.db, "buffer_size"), m.Get(s.db, "written_total"); b < 7000 || w != 0 {
		t.Fatalf("before SIGTERM: %v buffered, %v written; want the buffer mostly full and nothing written", b, w)
	}
	// A steady rate during the shutdown; TestLifecycleShutdownTailBacklog (in-process) floods it.
	more := testutil.StartLoad(t, "udp", s.dns, "g", 2, 1<<30, time.Millisecond)
	more.WaitAnswers(t, 100)
	s.stop()
	more.Stop()

	answered, failed := testutil.Results(fill, more)
	t.Logf("%d answered, %d unanswered; %v buffered before the signal", len(answered), len(failed), m.Get(s.db, "buffer_size"))
	testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db)
	s.checkLog("[ERROR]")
}

// watchConns samples the process's connections to its database until the returned function
// is called, which returns the most there were at once.
func (s *server) watchConns() (stop func() int) {
	pid, most := s.cmd.Process.Pid, 0
	stopWatch := testutil.Watch(2*time.Millisecond, func() { most = max(most, testutil.Conns(pid, s.db)) })
	return func() int { stopWatch(); return most }
}

// finishReloads stops the loads and then the server, and checks what reloads must leave
// behind: every answered query a row, at most the writer's and its checkpointer's connection
// to the database at any time (a second writer would add more), no failed write, no drop.
func finishReloads(t *testing.T, s *server, conns func() int, loads ...*testutil.Load) {
	t.Helper()
	for _, l := range loads {
		l.Stop()
	}
	m := s.waitMetric("the buffer to drain", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
	s.stop()
	most := conns()

	answered, failed := testutil.Results(loads...)
	testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db)
	if most > 2 {
		t.Errorf("the process had up to %d connections to %s, want the writer's and its checkpointer's (2)", most, s.db)
	}
	if e, d := m.Get(s.db, "flush_errors_total"), m.Get(s.db, "dropped_total"); e != 0 || d != 0 {
		t.Errorf("flush errors %v, dropped %v; want none", e, d)
	}
}

// TestReloadSIGUSR1 reloads with SIGUSR1 during a steady load: an edited Corefile, then an
// invalid one (the old configuration keeps serving and logging), then other buffer options.
// Throughout, the process holds one connection to the database, no write fails (no "database
// is locked"), and every answered query is a row.
func TestReloadSIGUSR1(t *testing.T) {
	t.Parallel()
	opts := "flush_interval 200ms"
	s := startServer(t, opts, "")
	conns := s.watchConns()
	udp := testutil.StartLoad(t, "udp", s.dns, "u", 3, 1<<30, 0)
	tcp := testutil.StartLoad(t, "tcp", s.dns, "t", 1, 1<<30, 0)

	udp.WaitAnswers(t, 1000)
	s.write(s.config(opts, "", "192.0.2.2"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("Reloading complete", 1, 20*time.Second)

	udp.WaitAnswers(t, udp.Count()+1000)
	s.write(s.config(opts+"\n        no_such_option 1", "", "192.0.2.3"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("SIGUSR1: starting with listener file descriptors", 1, 20*time.Second)

	udp.WaitAnswers(t, udp.Count()+1000)
	s.write(s.config("buffer_size 20000\n        batch_size 500\n        flush_interval 300ms", "", "192.0.2.4"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("Reloading complete", 2, 20*time.Second)

	udp.WaitAnswers(t, udp.Count()+1000)
	finishReloads(t, s, conns, udp, tcp)
	if !strings.Contains(s.out.String(), "no_such_option") {
		t.Errorf("the failed reload's error is not logged:\n%s", s.out)
	}
	s.checkLog("locked")
}

// TestReloadPlugin edits the Corefile under a steady load and lets the reload plugin pick it
// up, twice: one connection throughout, no lock errors, every answered query a row.
func TestReloadPlugin(t *testing.T) {
	t.Parallel()
	opts := "flush_interval 200ms"
	s := startServer(t, opts, "reload 2s 1s")
	conns := s.watchConns()
	udp := testutil.StartLoad(t, "udp", s.dns, "u", 2, 1<<30, time.Millisecond)
	tcp := testutil.StartLoad(t, "tcp", s.dns, "t", 1, 1<<30, time.Millisecond)

	udp.WaitAnswers(t, 500)
	s.write(s.config(opts, "reload 2s 1s", "192.0.2.2"))
	s.waitLog("Reloading complete", 1, 20*time.Second)
	udp.WaitAnswers(t, udp.Count()+500)
	s.write(s.config("buffer_size 20000\n        flush_interval 300ms", "reload 2s 1s", "192.0.2.3"))
	s.waitLog("Reloading complete", 2, 20*time.Second)
	udp.WaitAnswers(t, udp.Count()+500)
	finishReloads(t, s, conns, udp, tcp)
	s.checkLog("locked", "[ERROR]")
}

// TestKill9 kills the process with SIGKILL during a steady load, with a flusher that writes
// only every 3000 entries. CoreDNS then starts again on the crashed files as they are and logs
// again; the database passes integrity_check; every row the metrics reported written before the
// kill is there; and the rows missing are bounded by what the buffer held when scraped just
// before the kill (plus what was answered after that scrape).
func TestKill9(t *testing.T) {
	t.Parallel()
	testutil.NeedSQLite3(t)
	opts := "buffer_size 10000\n        batch_size 3000\n        adaptive off\n        flush_interval 1h"
	s := startServer(t, opts, "")
	const workers = 4
	l := testutil.StartLoad(t, "udp", s.dns, "k", workers, 1<<30, 0)
	// Kill at a moment the buffer holds a good part of a batch. A scrape that fails (a busy
	// machine can make one time out) is tried again; before and m are always from one turn.
	var m testutil.Metrics
	var before int
	testutil.WaitFor(t, 10*time.Second, "the buffer to hold 1000 entries", func() bool {
		n := l.Count()
		got, err := s.scrape()
		if err != nil {
			return false
		}
		before, m = n, got
		return before > 4000 && m.Get(s.db, "buffer_size") > 1000
	})
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)
	l.Stop()
	answered, failed := l.Results()
	after := len(answered) - before // answered after the scrape
	answered = append(answered, s.probes...)
	s.checkLog("[ERROR]")

	// Start again on the files exactly as the kill left them (WAL and all), and log more.
	s.probes = nil
	s.start()
	again := testutil.StartLoad(t, "udp", s.dns, "r", 2, 250, 0)
	again.Wait()
	s.stop()
	if out := testutil.SQLite3(t, s.db, "PRAGMA integrity_check"); out != "ok" {
		t.Fatalf("integrity_check: %s", out)
	}
	rows := testutil.Names(t, s.db)

	// After the restart: exactly the queries answered.
	a2, f2 := again.Results()
	restarted := map[string]bool{}
	for _, n := range append(a2, s.probes...) {
		restarted[n] = true
		if rows[n] != 1 {
			t.Errorf("after restart: %s has %d rows, want 1", n, rows[n])
		}
	}
	for _, n := range f2 {
		restarted[n] = true
	}

	// Before the kill: no duplicates or strangers, and few missing.
	buffered, written := m.Get(s.db, "buffer_size"), m.Get(s.db, "written_total")
	isAnswered := map[string]bool{}
	total, missing := 0, 0
	for _, n := range answered {
		isAnswered[n] = true
		if rows[n] == 0 {
			missing++
		}
	}
	isFailed := map[string]bool{}
	for _, n := range failed {
		isFailed[n] = true
	}
	for n, c := range rows {
		if restarted[n] {
			continue
		}
		total += c
		if c > 1 || !isAnswered[n] && !isFailed[n] {
			t.Errorf("row %s (x%d) is not one answered query", n, c)
		}
	}
	t.Logf("killed with %v buffered, %v written; %d answered (%d after the scrape), %d rows, %d missing",
		buffered, written, len(answered), after, total, missing)
	if float64(total) < written {
		t.Errorf("%d rows, but %v were reported written before the kill", total, written)
	}
	// Replies go out before their entry is queued, so up to one per worker may be answered
	// but not yet counted in buffer_size at the scrape.
	if bound := int(buffered) + after + workers; missing > bound {
		t.Errorf("%d answered queries missing, more than the %v buffered + %d answered after the scrape + %d in flight", missing, buffered, after, workers)
	}
	s.checkLog("[ERROR]")
}

var writeFailedRE = regexp.MustCompile(`(?m)^\[ERROR\] plugin/querylog: Writing \d+ entries to .* failed`)

// TestLockedDatabase holds the write lock (BEGIN EXCLUSIVE, from the test process) for 4s,
// longer than the 1s busy timeout, under a steady load. Flushes fail and are retried with backoff
// (flush_errors_total rises), the error is logged at most once per 10s, nothing is dropped,
// and once the lock is released every buffered entry is written.
func TestLockedDatabase(t *testing.T) {
	t.Parallel()
	s := startServer(t, "flush_interval 200ms\n        adaptive 100ms 500ms", "")
	l := testutil.StartLoad(t, "udp", s.dns, "l", 3, 1<<30, time.Millisecond)
	l.WaitAnswers(t, 300)
	s.waitMetric("a first write", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "written_total") > 0 })

	unlock := testutil.Lock(t, s.db)
	held := time.Now()
	s.waitMetric("a failed flush", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "flush_errors_total") > 0 })
	time.Sleep(4*time.Second - time.Since(held))
	during := s.mustScrape()
	unlock()
	heldFor := time.Since(held)
	if b := during.Get(s.db, "buffer_size"); b == 0 {
		t.Errorf("nothing buffered while the database was locked")
	}
	pending := s.mustScrape().Get(s.db, "enqueued_total")
	s.waitMetric("everything buffered during the lock to be written", 15*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "written_total") >= pending })
	l.WaitAnswers(t, l.Count()+300)
	l.Stop()
	m := s.waitMetric("the buffer to drain", 15*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
	s.stop()

	answered, failed := l.Results()
	testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db)
	errs := m.Get(s.db, "flush_errors_total")
	lines := len(writeFailedRE.FindAllString(s.out.String(), -1))
	t.Logf("lock held %s: %v failed flushes, %d log lines", heldFor.Round(time.Millisecond), errs, lines)
	if errs < 2 {
		t.Errorf("flush_errors_total = %v, want several retries during %s", errs, heldFor)
	}
	if max := int(heldFor/(10*time.Second)) + 1; lines < 1 || lines > max {
		t.Errorf("%d 'Writing ... failed' log lines in %s, want 1..%d (one per 10s)", lines, heldFor, max)
	}
	if d := m.Get(s.db, "dropped_total"); d != 0 {
		t.Errorf("dropped %v, want 0", d)
	}
	s.checkLog("WARNING: DATA RACE")
}

// TestOutageDrops holds the write lock (from the test process) while more queries arrive than
// the buffer (10000) can hold: the excess is dropped and counted as buffer_full, dropped_total
// keeps rising during the outage (what the QueryBufferDropping alert watches), a summary line
// is logged every 10s, and after the lock is released logging resumes without a restart.
// Every answered query is a row or a counted drop.
func TestOutageDrops(t *testing.T) {
	t.Parallel()
	s := startServer(t, "buffer_size 10000\n        batch_size 1000\n        flush_interval 200ms\n        adaptive 100ms 500ms", "")
	warm := testutil.StartLoad(t, "udp", s.dns, "w", 2, 100, 0)
	warm.Wait()
	s.waitMetric("the first writes", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })

	unlock := testutil.Lock(t, s.db)
	flood := testutil.StartLoad(t, "udp", s.dns, "f", 6, 2500, 0)
	flood.Wait()
	m1 := s.waitMetric("drops", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "dropped_total", "reason", "buffer_full") > 0 })
	if b := m1.Get(s.db, "buffer_size"); b != 10000 {
		t.Errorf("buffer_size %v during the outage, want 10000 (full)", b)
	}
	more := testutil.StartLoad(t, "udp", s.dns, "m", 2, 500, 0)
	more.Wait()
	m2 := s.waitMetric("more drops", 10*time.Second, func(m testutil.Metrics) bool {
		return m.Get(s.db, "dropped_total", "reason", "buffer_full") > m1.Get(s.db, "dropped_total", "reason", "buffer_full")
	})
	summary := regexp.MustCompile(`\[ERROR\] plugin/querylog: Dropped (\d+) entries for ` + regexp.QuoteMeta(s.db) + ` in the last 10s`)
	if !testutil.Poll(15*time.Second, 50*time.Millisecond, func() bool { return summary.MatchString(s.out.String()) }) {
		t.Fatalf("no drop summary line in the log within 15s:\n%s", s.out)
	}
	unlock()

	s.waitMetric("the buffer to drain after the outage", 20*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
	after := testutil.StartLoad(t, "udp", s.dns, "a", 2, 500, 0)
	after.Wait()
	m := s.waitMetric("the buffer to drain", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
	s.stop()

	answered, failed := testutil.Results(warm, flood, more, after)
	answered = append(answered, s.probes...)
	rows := testutil.Names(t, s.db)
	total := 0
	for _, c := range rows {
		total += c
	}
	dropped := m.Get(s.db, "dropped_total")
	full := m.Get(s.db, "dropped_total", "reason", "buffer_full")
	enq, written := m.Get(s.db, "enqueued_total"), m.Get(s.db, "written_total")
	t.Logf("%d answered (%d unanswered), %d rows, %v dropped (%v buffer_full), dropped during the outage %v then %v; summaries: %q",
		len(answered), len(failed), total, dropped, full, m1.Get(s.db, "dropped_total"), m2.Get(s.db, "dropped_total"), summary.FindAllString(s.out.String(), -1))
	if dropped != full {
		t.Errorf("dropped %v, of which buffer_full %v; want all buffer_full", dropped, full)
	}
	if enq != written+dropped || written != float64(total) {
		t.Errorf("enqueued %v, written %v, dropped %v, rows %d: want enqueued = written + dropped, written = rows", enq, written, dropped, total)
	}
	if float64(len(answered)) > enq || enq > float64(len(answered)+len(failed)) {
		t.Errorf("enqueued %v for %d answered and %d unanswered queries", enq, len(answered), len(failed))
	}
	if float64(len(answered)) > float64(total)+dropped {
		t.Errorf("%d answered > %d rows + %v dropped", len(answered), total, dropped)
	}
	a, _ := after.Results()
	for _, n := range a {
		if rows[n] != 1 {
			t.Errorf("after the outage: %s has %d rows, want 1", n, rows[n])
		}
	}
	s.checkLog("WARNING: DATA RACE")
}
