package querylog

import (
	"errors"
	"sync"
)

// errClosed is the error for a database already closed: after tailGrace, or under the shipper.
var errClosed = errors.New("database already closed")

// tail writes the entries that arrive after a writer's buffer has closed for shutdown: CoreDNS
// keeps answering until its servers stop, and each of those replies must still be a row or a
// counted drop. Entries are group-committed: the first handler to arrive writes everything
// that is pending in one transaction while the others wait for it, so the tail keeps up with
// the load instead of running one transaction per query. After the first failure (the
// database is locked, gone, or closed) every further entry is counted as a shutdown drop at
// once, so handlers never pile up behind SQLite's busy timeout while the servers stop.
type tail struct {
	mu      sync.Mutex
	pending []entry
	done    chan struct{} // closed when the pending group has been accounted for
	writing bool          // a handler is committing groups
	failed  bool
}

// write commits e with whatever else is pending, and returns once it is accounted for.
func (t *tail) write(w *writer, e entry) {
	t.mu.Lock()
	if t.failed {
		t.mu.Unlock()
		w.account([]entry{e}, false)
		return
	}
	if t.done == nil {
		t.done = make(chan struct{})
	}
	t.pending = append(t.pending, e)
	if t.writing {
		done := t.done
		t.mu.Unlock()
		<-done
		return
	}
	t.writing = true
	for len(t.pending) > 0 {
		group, done := t.pending, t.done
		t.pending, t.done = nil, make(chan struct{})
		ok := !t.failed
		t.mu.Unlock()

		if ok {
			err := errClosed
			w.storeMu.Lock()
			if w.store != nil {
				err = w.store.write(group)
			}
			w.storeMu.Unlock()
			if ok = err == nil; !ok {
				// The first failure is the last try, so this is logged once.
				log.Errorf("Writing %d entries answered after the shutdown drain to %s failed; they and later ones are dropped (shutdown): %v", len(group), w.path, err)
			}
		}
		w.account(group, ok)
		close(done)

		t.mu.Lock()
		t.failed = t.failed || !ok
	}
	t.writing = false
	t.mu.Unlock()
}

// fail makes every further entry a shutdown drop without trying SQLite.
func (t *tail) fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}
