package querylog

import (
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

const (
	// slowFlush is the batch duration above which a (rate-limited) warning is logged.
	slowFlush = 100 * time.Millisecond
	// logEvery bounds every repeated log line of the flusher to one per period.
	logEvery = 10 * time.Second
	// Retry backoff after a failed write: doubles from the first value up to the last.
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	// permanentAttempts is how often a batch that fails with a non-transient error is tried
	// before it is dropped as write_failed.
	permanentAttempts = 3
)

// run is the flusher goroutine of one writer. It writes a batch as soon as batch_size entries
// wait, and everything waiting whenever the adaptive interval expires. A failed write leaves
// the batch in the buffer and is retried with backoff; the buffer absorbs new entries meanwhile.
// On stop it drains the buffer, bounded by shutdown_timeout.
func (w *writer) run() {
	defer close(w.done)
	f := flusher{w: w, flushed: time.Now(), backoff: firstBackoff, slowLog: limiter{every: logEvery}, errLog: limiter{every: logEvery}}
	timer := time.NewTimer(f.nextInterval())
	defer timer.Stop()
	report := time.NewTicker(logEvery)
	defer report.Stop()
	maintenance := time.NewTicker(maintenanceEvery)
	defer maintenance.Stop()
	f.maintain()

	retry := false
	for {
		all := retry
		var next time.Duration
		if !retry {
			select {
			case <-w.stop:
				f.drain()
				return
			case <-report.C:
				f.reportDrops()
				continue
			case <-maintenance.C:
				f.maintain()
				continue
			case <-w.buf.notify:
			case <-timer.C:
				all = true
			}
		}
		if all {
			// Chosen from the fill that built up over the last interval, before it is written.
			next = f.nextInterval()
		}
		if retry = f.flushWaiting(all) != nil; retry {
			if stopped := f.wait(f.backoff, report.C); stopped {
				f.drain()
				return
			}
			f.backoff = min(2*f.backoff, maxBackoff)
			continue
		}
		f.backoff = firstBackoff
		if all {
			f.flushed = time.Now()
			timer.Reset(next)
		}
	}
}

// wait sleeps for d, still reporting drops, and reports whether stop was signalled meanwhile.
func (f *flusher) wait(d time.Duration, report <-chan time.Time) (stopped bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-f.w.stop:
			return true
		case <-report:
			f.reportDrops()
		case <-t.C:
			return false
		}
	}
}

// flusher is the state of the flusher goroutine; only it touches these fields.
type flusher struct {
	w        *writer
	flushed  time.Time // when the flusher last emptied the buffer on its interval
	backoff  time.Duration
	failures int // consecutive failures of the current batch
	slowLog  limiter
	errLog   limiter
}

// flushWaiting writes batches while at least batch_size entries wait, or, with all, until the
// buffer is empty.
func (f *flusher) flushWaiting(all bool) error {
	for {
		batch := f.w.options().batchSize
		size, _ := f.w.buf.fill()
		if size == 0 || (!all && size < batch) {
			return nil
		}
		if err := f.flushBatch(batch); err != nil {
			return err
		}
	}
}

// flushBatch writes up to n of the oldest entries in one transaction.
func (f *flusher) flushBatch(n int) error {
	w := f.w
	first, second := w.buf.peek(n)
	count := len(first) + len(second)
	if count == 0 {
		return nil
	}
	if f.diskLow() {
		w.buf.remove(count, false, reasonDiskLow)
		return nil
	}
	start := time.Now()
	w.storeMu.Lock()
	err := w.store.write(first, second)
	w.storeMu.Unlock()
	took := time.Since(start)

	if err != nil {
		flushErrors.WithLabelValues(w.path).Inc()
		f.failures++
		if ok, suppressed := f.errLog.allow(start); ok {
			log.Errorf("Writing %d entries to %s failed (%d similar errors suppressed), will retry: %v", count, w.path, suppressed, err)
		}
		if !transient(err) && f.failures >= permanentAttempts {
			w.buf.remove(count, false, reasonWriteFailed)
			log.Errorf("Dropped %d entries after %d failed writes to %s: %v", count, f.failures, w.path, err)
			f.failures = 0
		}
		return err
	}
	f.failures = 0
	w.buf.remove(count, true, 0)
	w.shipWake(count)
	flushDuration.WithLabelValues(w.path).Observe(took.Seconds())
	flushSize.WithLabelValues(w.path).Observe(float64(count))
	size := w.store.size()
	w.setGauges(func() { w.lastFlush = float64(time.Now().UnixNano()) / 1e9; w.dbSize = size })
	if took > slowFlush {
		if ok, suppressed := f.slowLog.allow(start); ok {
			log.Warningf("Slow flush to %s: %d entries took %s (%d similar warnings suppressed)", w.path, count, took, suppressed)
		}
	}
	return nil
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

// drain writes everything still buffered, retrying failures until shutdown_timeout has passed;
// what is left then is counted as dropped with reason shutdown and logged once.
func (f *flusher) drain() {
	w := f.w
	deadline := time.Now().Add(w.options().shutdownTimeout)
	backoff := 10 * time.Millisecond
	for time.Now().Before(deadline) {
		if err := f.flushWaiting(true); err == nil {
			return
		}
		time.Sleep(min(backoff, time.Until(deadline)))
		backoff = min(2*backoff, 500*time.Millisecond)
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
		size, capacity := f.w.buf.fill()
		log.Errorf("Dropped %d entries for %s in the last %s (buffer %d of %d)", n, f.w.path, logEvery, size, capacity)
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

// limiter lets a repeated log line through at most once per period and counts the rest.
type limiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}
