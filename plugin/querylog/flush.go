package querylog

import (
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/querylog/querylog/internal/retry"
)

const (
	// slowFlush is the batch duration above which a (rate-limited) warning is logged.
	slowFlush = 100 * time.Millisecond
	// clockLogEvery bounds the warning about a wall clock that jumped: it holds until a restart.
	clockLogEvery = time.Hour
	// permanentAttempts is how often a batch that fails with a non-transient error is tried
	// before it is dropped as write_failed.
	permanentAttempts = 3
)

// run is the flusher goroutine of one writer. It writes a batch as soon as batch_size entries
// wait, and everything waiting whenever the adaptive interval expires. A failed write leaves
// the batch in the buffer and is retried with backoff; the buffer absorbs new entries meanwhile.
// On stop it drains the buffer, bounded by shutdown_timeout.
//
// Every turn of the loop does a bounded amount of work, at most one batch and one maintenance
// step, and then looks at its timers and at stop again. Under sustained overload the flusher
// never runs out of work, and the drop summary, retention, the size cap and shutdown_timeout
// must still get their turn exactly then.
func (w *writer) run() {
	defer close(w.done)
	f := flusher{w: w, slowLog: retry.Limiter{Every: retry.LogEvery}, errLog: retry.Limiter{Every: retry.LogEvery}, capLog: retry.Limiter{Every: retry.LogEvery},
		startWall: wallClock().Round(0), startMono: time.Now(), clockLog: retry.Limiter{Every: clockLogEvery}}
	f.timer = time.NewTimer(f.nextInterval())
	defer f.timer.Stop()
	report := time.NewTicker(retry.LogEvery)
	defer report.Stop()
	maintenance := time.NewTicker(maintenanceEvery)
	defer maintenance.Stop()
	f.startPass()

	for {
		// Stop first, so that it waits for one turn's work at most.
		select {
		case <-w.stop:
			f.drain()
			return
		default:
		}
		// With work pending the select does not wait, but still takes whatever else is ready:
		// it picks among ready cases at random, so a due ticker or timer is seen within a few
		// turns.
		var work <-chan struct{}
		if f.pending() {
			work = closedChan
		}
		select {
		case <-w.stop:
			f.drain()
			return
		case <-report.C:
			f.reportDrops()
		case <-maintenance.C:
			f.startPass()
		case <-f.timer.C:
			// Chosen from the fill that built up over the last interval, before it is written.
			f.next, f.due = f.nextInterval(), true
		case <-f.retry:
			f.retry = nil
		case <-w.buf.notify:
		case <-work:
		}
		f.safeStep()
	}
}

// safeStep runs step, recovering a panic as a failed turn: the maintenance pass is abandoned,
// the store closed (the next turn opens it afresh) and the flusher backs off.
func (f *flusher) safeStep() {
	if err := retry.Guard(f.w.path, inFlusher, func() error { f.step(); return nil }); err != nil {
		flushErrors.WithLabelValues(f.w.path).Inc()
		f.pass = nil
		f.w.dropStore()
		f.backOff()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// flusher is the state of the flusher goroutine; only it touches these fields.
type flusher struct {
	w        *writer
	timer    *time.Timer      // the adaptive interval
	due      bool             // the interval expired: write until the buffer is empty
	next     time.Duration    // the interval to start once it is
	retry    <-chan time.Time // non-nil while backing off after a failed write
	backoff  retry.Backoff
	failures int   // consecutive failures of the current batch
	pass     *pass // the maintenance pass under way, if any
	reship   bool  // checkFile stopped the shipper with the old file: start one once open
	slowLog  retry.Limiter
	errLog   retry.Limiter
	capLog   retry.Limiter // rollups filling max_size

	startWall time.Time // the wall clock when the flusher started, and
	startMono time.Time // the same moment with its monotonic reading (retention's clock)
	clockLog  retry.Limiter
}

// pending reports whether the flusher has work it can do now.
func (f *flusher) pending() bool {
	if f.retry != nil {
		return false
	}
	size, _ := f.w.buf.fill()
	return f.w.store == nil || f.due || f.pass != nil || size >= f.w.options().batchSize
}

// step does one turn's work: opening the database if it is not open, then at most one batch,
// and one maintenance step. Nothing while backing off: the database is failing, and
// maintenance would fail on it too.
func (f *flusher) step() {
	if f.retry != nil {
		return
	}
	if f.w.store == nil && !f.open() {
		f.backOff()
		return
	}
	written, err := f.writeWaiting()
	if err != nil {
		f.backOff()
		return
	}
	f.backoff.Reset()
	if f.pass != nil {
		f.maintainStep(written)
	}
}

// backOff pauses writing for the current backoff, and doubles it for the next failure.
func (f *flusher) backOff() {
	f.retry = time.NewTimer(f.backoff.Next()).C
}

// open tries to open the database, counting and logging (at most once per retry.LogEvery) a failure.
func (f *flusher) open() bool {
	w := f.w
	err := w.open()
	if err != nil {
		flushErrors.WithLabelValues(w.path).Inc()
		if ok, suppressed := f.errLog.Allow(time.Now()); ok {
			log.Errorf("Opening %s failed (%d similar errors suppressed), will retry: %v", w.path, suppressed, err)
		}
		return false
	}
	if f.reship {
		f.reship = false
		w.setShip(w.options().ship.Options)
	}
	size, _ := w.buf.fill()
	log.Infof("Opened %s: writing the %d entries buffered meanwhile", w.path, size)
	return true
}

// writeWaiting writes one batch if batch_size entries wait or the interval is due, and
// re-arms the interval once the buffer is empty. It returns the rows written.
func (f *flusher) writeWaiting() (int, error) {
	batch := f.w.options().batchSize
	size, _ := f.w.buf.fill()
	if size == 0 || (!f.due && size < batch) {
		if f.due {
			f.due = false
			f.timer.Reset(f.next)
		}
		return 0, nil
	}
	return f.flushBatch(batch)
}

// flushBatch writes up to n of the oldest entries in one transaction, and returns how many rows
// it wrote.
func (f *flusher) flushBatch(n int) (int, error) {
	w := f.w
	first, second := w.buf.peek(n)
	count := len(first) + len(second)
	if count == 0 {
		return 0, nil
	}
	if f.diskLow() {
		w.buf.remove(count, false, reasonDiskLow)
		return 0, nil
	}
	start := time.Now()
	err := w.withStore(func() error { return w.store.write(first, second) })
	took := time.Since(start)
	if errors.Is(err, retry.ErrPanic) {
		w.dropStore()
	}

	if err != nil {
		flushErrors.WithLabelValues(w.path).Inc()
		f.failures++
		if ok, suppressed := f.errLog.Allow(start); ok {
			log.Errorf("Writing %d entries to %s failed (%d similar errors suppressed), will retry: %v", count, w.path, suppressed, err)
		}
		if !transient(err) && f.failures >= permanentAttempts {
			w.buf.remove(count, false, reasonWriteFailed)
			log.Errorf("Dropped %d entries after %d failed writes to %s: %v", count, f.failures, w.path, err)
			f.failures = 0
		}
		return 0, err
	}
	f.failures = 0
	w.buf.remove(count, true, 0)
	w.shipWake(count)
	flushDuration.WithLabelValues(w.path).Observe(took.Seconds())
	flushSize.WithLabelValues(w.path).Observe(float64(count))
	size := w.store.size()
	w.setGauges(func() { w.lastFlush = float64(time.Now().UnixNano()) / 1e9; w.dbSize = size })
	if took > slowFlush {
		if ok, suppressed := f.slowLog.Allow(start); ok {
			log.Warningf("Slow flush to %s: %d entries took %s (%d similar warnings suppressed)", w.path, count, took, suppressed)
		}
	}
	return count, nil
}

// nextInterval picks the flush interval from the buffer's fill: at or above 80% the minimum,
// below 20% the maximum, otherwise the base interval. It also exports it.
func (f *flusher) nextInterval() time.Duration {
	o := f.w.options()
	d := o.flushInterval
	if o.adaptive {
		size, capacity := f.w.buf.fill()
		switch fill := float64(size) / float64(capacity); {
		case fill >= 0.8:
			d = o.minInterval
		case fill < 0.2:
			d = o.maxInterval
		}
	}
	f.w.setGauges(func() { f.w.interval = d })
	return d
}

// drainBatch is the least number of rows per transaction of the shutdown drain: with a small
// batch_size (down to 1), writing a full buffer a few rows at a time would take far longer
// than shutdown_timeout allows.
const drainBatch = 1000

// drain writes everything still buffered (the buffer is closed: nothing is added), retrying
// failures, until shutdown_timeout has passed; what is left then is counted as dropped with
// reason shutdown and logged once.
func (f *flusher) drain() {
	w := f.w
	o := w.options()
	deadline := time.Now().Add(o.shutdownTimeout)
	backoff := 10 * time.Millisecond
	for time.Now().Before(deadline) {
		if size, _ := w.buf.fill(); size == 0 {
			return
		}
		var err error
		if w.store == nil {
			err = w.open()
		} else {
			_, err = f.flushBatch(max(o.batchSize, drainBatch))
		}
		if err != nil {
			time.Sleep(min(backoff, time.Until(deadline)))
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
	if size, _ := w.buf.fill(); size > 0 {
		w.tail.fail() // the database is failing: do not make late replies wait for it either
		w.buf.remove(size, false, reasonShutdown)
		log.Errorf("Shutdown timeout: dropped %d entries that could not be written to %s", size, w.path)
	}
}

// reportDrops logs one summary line for the drops since the last report.
func (f *flusher) reportDrops() {
	if n := f.w.buf.takeDropWindow(); n > 0 {
		s := f.w.buf.snapshot()
		log.Errorf("Dropped %d entries for %s in the last %s (buffer %d of %d, %d of %d bytes)", n, f.w.path, retry.LogEvery, s.size, s.capacity, s.bytes, s.budget)
	}
}

// transient reports whether a write error may go away by itself (a lock held by another
// process, a full disk, an I/O error), as opposed to one that will fail every time.
func transient(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return true // not from SQLite (e.g. a closed connection): worth retrying
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
		sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_PROTOCOL,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_INTERRUPT:
		return true
	}
	return false
}

// permanent reports whether opening a database failed for good: the file is not a querylog
// database this build can use, or SQLite says it is no database or corrupt.
func permanent(err error) bool { return refused(err) || !transient(err) }
