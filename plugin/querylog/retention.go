package querylog

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// maintenanceEvery is how often retention and the size cap are enforced (a variable so
	// tests can shorten it).
	maintenanceEvery = 10 * time.Second
	// pruneChunk is the number of rows deleted per transaction: 3.6-4.3 ms each on average
	// (BenchmarkPrune), so a flush waiting behind one is delayed by a few milliseconds.
	pruneChunk = 2000
	// vacuumChunk is the number of free pages given back per step (4 MB of 4 KiB pages).
	vacuumChunk = 1000
	// rollupPeriodsChunk is the number of rollup periods per table and span deleted per step
	// (a period has at most a few thousand rows, rollup_limit).
	rollupPeriodsChunk = 10
	// wallClock is the wall clock retention compares rows' ts with (a variable so tests can
	// make it jump).
	wallClock = time.Now
)

// pass is one maintenance run: rows older than retention are deleted; then, above max_size,
// the oldest rows until the database is back under 90% of it; then the freed pages are given
// back to the filesystem. The flusher does it a step at a time, one chunk between batches,
// so flushes are never held up for more than a chunk, and a stop ends it at once (the next
// pass, or the next start, carries on).
type pass struct {
	phase   phase
	cutoff  int64 // retention: rows with ts before it go (Unix ms)
	minutes int64 // minute rollups that began before it go (Unix s; 0 keeps them)
	longer  int64 // hour and day rollups that began before it go (Unix s; 0 keeps them)
}

type phase int

const (
	phaseRetention phase = iota // deleting rows older than retention
	phaseRollups                // deleting rollups past their retention
	phaseTidy                   // deleting dictionary rows no row uses, an empty queries_v1
	phaseSizeCheck              // checking the size against max_size
	phaseSizeCap                // deleting the oldest rows until under 90% of max_size
	phaseVacuum                 // giving free pages back
	phaseDone
)

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
		f.w.withStore(func() error { f.w.store.batch.rollups.configure(o.rollupLimit); return nil })
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
	wall := wallClock().Round(0) // wall readings only: Sub must not use the monotonic ones
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
		if n, err = w.prune(func(s *store) (int64, error) {
			if shipped, ok := w.shipBound(); ok {
				return s.pruneOlderShipped(p.cutoff, shipped, pruneChunk) // never unshipped rows
			}
			return s.pruneOlder(p.cutoff, pruneChunk)
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
		case w.overCap(o.maxSize):
			p.phase = phaseSizeCap
		case w.store.size() > o.maxSize: // free pages or the WAL: nothing to delete
			p.phase = phaseVacuum
		default:
			p.phase = phaseDone
		}
	case phaseSizeCap:
		chunk := pruneChunk + written
		var n int64
		n, err = w.prune(func(s *store) (int64, error) {
			n, err := f.pruneOldestShipping(s, chunk)
			if err != nil {
				return n, err
			}
			return n, s.pruneWithRows(chunk, f.now())
		})
		if err == nil && n == 0 && w.overCap(o.maxSize) {
			n, err = f.pruneRollupsForCap(o)
		}
		if n == 0 || !w.overCap(o.maxSize) {
			p.phase = phaseVacuum
		}
	case phaseVacuum:
		more, verr := w.vacuumStep()
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
func (w *writer) vacuumStep() (more bool, err error) {
	err = w.withStore(func() (err error) {
		if more, err = w.store.vacuumStep(vacuumChunk); more || err != nil {
			return err
		}
		return w.store.truncateWAL()
	})
	return more, err
}

// prune runs del once and counts the rows it deleted.
func (w *writer) prune(del func(*store) (int64, error)) (int64, error) {
	var n int64
	err := w.withStore(func() (err error) {
		n, err = del(w.store)
		return err
	})
	prunedTotal.WithLabelValues(w.path).Add(float64(n))
	return n, err
}

// overCap reports whether the pages in use exceed 90% of maxSize.
func (w *writer) overCap(maxSize int64) bool {
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
