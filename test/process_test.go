package test

import (
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- 1. SIGTERM ----

// TestSIGTERMUnderLoad sends SIGTERM during a steady UDP and TCP load: every query answered
// before the process exited is a row, and nothing is dropped.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	s := newServer(t, "flush_interval 200ms", "")
	s.start()
	udp := startLoad(t, "udp", s.dns, "u", 3, 1<<30, 0)
	tcp := startLoad(t, "tcp", s.dns, "t", 1, 1<<30, 0)
	udp.waitAnswers(t, 2000)
	m := s.mustScrape()

	s.stop() // the load keeps going until the servers stop
	udp.Stop()
	tcp.Stop()

	answered, failed := results(udp, tcp)
	t.Logf("%d answered, %d unanswered; %v buffered at the signal", len(answered), len(failed), m.get(s.db, "buffer_size"))
	checkLogged(t, s.db, append(answered, s.probes...), failed)
	s.checkLog("[ERROR]", "locked")
}

// TestSIGTERMFullBuffer sends SIGTERM while the buffer holds most of its capacity and the
// flusher would not write for an hour (batch_size = buffer_size, adaptive off, flush_interval
// 1h), with the load still running: the final drain writes everything.
func TestSIGTERMFullBuffer(t *testing.T) {
	t.Parallel()
	s := newServer(t, "buffer_size 10000\n        batch_size 10000\n        adaptive off\n        flush_interval 1h", "")
	s.start()
	fill := startLoad(t, "udp", s.dns, "f", 4, 2000, 0)
	fill.Wait()
	m := s.mustScrape()
	if b, w := m.get(s.db, "buffer_size"), m.get(s.db, "written_total"); b < 7000 || w != 0 {
		t.Fatalf("before SIGTERM: %v buffered, %v written; want the buffer mostly full and nothing written", b, w)
	}
	// A steady rate during the shutdown; TestLifecycleShutdownTailBacklog (in-process) floods it.
	more := startLoad(t, "udp", s.dns, "g", 2, 1<<30, time.Millisecond)
	more.waitAnswers(t, 100)
	s.stop()
	more.Stop()

	answered, failed := results(fill, more)
	t.Logf("%d answered, %d unanswered; %v buffered before the signal", len(answered), len(failed), m.get(s.db, "buffer_size"))
	checkLogged(t, s.db, append(answered, s.probes...), failed)
	s.checkLog("[ERROR]")
}

// ---- 2, 3. Reload: SIGUSR1 and the reload plugin ----

// watchFDs samples the process's connections to db until stopped and returns the maximum.
func watchFDs(s *server) (stop func() int) {
	var max atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	pid := s.cmd.Process.Pid
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			if n := int64(dbFDs(pid, s.db)); n > max.Load() {
				max.Store(n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() int { close(done); <-finished; return int(max.Load()) }
}

// TestReloadSIGUSR1 reloads with SIGUSR1 during a steady load: an edited Corefile, then an
// invalid one (the old configuration keeps serving and logging), then other buffer options.
// Throughout, the process holds one connection to the database, no write fails (no "database
// is locked"), and every answered query is a row.
func TestReloadSIGUSR1(t *testing.T) {
	t.Parallel()
	opts := "flush_interval 200ms"
	s := newServer(t, opts, "")
	s.start()
	fds := watchFDs(s)
	udp := startLoad(t, "udp", s.dns, "u", 3, 1<<30, 0)
	tcp := startLoad(t, "tcp", s.dns, "t", 1, 1<<30, 0)

	udp.waitAnswers(t, 1000)
	s.write(s.config(opts, "", "192.0.2.2"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("Reloading complete", 1, 20*time.Second)

	udp.waitAnswers(t, udp.count()+1000)
	s.write(s.config(opts+"\n        no_such_option 1", "", "192.0.2.3"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("SIGUSR1: starting with listener file descriptors", 1, 20*time.Second)

	udp.waitAnswers(t, udp.count()+1000)
	s.write(s.config("buffer_size 20000\n        batch_size 500\n        flush_interval 300ms", "", "192.0.2.4"))
	s.signal(syscall.SIGUSR1)
	s.waitLog("Reloading complete", 2, 20*time.Second)

	udp.waitAnswers(t, udp.count()+1000)
	udp.Stop()
	tcp.Stop()
	m := s.waitMetric("the buffer to drain", 10*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })
	s.stop()
	maxFDs := fds()

	answered, failed := results(udp, tcp)
	checkLogged(t, s.db, append(answered, s.probes...), failed)
	// The writer's connection and its checkpointer's; a second writer would add more.
	if maxFDs > 2 {
		t.Errorf("the process had up to %d connections to %s, want the writer's and its checkpointer's (2)", maxFDs, s.db)
	}
	if e := m.get(s.db, "flush_errors_total"); e != 0 {
		t.Errorf("flush errors: %v", e)
	}
	if d := m.get(s.db, "dropped_total"); d != 0 {
		t.Errorf("dropped: %v", d)
	}
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
	s := newServer(t, opts, "reload 2s 1s")
	s.start()
	fds := watchFDs(s)
	udp := startLoad(t, "udp", s.dns, "u", 2, 1<<30, time.Millisecond)
	tcp := startLoad(t, "tcp", s.dns, "t", 1, 1<<30, time.Millisecond)

	udp.waitAnswers(t, 500)
	s.write(s.config(opts, "reload 2s 1s", "192.0.2.2"))
	s.waitLog("Reloading complete", 1, 20*time.Second)
	udp.waitAnswers(t, udp.count()+500)
	s.write(s.config("buffer_size 20000\n        flush_interval 300ms", "reload 2s 1s", "192.0.2.3"))
	s.waitLog("Reloading complete", 2, 20*time.Second)
	udp.waitAnswers(t, udp.count()+500)
	udp.Stop()
	tcp.Stop()
	m := s.waitMetric("the buffer to drain", 10*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })
	s.stop()
	maxFDs := fds()

	answered, failed := results(udp, tcp)
	checkLogged(t, s.db, append(answered, s.probes...), failed)
	// The writer's connection and its checkpointer's; a second writer would add more.
	if maxFDs > 2 {
		t.Errorf("the process had up to %d connections to %s, want the writer's and its checkpointer's (2)", maxFDs, s.db)
	}
	if e, d := m.get(s.db, "flush_errors_total"), m.get(s.db, "dropped_total"); e != 0 || d != 0 {
		t.Errorf("flush errors %v, dropped %v; want none", e, d)
	}
	s.checkLog("locked", "[ERROR]")
}

// ---- 6. kill -9 ----

// TestKill9 kills the process with SIGKILL during a steady load, with a flusher that writes
// only every 3000 entries. CoreDNS then starts again on the crashed files as they are and logs
// again; the database passes integrity_check; every row the metrics reported written before the
// kill is there; and the rows missing are bounded by what the buffer held when scraped just
// before the kill (plus what was answered after that scrape).
func TestKill9(t *testing.T) {
	t.Parallel()
	needSQLite3(t)
	opts := "buffer_size 10000\n        batch_size 3000\n        adaptive off\n        flush_interval 1h"
	s := newServer(t, opts, "")
	s.start()
	const workers = 4
	l := startLoad(t, "udp", s.dns, "k", workers, 1<<30, 0)
	// Kill at a moment the buffer holds a good part of a batch.
	var m metrics
	var before int
	deadline := time.Now().Add(60 * time.Second)
	for {
		before = l.count()
		m = s.mustScrape()
		if b := m.get(s.db, "buffer_size"); before > 4000 && b > 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the buffer never held 1000 entries: %v", m.querylog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)
	l.Stop()
	answered, failed := l.results()
	after := len(answered) - before // answered after the scrape
	answered = append(answered, s.probes...)
	s.checkLog("[ERROR]")

	// Start again on the files exactly as the kill left them (WAL and all), and log more.
	s.probes = nil
	s.start()
	again := startLoad(t, "udp", s.dns, "r", 2, 250, 0)
	again.Wait()
	s.stop()
	if out := sqlite3(t, s.db, "PRAGMA integrity_check"); out != "ok" {
		t.Fatalf("integrity_check: %s", out)
	}
	rows := names(t, s.db)

	// After the restart: exactly the queries answered.
	a2, f2 := again.results()
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
	buffered, written := m.get(s.db, "buffer_size"), m.get(s.db, "written_total")
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

// ---- 7, 10. Another process holds the write lock ----

var writeFailedRE = regexp.MustCompile(`(?m)^\[ERROR\] plugin/querylog: Writing \d+ entries to .* failed`)

// TestLockedDatabase has the sqlite3 tool hold the write lock (BEGIN EXCLUSIVE) for 4s, longer
// than the 1s busy timeout, under a steady load. Flushes fail and are retried with backoff
// (flush_errors_total rises), the error is logged at most once per 10s, nothing is dropped,
// and once the lock is released every buffered entry is written.
func TestLockedDatabase(t *testing.T) {
	t.Parallel()
	needSQLite3(t)
	s := newServer(t, "flush_interval 200ms\n        adaptive 100ms 500ms", "")
	s.start()
	l := startLoad(t, "udp", s.dns, "l", 3, 1<<30, time.Millisecond)
	l.waitAnswers(t, 300)
	s.waitMetric("a first write", 10*time.Second, func(m metrics) bool { return m.get(s.db, "written_total") > 0 })

	unlock := lock(t, s.db)
	held := time.Now()
	s.waitMetric("a failed flush", 10*time.Second, func(m metrics) bool { return m.get(s.db, "flush_errors_total") > 0 })
	time.Sleep(4*time.Second - time.Since(held))
	during := s.mustScrape()
	unlock()
	heldFor := time.Since(held)
	if b := during.get(s.db, "buffer_size"); b == 0 {
		t.Errorf("nothing buffered while the database was locked")
	}
	pending := s.mustScrape().get(s.db, "enqueued_total")
	s.waitMetric("everything buffered during the lock to be written", 15*time.Second, func(m metrics) bool { return m.get(s.db, "written_total") >= pending })
	l.waitAnswers(t, l.count()+300)
	l.Stop()
	m := s.waitMetric("the buffer to drain", 15*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })
	s.stop()

	answered, failed := l.results()
	checkLogged(t, s.db, append(answered, s.probes...), failed)
	errs := m.get(s.db, "flush_errors_total")
	lines := len(writeFailedRE.FindAllString(s.out.String(), -1))
	t.Logf("lock held %s: %v failed flushes, %d log lines", heldFor.Round(time.Millisecond), errs, lines)
	if errs < 2 {
		t.Errorf("flush_errors_total = %v, want several retries during %s", errs, heldFor)
	}
	if max := int(heldFor/(10*time.Second)) + 1; lines < 1 || lines > max {
		t.Errorf("%d 'Writing ... failed' log lines in %s, want 1..%d (one per 10s)", lines, heldFor, max)
	}
	if d := m.get(s.db, "dropped_total"); d != 0 {
		t.Errorf("dropped %v, want 0", d)
	}
	s.checkLog("WARNING: DATA RACE")
}

// TestOutageDrops holds the write lock while more queries arrive than the buffer (10000) can
// hold: the excess is dropped and counted as buffer_full, dropped_total keeps rising during
// the outage (what the QueryBufferDropping alert watches), a summary line is logged every 10s,
// and after the lock is released logging resumes without a restart. Every answered query is a
// row or a counted drop.
func TestOutageDrops(t *testing.T) {
	t.Parallel()
	needSQLite3(t)
	s := newServer(t, "buffer_size 10000\n        batch_size 1000\n        flush_interval 200ms\n        adaptive 100ms 500ms", "")
	s.start()
	warm := startLoad(t, "udp", s.dns, "w", 2, 100, 0)
	warm.Wait()
	s.waitMetric("the first writes", 10*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })

	unlock := lock(t, s.db)
	flood := startLoad(t, "udp", s.dns, "f", 6, 2500, 0)
	flood.Wait()
	m1 := s.waitMetric("drops", 10*time.Second, func(m metrics) bool { return m.get(s.db, "dropped_total", "reason", "buffer_full") > 0 })
	if b := m1.get(s.db, "buffer_size"); b != 10000 {
		t.Errorf("buffer_size %v during the outage, want 10000 (full)", b)
	}
	more := startLoad(t, "udp", s.dns, "m", 2, 500, 0)
	more.Wait()
	m2 := s.waitMetric("more drops", 10*time.Second, func(m metrics) bool {
		return m.get(s.db, "dropped_total", "reason", "buffer_full") > m1.get(s.db, "dropped_total", "reason", "buffer_full")
	})
	summary := regexp.MustCompile(`\[ERROR\] plugin/querylog: Dropped (\d+) entries for ` + regexp.QuoteMeta(s.db) + ` in the last 10s`)
	deadline := time.Now().Add(15 * time.Second)
	for !summary.MatchString(s.out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no drop summary line in the log within 15s:\n%s", s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	unlock()

	s.waitMetric("the buffer to drain after the outage", 20*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })
	after := startLoad(t, "udp", s.dns, "a", 2, 500, 0)
	after.Wait()
	m := s.waitMetric("the buffer to drain", 10*time.Second, func(m metrics) bool { return m.get(s.db, "buffer_size") == 0 })
	s.stop()

	answered, failed := results(warm, flood, more, after)
	answered = append(answered, s.probes...)
	rows := names(t, s.db)
	total := 0
	for _, c := range rows {
		total += c
	}
	dropped := m.get(s.db, "dropped_total")
	full := m.get(s.db, "dropped_total", "reason", "buffer_full")
	enq, written := m.get(s.db, "enqueued_total"), m.get(s.db, "written_total")
	t.Logf("%d answered (%d unanswered), %d rows, %v dropped (%v buffer_full), dropped during the outage %v then %v; summaries: %q",
		len(answered), len(failed), total, dropped, full, m1.get(s.db, "dropped_total"), m2.get(s.db, "dropped_total"), summary.FindAllString(s.out.String(), -1))
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
	for _, l := range []*loader{after} {
		a, _ := l.results()
		for _, n := range a {
			if rows[n] != 1 {
				t.Errorf("after the outage: %s has %d rows, want 1", n, rows[n])
			}
		}
	}
	s.checkLog("WARNING: DATA RACE")
}
