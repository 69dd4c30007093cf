package querylog

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/testutil"
)

// writerOpts is a writer configuration for flusher tests: no timer flush unless a test sets
// one, no retention, size cap or disk guard.
func writerOpts(path string) options {
	return options{
		path:            path,
		bufferSize:      1000,
		batchSize:       10,
		flushInterval:   time.Hour,
		adaptive:        false,
		minInterval:     time.Hour,
		maxInterval:     time.Hour,
		watermark:       80,
		shutdownTimeout: 5 * time.Second,
	}
}

func tempDB(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "q.db")
}

// testWriter acquires a writer and releases it at the end of the test unless the test did.
func testWriter(t *testing.T, o options) *writer {
	t.Helper()
	return tunedWriter(t, o, tuning{})
}

// tunedWriter is testWriter with the pace tu.
func tunedWriter(t *testing.T, o options, tu tuning) *writer {
	t.Helper()
	w, err := acquire(o, tu)
	if err != nil {
		t.Fatalf("acquire(%s): %v", o.path, err)
	}
	t.Cleanup(func() {
		if held(w) {
			w.release(w.options(), false)
		}
	})
	return w
}

// logN hands entries from..from+n-1 of server to w.
func logN(w *writer, server string, from, n int) {
	for i := from; i < from+n; i++ {
		w.log(entryOf(&w.labels, queryRow{ts: time.Now().UnixMilli(), server: server, qname: fmt.Sprintf("q%d.example.", i),
			client: "192.0.2.1", qtype: 1, qclass: 1}))
	}
}

func TestFlushBatchSizeTrigger(t *testing.T) {
	t.Parallel()
	o := writerOpts(tempDB(t))
	o.batchSize = 10
	w := testWriter(t, o)

	logN(w, "dns://:53", 0, 10)
	testutil.WaitFor(t, 3*time.Second, "a batch of 10 to be written long before the 1h interval", func() bool {
		return totalsOf(w.buf).written == 10
	})
	if n := testutil.CountRows(t, o.path, ""); n != 10 {
		t.Errorf("rows = %d, want 10", n)
	}

	// Fewer than a batch wait for the interval, even when the flusher has a turn.
	logN(w, "dns://:53", 10, 9)
	flusherTurn(t, w)
	if tot := totalsOf(w.buf); tot.written != 10 || tot.size != 9 {
		t.Fatalf("9 entries: written %d, buffered %d; want 10, 9", tot.written, tot.size)
	}
	logN(w, "dns://:53", 19, 1)
	testutil.WaitFor(t, 3*time.Second, "the second batch", func() bool { return totalsOf(w.buf).written == 20 })
	if got := batchRows(t, o.path); got != "[10 10]" {
		t.Errorf("batches of %s rows, want [10 10]", got)
	}

	// 25 at once: whole batches go, the rest waits.
	logN(w, "dns://:53", 20, 25)
	testutil.WaitFor(t, 3*time.Second, "two more batches", func() bool {
		tot := totalsOf(w.buf)
		return tot.written == 40 && tot.size == 5
	})
	if n := testutil.CountRows(t, o.path, ""); n != 40 {
		t.Errorf("rows = %d, want 40", n)
	}
	if got := batchRows(t, o.path); got != "[10 10 10 10]" {
		t.Errorf("batches of %s rows, want [10 10 10 10]", got)
	}
	w.release(w.options(), false)
	if n := testutil.CountRows(t, o.path, ""); n != 45 {
		t.Errorf("rows after release = %d, want 45", n)
	}
}

func TestFlushIntervalTrigger(t *testing.T) {
	t.Parallel()
	const interval = 150 * time.Millisecond
	o := writerOpts(tempDB(t))
	o.batchSize = 100
	o.flushInterval = interval
	start := time.Now()
	w := testWriter(t, o)
	logN(w, "dns://:53", 0, 5)
	testutil.WaitFor(t, 3*time.Second, "5 entries to be written after the interval", func() bool {
		return totalsOf(w.buf).written == 5
	})
	if took := time.Since(start); took < interval {
		t.Errorf("5 entries (batch_size 100) written after %s, before the %s interval", took, interval)
	}
	if n := testutil.CountRows(t, o.path, ""); n != 5 {
		t.Errorf("rows = %d, want 5", n)
	}
	// And again at the next interval.
	logN(w, "dns://:53", 5, 3)
	testutil.WaitFor(t, 3*time.Second, "the next interval's entries", func() bool {
		return totalsOf(w.buf).written == 8
	})
	if g := w.gauges(); g.lastFlush == 0 || g.interval != interval {
		t.Errorf("gauges after flushes: %+v", g)
	}
}

func TestFlushNextInterval(t *testing.T) {
	t.Parallel()
	const (
		lo   = 100 * time.Millisecond
		base = time.Second
		hi   = 5 * time.Second
	)
	tests := []struct {
		fill     int // of 100
		adaptive bool
		want     time.Duration
	}{
		{0, true, hi},
		{1, true, hi},
		{19, true, hi},
		{20, true, base},
		{50, true, base},
		{79, true, base},
		{80, true, lo},
		{99, true, lo},
		{100, true, lo},
		{0, false, base},
		{19, false, base},
		{50, false, base},
		{80, false, base},
		{100, false, base},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("fill=%d,adaptive=%v", tc.fill, tc.adaptive), func(t *testing.T) {
			o := options{bufferSize: 100, batchSize: 100, watermark: 80, flushInterval: base,
				adaptive: tc.adaptive, minInterval: lo, maxInterval: hi}
			w := &writer{buf: newBuffer(o), opts: o}
			for i := range tc.fill {
				w.buf.enqueue(seqEntry(1, i))
			}
			f := &flusher{w: w}
			if got := f.nextInterval(); got != tc.want {
				t.Errorf("nextInterval = %s, want %s", got, tc.want)
			}
			if g := w.gauges(); g.interval != tc.want {
				t.Errorf("exported interval = %s, want %s", g.interval, tc.want)
			}
		})
	}
}

// TestFlushAdaptiveFollowsLoad checks the adaptation end to end: when the interval expires
// with the buffer at a given fill, the next interval is chosen from that fill. (The fill
// right after the buffer has been written out is always about zero, so choosing from it would
// pin the interval at MAX.)
func TestFlushAdaptiveFollowsLoad(t *testing.T) {
	t.Parallel()
	const (
		lo   = 150 * time.Millisecond
		base = 300 * time.Millisecond
		hi   = 800 * time.Millisecond
	)
	for _, tc := range []struct {
		fill int // of 100, when the first (MAX) interval expires
		want time.Duration
	}{
		{90, lo},
		{50, base},
		{5, hi},
	} {
		t.Run(fmt.Sprintf("fill=%d", tc.fill), func(t *testing.T) {
			o := writerOpts(tempDB(t))
			o.bufferSize, o.batchSize = 100, 100
			o.adaptive, o.minInterval, o.flushInterval, o.maxInterval = true, lo, base, hi
			w := testWriter(t, o)
			// Once the flusher has taken this wake-up it has chosen its first interval (from
			// the empty buffer: MAX) and waits in its loop.
			w.buf.notify <- struct{}{}
			testutil.WaitFor(t, 5*time.Second, "the flusher to start", func() bool { return len(w.buf.notify) == 0 })
			if g := w.gauges().interval; g != hi {
				t.Fatalf("first interval %s, want MAX %s", g, hi)
			}
			logN(w, "dns://:53", 0, tc.fill)
			testutil.WaitFor(t, 5*time.Second, "the first interval's flush", func() bool {
				return totalsOf(w.buf).written == uint64(tc.fill)
			})
			// The next interval is set right after the flush; it lasts at least MIN.
			deadline := time.Now().Add(lo / 2)
			for w.gauges().interval != tc.want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := w.gauges().interval; got != tc.want {
				t.Errorf("after an interval that ended with the buffer at %d%%, the next interval is %s, want %s (MIN %s, base %s, MAX %s)",
					tc.fill, got, tc.want, lo, base, hi)
			}
		})
	}
}

// TestFlushRetryKeepsBatch makes writes fail with SQLITE_BUSY (another connection holds the
// write lock past the 1s busy timeout): the batch stays buffered, is retried, and once the
// lock goes every entry is written exactly once.
func TestFlushRetryKeepsBatch(t *testing.T) {
	o := writerOpts(tempDB(t))
	o.batchSize = 5
	o.flushInterval = 50 * time.Millisecond
	w := testWriter(t, o)
	errs := flushErrors.WithLabelValues(o.path)
	before := promtest.ToFloat64(errs)

	unlock := testutil.Lock(t, o.path)
	logN(w, "dns://:53", 0, 5)
	testutil.WaitFor(t, 5*time.Second, "a failed flush", func() bool { return promtest.ToFloat64(errs) > before })
	if tot := totalsOf(w.buf); tot.written != 0 || tot.size != 5 || tot.droppedAll() != 0 {
		t.Fatalf("after a failed flush: written %d, buffered %d, dropped %d; want 0, 5, 0", tot.written, tot.size, tot.droppedAll())
	}
	// The buffer keeps absorbing entries meanwhile.
	logN(w, "dns://:53", 5, 3)
	if tot := totalsOf(w.buf); tot.size != 8 {
		t.Fatalf("buffered %d, want 8", tot.size)
	}
	unlock()

	testutil.WaitFor(t, 5*time.Second, "the retry to write everything", func() bool {
		tot := totalsOf(w.buf)
		return tot.written == 8 && tot.size == 0
	})
	if n := testutil.CountRows(t, o.path, ""); n != 8 {
		t.Errorf("rows = %d, want 8", n)
	}
	if n := testutil.CountRows(t, o.path, "WHERE qname IN (SELECT qname FROM queries GROUP BY qname HAVING count(*) > 1)"); n != 0 {
		t.Errorf("%d rows written more than once", n)
	}
	if tot := totalsOf(w.buf); tot.droppedAll() != 0 || tot.enqueued != 8 {
		t.Errorf("accounting %+v", tot)
	}
}

// TestFlushPermanentErrorDrops: a batch that fails with a non-transient error is tried
// permanentAttempts times and then dropped as write_failed, so it cannot block the buffer.
func TestFlushPermanentErrorDrops(t *testing.T) {
	o := writerOpts(tempDB(t))
	o.batchSize = 5
	w := testWriter(t, o)
	errs := flushErrors.WithLabelValues(o.path)
	before := promtest.ToFloat64(errs)

	testutil.Exec(t, o.path, "DROP TABLE log")
	logN(w, "dns://:53", 0, 5)
	testutil.WaitFor(t, 5*time.Second, "the batch to be dropped as write_failed", func() bool {
		return totalsOf(w.buf).dropped[reasonWriteFailed] == 5
	})
	if n := promtest.ToFloat64(errs) - before; n != permanentAttempts {
		t.Errorf("flush errors = %v, want %d attempts", n, permanentAttempts)
	}
	tot := checkBalance(t, w.buf, "after the drop")
	if tot.written != 0 || tot.size != 0 {
		t.Errorf("written %d, buffered %d", tot.written, tot.size)
	}
}

func TestFlushDrainOnRelease(t *testing.T) {
	o := writerOpts(tempDB(t))
	o.bufferSize, o.batchSize = 5000, 1000
	w := testWriter(t, o)
	logN(w, "dns://:53", 0, 1500)
	logN(w, "tls://:853", 1500, 999)
	w.release(w.options(), false)

	if n := testutil.CountRows(t, o.path, ""); n != 2499 {
		t.Errorf("rows = %d, want 2499", n)
	}
	if n := testutil.CountRows(t, o.path, "WHERE server = 'tls://:853'"); n != 999 {
		t.Errorf("tls rows = %d, want 999", n)
	}
	tot := checkBalance(t, w.buf, "after release")
	if tot.written != 2499 || tot.size != 0 || tot.droppedAll() != 0 {
		t.Errorf("after release: %+v", tot)
	}
	if live, _ := liveWriter(o.path); live != nil {
		t.Error("the released writer is still registered")
	}
	if w.ready() {
		t.Error("released writer still ready")
	}
	// An entry arriving after the database closed is counted as a shutdown drop (with the
	// closed writer's counts, which the registry keeps).
	logN(w, "dns://:53", 5000, 1)
	m := testutil.Gather(t)
	if a, d := m.Account(o.path), m.Get(o.path, "dropped_total", "reason", "shutdown"); a.Enqueued != 2500 || a.Written != 2499 || d != 1 {
		t.Errorf("late entry: %+v, %v shutdown drops; want 2500 enqueued, 2499 written, 1 dropped", a, d)
	}
}

// TestFlushShutdownTimeout: when the drain cannot write within shutdown_timeout, what is left
// is counted as dropped with reason shutdown and release returns.
func TestFlushShutdownTimeout(t *testing.T) {
	t.Parallel()
	o := writerOpts(tempDB(t))
	o.batchSize = 100
	o.shutdownTimeout = 200 * time.Millisecond
	w := testWriter(t, o)
	unlock := testutil.Lock(t, o.path)
	logN(w, "dns://:53", 0, 7)

	start := time.Now()
	released := make(chan struct{})
	go func() { w.release(w.options(), false); close(released) }()
	// The drain may wait out SQLite's busy timeout once in its last attempt.
	limit := o.shutdownTimeout + busyTimeoutMS*time.Millisecond + time.Second
	select {
	case <-w.done:
	case <-time.After(limit):
		t.Fatalf("flusher still draining after %s (shutdown_timeout %s)", limit, o.shutdownTimeout)
	}
	took := time.Since(start)
	// Closing the database while another connection holds the write lock waits on it too;
	// that is not part of the drain.
	unlock()
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("release did not return after the lock was released")
	}
	if took < o.shutdownTimeout {
		t.Errorf("drain gave up after %s, before shutdown_timeout %s", took, o.shutdownTimeout)
	}
	tot := checkBalance(t, w.buf, "after release")
	if tot.dropped[reasonShutdown] != 7 || tot.written != 0 || tot.size != 0 {
		t.Errorf("after the shutdown timeout: %+v, want 7 shutdown drops", tot)
	}
	if n := testutil.CountRows(t, o.path, ""); n != 0 {
		t.Errorf("rows = %d, want 0", n)
	}
}

func TestFlushTransient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.db")
	createQuerylogDB(t, path, 0)
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ro := testutil.OpenRO(t, path)
	unlock := testutil.Lock(t, path)
	nobusy, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer nobusy.Close()
	_, busy := nobusy.Exec(`DELETE FROM log`)
	unlock()
	_, syntax := rw.Exec(`SELEKT 1`)
	_, constraint := rw.Exec(`INSERT INTO qtype_names VALUES (1, NULL)`)
	_, readOnly := ro.Exec(`DELETE FROM log`)

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"not from SQLite", errors.New("sql: database is closed"), true},
		{"wrapped non-SQLite", fmt.Errorf("x: %w", sql.ErrConnDone), true},
		{"busy", busy, true},
		{"read-only", readOnly, true},
		{"syntax error", syntax, false},
		{"constraint", constraint, false},
		{"wrapped constraint", fmt.Errorf("batch: %w", constraint), false},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: no error produced", tc.name)
			continue
		}
		if got := transient(tc.err); got != tc.want {
			t.Errorf("%s: transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestTailLogsWriteError: when the tail (replies answered after the shutdown drain) cannot
// write, here because another connection holds the write lock, SQLite's error is logged once,
// and that entry and the later ones are counted as shutdown drops.
func TestTailLogsWriteError(t *testing.T) {
	o := writerOpts(tempDB(t))
	w := testWriter(t, o)
	logs := testutil.CaptureLog(t)
	w.release(w.options(), true) // keeps the database open for the tail
	unlock := testutil.Lock(t, o.path)
	logN(w, "dns://:53", 0, 3)
	unlock()

	if n := strings.Count(logs.String(), "database is locked"); n != 1 {
		t.Errorf("the tail's SQLite error is logged %d times, want once:\n%s", n, logs)
	}
	m := testutil.Gather(t)
	if a, d := m.Account(o.path), m.Get(o.path, "dropped_total", "server", "dns://:53", "reason", "shutdown"); a.Enqueued != 3 || a.Written != 0 || d != 3 {
		t.Errorf("after the tail failed: %+v, %v shutdown drops of server dns://:53; want 3 enqueued, 3 dropped", a, d)
	}
}

// TestRetiredWritersKeepOnlyCounts opens and closes writers on two files many times, as
// reloads that change PATH back and forth do: the registry keeps the counts of the closed
// ones (counters never go backwards), not the writers, and keeps them under their server's
// name. Each writer numbers its servers afresh, and here in a different order every round, so
// counts kept by number would land on another server's series, or on "(other)".
func TestRetiredWritersKeepOnlyCounts(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")}
	servers := []string{"dns://:53", "dns://127.0.0.1:5353"}
	const rounds, per = 20, 5
	before := retiredCount() // other tests' files
	for i := range rounds {
		for _, p := range paths {
			w := testWriter(t, writerOpts(p))
			logN(w, servers[i%2], 2*i*per, per)
			logN(w, servers[(i+1)%2], (2*i+1)*per, 2*per)
			w.release(w.options(), false)
		}
	}
	if n := retiredCount() - before; n > len(paths) {
		t.Errorf("the registry keeps %d more closed writers after %d closes of %d files, want at most one set of counts per file", n, rounds*len(paths), len(paths))
	}
	m := testutil.Gather(t)
	for _, p := range paths {
		for _, s := range servers {
			// Each server was first in half the rounds (per entries) and second in the others (2*per).
			want := float64(rounds/2*per + rounds/2*2*per)
			if e, w := m.Get(p, "enqueued_total", "server", s), m.Get(p, "written_total", "server", s); e != want || w != want {
				t.Errorf("%s, server %s: %v enqueued, %v written; want %v of each", p, s, e, w, want)
			}
		}
		if a := m.Account(p); a.Enqueued != rounds*3*per {
			t.Errorf("%s: %+v, want %d enqueued in all (a series other than the two servers')", p, a, rounds*3*per)
		}
	}
}

// batchRows lists the rows of each batch written to the database at path, oldest first.
func batchRows(t *testing.T, path string) string {
	t.Helper()
	rows, err := testutil.OpenRO(t, path).Query(`SELECT rows FROM batches ORDER BY first_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(got)
}

// flusherTurn wakes w's flusher, as a batch's worth of entries would, and waits until it has
// taken the turn and waits again in its loop.
func flusherTurn(t *testing.T, w *writer) {
	t.Helper()
	select {
	case w.buf.notify <- struct{}{}:
	default: // a wake is pending already
	}
	run := fmt.Sprintf("querylog.runFlusher(%p", w)
	testutil.WaitFor(t, 3*time.Second, "the flusher's turn", func() bool {
		return len(w.buf.notify) == 0 && testutil.Waiting("select", run) == 1
	})
}
