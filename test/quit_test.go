package test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// quitOpts write only full batches of 1000 (the timer waits an hour), so that after a load has
// stopped the buffer holds a known number of entries, less than a batch, that nothing writes.
const quitOpts = "buffer_size 10000\n        batch_size 1000\n        adaptive off\n        flush_interval 1h\n        shutdown_timeout 30s"

// fillForQuit sends 2400 queries and waits until the flusher has written the full batches;
// it returns the answered names and the scrape then: what is written and what is buffered.
func fillForQuit(t *testing.T, s *server) ([]string, testutil.Metrics) {
	t.Helper()
	l := testutil.StartLoad(t, "udp", s.dns, "q", 4, 600, 0)
	l.Wait()
	answered, failed := l.Results()
	if len(failed) > 0 {
		t.Fatalf("%d queries unanswered", len(failed))
	}
	answered = append(answered, s.probes...)
	m := s.waitMetric("full batches to be written", 10*time.Second, func(m testutil.Metrics) bool {
		a := m.Account(s.db)
		return a.Enqueued == float64(len(answered)) && a.Written == float64(len(answered)/1000*1000)
	})
	return answered, m
}

// checkQuitLoss checks the database after an exit without drain: it passes integrity_check,
// holds exactly what was written before the signal, and misses exactly what was buffered.
func checkQuitLoss(t *testing.T, s *server, answered []string, m testutil.Metrics) {
	t.Helper()
	if out := testutil.SQLite3(t, s.db, "PRAGMA integrity_check"); out != "ok" {
		t.Fatalf("integrity_check: %s", out)
	}
	rows := testutil.Names(t, s.db)
	missing := 0
	for _, n := range answered {
		switch rows[n] {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("%s has %d rows", n, rows[n])
		}
	}
	a := m.Account(s.db)
	t.Logf("%d answered: %v written before the signal, %v buffered; %d rows, %d missing", len(answered), a.Written, a.Buffered, len(rows), missing)
	if float64(len(rows)) != a.Written || float64(missing) != a.Buffered || a.Buffered == 0 {
		t.Errorf("%d rows and %d missing; want the %v written and the %v buffered (not 0)", len(rows), missing, a.Written, a.Buffered)
	}
}

// TestSIGQUITExitsWithoutDrain: CoreDNS (caddy's signal handling) exits on SIGQUIT at once,
// with status 0 and no shutdown callbacks, so querylog cannot drain. What the buffer held is
// lost, and nothing else; the database stays consistent. The runbook's "What is lost when"
// table says so.
func TestSIGQUITExitsWithoutDrain(t *testing.T) {
	t.Parallel()
	testutil.NeedSQLite3(t)
	s := startServer(t, quitOpts, "")
	answered, m := fillForQuit(t, s)
	s.signal(syscall.SIGQUIT)
	if code := s.wait(5 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGQUIT, want 0", code)
	}
	if out := s.out.String(); !strings.Contains(out, "SIGQUIT: Quitting process immediately") {
		t.Errorf("no 'Quitting process immediately' in the output:\n%s", out)
	}
	checkQuitLoss(t, s, answered, m)
	s.checkLog("[ERROR]")
}

// TestSIGINTTwiceExitsWithoutDrain: the first SIGINT starts the shutdown callbacks, so querylog
// drains; here another process holds the write lock, so the drain keeps retrying. A second
// SIGINT makes caddy exit at once with status 2: what the drain had not written is lost, and
// nothing else; the database stays consistent.
func TestSIGINTTwiceExitsWithoutDrain(t *testing.T) {
	t.Parallel()
	testutil.NeedSQLite3(t)
	s := startServer(t, quitOpts, "")
	answered, m := fillForQuit(t, s)
	unlock := testutil.Lock(t, s.db)
	s.signal(syscall.SIGINT)
	s.waitLog("SIGINT: Shutting down", 1, 10*time.Second)
	// The drain's first write fails on the lock (after busy_timeout), and it goes on retrying.
	s.waitLog(" entries to "+s.db+" failed", 1, 10*time.Second)
	select {
	case <-s.exited:
		t.Fatalf("coredns exited during the drain, with the database locked:\n%s", s.out)
	default:
	}
	s.signal(syscall.SIGINT)
	if code := s.wait(5 * time.Second); code != 2 {
		t.Errorf("exit status %d after a second SIGINT, want 2", code)
	}
	unlock()
	if out := s.out.String(); !strings.Contains(out, "SIGINT: Force quit") {
		t.Errorf("no 'Force quit' in the output:\n%s", out)
	}
	checkQuitLoss(t, s, answered, m)
}
