package querylog

import (
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// maintenanceEvery is how often retention and the size cap are enforced (a variable so
	// tests can shorten it).
	maintenanceEvery = 10 * time.Second
	// pruneChunk is the number of rows deleted per transaction: 3.6-4.3 ms each on average
	// (BenchmarkPrune), so a flush waiting behind one is delayed by a few milliseconds. Chunks
	// of 500 (0.85 ms) let max_size fall behind a steady insert load (TestMaxSizeShrinksFile).
	pruneChunk = 2000
	// vacuumChunk is the number of free pages given back per step (4 MB of 4 KiB pages).
	vacuumChunk = 1000
)

// maintain deletes rows older than retention and, above max_size, the oldest rows until the
// database is back under 90% of it, then returns the freed pages to the filesystem. Between
// chunks it lets due flushes go first, and it gives up at once when the writer is stopped: the
// next pass (or the next start) carries on.
func (f *flusher) maintain() {
	o := f.w.options()
	if o.retention > 0 {
		cutoff := time.Now().Add(-o.retention).UnixMilli()
		f.prune(func(s *store) (int64, error) { return s.pruneOlder(cutoff, pruneChunk) }, func() bool { return false })
	}
	if o.maxSize > 0 && !f.stopping() {
		over := func() bool {
			f.w.storeMu.Lock()
			used, err := f.w.store.usedBytes()
			f.w.storeMu.Unlock()
			return err == nil && used > o.maxSize*9/10
		}
		if f.w.store.size() > o.maxSize || over() {
			f.prune(func(s *store) (int64, error) { return s.pruneOldest(pruneChunk) }, func() bool { return !over() })
			f.vacuum()
		}
	}
	size := f.w.store.size()
	f.w.setGauges(func() { f.w.dbSize = size })
}

// vacuum gives free pages back to the filesystem a step at a time, then truncates the WAL.
func (f *flusher) vacuum() {
	for more := true; more; {
		if f.stopping() {
			return
		}
		var err error
		f.w.storeMu.Lock()
		more, err = f.w.store.vacuumStep(vacuumChunk)
		if !more && err == nil {
			err = f.w.store.truncateWAL()
		}
		f.w.storeMu.Unlock()
		if err != nil {
			log.Warningf("Returning free pages of %s to the filesystem: %v", f.w.path, err)
			return
		}
	}
}

// stopping reports whether the writer has been told to stop.
func (f *flusher) stopping() bool {
	select {
	case <-f.w.stop:
		return true
	default:
		return false
	}
}

// prune runs del chunk by chunk until it deletes less than a chunk, done says so, or the
// writer is stopped.
func (f *flusher) prune(del func(*store) (int64, error), done func() bool) {
	for !f.stopping() && !done() {
		// Entries must not wait longer for pruning than they would have anyway.
		size, _ := f.w.buf.fill()
		due := time.Since(f.flushed) >= f.w.gauges().interval
		if size >= f.w.options().batchSize || (size > 0 && due) {
			if f.flushWaiting(due) != nil {
				return // the database is failing; retry at the next maintenance
			}
			if due {
				f.flushed = time.Now()
			}
		}
		f.w.storeMu.Lock()
		n, err := del(f.w.store)
		f.w.storeMu.Unlock()
		if err != nil {
			if ok, suppressed := f.errLog.allow(time.Now()); ok {
				log.Errorf("Pruning %s failed (%d similar errors suppressed): %v", f.w.path, suppressed, err)
			}
			return
		}
		prunedTotal.WithLabelValues(f.w.path).Add(float64(n))
		if n < int64(pruneChunk) {
			return
		}
	}
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
