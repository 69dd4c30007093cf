package querylog

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
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

// runFlusher is the flusher goroutine of one writer. It writes a batch as soon as batch_size
// entries wait, and everything waiting whenever the adaptive interval expires. A failed write
// leaves the batch in the buffer and is retried with backoff; the buffer absorbs new entries
// meanwhile. On stop it drains the buffer, bounded by shutdown_timeout.
//
// Every turn of the loop does a bounded amount of work, at most one batch and one maintenance
// step, and then looks at its timers and at stop again. Under sustained overload the flusher
// never runs out of work, and the drop summary, retention, the size cap and shutdown_timeout
// must still get their turn exactly then.
func runFlusher(w *writer) {
	f := flusher{w: w, slowLog: retry.Limiter{Every: retry.LogEvery}, errLog: retry.Limiter{Every: retry.LogEvery}, capLog: retry.Limiter{Every: retry.LogEvery},
		startWall: w.tune.wallClock().Round(0), startMono: time.Now(), clockLog: retry.Limiter{Every: clockLogEvery}}
	f.timer = time.NewTimer(f.nextInterval())
	defer f.timer.Stop()
	report := time.NewTicker(retry.LogEvery)
	defer report.Stop()
	maintenance := time.NewTicker(w.tune.maintenanceEvery)
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
	backoff := retry.Backoff{Start: 10 * time.Millisecond, Limit: 500 * time.Millisecond} // within shutdown_timeout
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
			time.Sleep(min(backoff.Next(), time.Until(deadline)))
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

// startPass begins a maintenance pass, unless one is under way, after checking that the
// database file is still the one open.
func (f *flusher) startPass() {
	f.checkFile()
	if f.pass != nil {
		return
	}
	o, now := f.w.options(), f.now()
	p := &pass{phase: phaseRetention}
	if o.retention > 0 {
		p.cutoff = now.Add(-o.retention).UnixMilli()
		p.minutes = now.Add(-max(o.retention, 24*time.Hour)).Unix() // minutes go with the rows
	} else {
		p.phase = phaseRollups
	}
	if o.rollupRetention > 0 {
		p.longer = now.Add(-o.rollupRetention).Unix()
	}
	if f.w.store != nil {
		f.w.withStore(func() error { f.w.store.state.rollups.configure(o.rollupLimit); return nil })
	}
	f.pass = p
}

// checkFile closes the database if its path no longer names the file open: it was deleted,
// renamed (log rotation) or replaced. Rows would otherwise go on into a file nobody looks at,
// with every metric healthy. The flusher then opens the path afresh, as at startup.
//
// SQLite does not checkpoint a file that has moved when it closes it, and its WAL and -shm
// stay beside the path: the WAL's last commits would be missing from the old file and applied
// to the new one. So first the whole WAL is moved into the old file, and after the close both
// are removed (a process still reading the old file keeps its own open copies). While a reader
// keeps the WAL from being moved, writing goes on into the old file, and the next pass tries
// again.
//
// A shipper reads the old file to its end first (bounded by shutdown_timeout, while the
// flusher waits and the buffer takes the load), saving its cursor in that file; the flusher
// starts a new one on the new file once it is open.
func (f *flusher) checkFile() {
	w := f.w
	if w.store == nil || !w.store.replaced() {
		return
	}
	if w.finishShip(leftRotated) {
		f.reship = true
	}
	// The checkpointer first: a checkpoint of its own would make this one fail, and it must not
	// reconnect by name, to the new file.
	err := w.withStore(func() error {
		w.stopCheckpointer()
		return w.store.truncateWAL()
	})
	if err != nil {
		if ok, suppressed := f.errLog.Allow(time.Now()); ok {
			// A shipper would reopen the path, the new file, so none runs until the switch.
			shipping := ""
			if f.reship {
				shipping = " (not shipping what is written meanwhile)"
			}
			log.Errorf("%s was renamed, deleted or replaced, but its last commits cannot be moved into it yet (%d similar errors suppressed); still writing to it%s: %v", w.path, suppressed, shipping, err)
		}
		return
	}
	log.Warningf("%s was renamed, deleted or replaced: closing the old file and opening it afresh", w.path)
	w.closeStore()
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(w.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Errorf("Removing %s of the old file: %v", w.path+suffix, err)
		}
	}
}

// now is the time retention counts from: the earlier of the wall clock and a clock set from
// it when the writer started and advanced by the monotonic clock since. A wall clock that
// jumps forward by more than retention would otherwise delete the whole log at the next pass;
// one that jumps back would make rows written after the jump look old to the steady clock.
// Either way rows are kept longer, never deleted early, and the disagreement is logged.
func (f *flusher) now() time.Time {
	wall := f.w.tune.wallClock().Round(0) // wall readings only: Sub must not use the monotonic ones
	steady := f.startWall.Add(time.Since(f.startMono))
	if skew := wall.Sub(steady); skew.Abs() > time.Minute {
		if ok, _ := f.clockLog.Allow(time.Now()); ok {
			log.Warningf("The wall clock is %s off the steady clock since writing to %s began (stepped, or the system was suspended): retention counts from the earlier of the two until CoreDNS restarts", skew.Round(time.Second), f.w.path)
		}
		if skew > 0 {
			return steady
		}
	}
	return wall
}

// maintainStep does one step of the pass: one chunk of rows or pages, or one check. written is
// the rows the flusher wrote in this turn: above max_size each step deletes a chunk more than
// that, so the cap wins against a writer that never idles.
func (f *flusher) maintainStep(written int) {
	w, p, o := f.w, f.pass, f.w.options()
	var err error
	switch p.phase {
	case phaseRetention:
		var n int64
		if n, err = f.prune(func(s *store) (int64, error) {
			return s.pruneOlder(p.cutoff, pruneChunk, shipBoundOf(w.ship.Load())) // never unshipped rows
		}); n < int64(pruneChunk) {
			p.phase = phaseRollups
		}
	case phaseRollups:
		var n int64
		err = w.withStore(func() (err error) {
			n, err = w.store.pruneRollups(p.minutes, p.longer, rollupPeriodsChunk)
			return err
		})
		if n == 0 {
			p.phase = phaseTidy
		}
	case phaseTidy:
		var more bool
		err = w.withStore(func() (err error) {
			more, err = w.store.tidy(pruneChunk)
			return err
		})
		if !more {
			p.phase = phaseSizeCheck
		}
	case phaseSizeCheck:
		switch {
		case o.maxSize == 0:
			p.phase = phaseDone
		case f.overCap(o.maxSize):
			p.phase = phaseSizeCap
		case w.store.size() > o.maxSize: // free pages or the WAL: nothing to delete
			p.phase = phaseVacuum
		default:
			p.phase = phaseDone
		}
	case phaseSizeCap:
		chunk := pruneChunk + written
		var n int64
		n, err = f.prune(func(s *store) (int64, error) {
			n, err := f.pruneOldest(s, chunk)
			if err != nil {
				return n, err
			}
			return n, s.pruneWithRows(chunk, f.now())
		})
		if err == nil && n == 0 && f.overCap(o.maxSize) {
			n, err = f.pruneRollupsForCap(o)
		}
		if n == 0 || !f.overCap(o.maxSize) {
			p.phase = phaseVacuum
		}
	case phaseVacuum:
		more, verr := f.vacuumStep()
		if verr != nil {
			log.Warningf("Returning free pages of %s to the filesystem: %v", w.path, verr)
		}
		if !more || verr != nil {
			p.phase = phaseDone
		}
	}
	if err != nil {
		if ok, suppressed := f.errLog.Allow(time.Now()); ok {
			log.Errorf("Pruning %s failed (%d similar errors suppressed): %v", w.path, suppressed, err)
		}
		p.phase = phaseDone // the database is failing; the next pass tries again
	}
	if p.phase == phaseDone {
		f.pass = nil
		size := w.store.size()
		w.setGauges(func() { w.dbSize = size })
	}
}

// pruneRollupsForCap deletes the oldest hourly and daily rollups when the size cap has no row
// left to delete: they take the whole of max_size. It reports the rollup rows deleted.
func (f *flusher) pruneRollupsForCap(o options) (int64, error) {
	w := f.w
	var n int64
	err := w.withStore(func() (err error) {
		n, err = w.store.pruneRollups(0, f.now().Unix(), rollupPeriodsChunk)
		return err
	})
	if n > 0 {
		if ok, suppressed := f.capLog.Allow(time.Now()); ok {
			log.Warningf("Rollups fill max_size %d of %s: deleting the oldest hours and days, and every row in each pass (%d similar warnings suppressed); raise max_size or lower rollup_limit or rollup_retention", o.maxSize, w.path, suppressed)
		}
	}
	return n, err
}

// vacuumStep gives back a chunk of free pages and, once none are left, truncates the WAL so
// that the file shrinks. It reports whether free pages remain.
func (f *flusher) vacuumStep() (more bool, err error) {
	w := f.w
	err = w.withStore(func() (err error) {
		if more, err = w.store.vacuumStep(vacuumChunk); more || err != nil {
			return err
		}
		return w.store.truncateWAL()
	})
	return more, err
}

// prune runs del once and counts the rows it deleted.
func (f *flusher) prune(del func(*store) (int64, error)) (int64, error) {
	w := f.w
	var n int64
	err := w.withStore(func() (err error) {
		n, err = del(w.store)
		return err
	})
	prunedTotal.WithLabelValues(w.path).Add(float64(n))
	return n, err
}

// overCap reports whether the pages in use exceed 90% of maxSize.
func (f *flusher) overCap(maxSize int64) bool {
	w := f.w
	var used int64
	err := w.withStore(func() (err error) {
		used, err = w.store.usedBytes()
		return err
	})
	return err == nil && used > maxSize*9/10
}

// diskLow reports whether the filesystem holding the database has less free space than
// min_free, and exports and logs the transitions.
func (f *flusher) diskLow() bool {
	o := f.w.options()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(f.w.path), &st); err != nil {
		return false // cannot tell: let the write itself fail or succeed
	}
	free := int64(st.Bavail) * st.Bsize
	need := o.minFreeBytes
	if o.minFreePercent > 0 {
		need = int64(float64(st.Blocks) * float64(st.Bsize) * o.minFreePercent / 100)
	}
	low := free < need
	was := f.w.gauges().diskLow
	if low != was {
		f.w.setGauges(func() { f.w.diskLow = low })
		if low {
			log.Errorf("Filesystem of %s has %d bytes free, below min_free %d: dropping entries (disk_low) until space is freed", f.w.path, free, need)
		} else {
			log.Infof("Filesystem of %s has %d bytes free again: writing resumed", f.w.path, free)
		}
	}
	return low
}

// pruneOldest deletes a chunk of the oldest rows for max_size, and while shipping counts and
// logs those not shipped yet.
func (f *flusher) pruneOldest(s *store, chunk int) (int64, error) {
	sh := f.w.ship.Load()
	deleted, unshipped, err := s.pruneOldest(chunk, shipBoundOf(sh))
	if err != nil || unshipped == 0 {
		return deleted, err
	}
	sh.Dropped("max_size", unshipped)
	return deleted, nil
}
