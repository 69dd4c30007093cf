package querylog

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/querylog/querylog/internal/chwire"
)

// No panic in a goroutine querylog starts may take CoreDNS down: whatever trips it (a bug, a
// tampered file that trips SQLite, a hostile peer), the goroutine recovers, counts the panic in
// panics_total, logs it with its stack at most once per logEvery for each goroutine of each
// database, and treats it as a failed attempt: retried with backoff, counted with that
// attempt's errors.

// errPanic marks an error that was a recovered panic.
var errPanic = errors.New("panic")

// The goroutines, as panics_total names them.
const (
	inFlusher      = "flusher"
	inCheckpointer = "checkpointer"
	inShipper      = "shipper"
	inShipReader   = "ship_reader"
)

var panicLogs = struct {
	sync.Mutex
	m map[string]*limiter // by db and goroutine
}{m: map[string]*limiter{}}

// recovered turns p, recovered in goroutine for database db, into an error, counting and
// logging it.
func recovered(db, goroutine string, p any) error {
	panicsTotal.WithLabelValues(db, goroutine).Inc()
	err := fmt.Errorf("%w in the %s of %s: %s", errPanic, goroutine, db, chwire.Printable(fmt.Sprint(p)))
	panicLogs.Lock()
	l := panicLogs.m[db+"\x00"+goroutine]
	if l == nil {
		l = &limiter{every: logEvery}
		panicLogs.m[db+"\x00"+goroutine] = l
	}
	ok, suppressed := l.allow(time.Now())
	panicLogs.Unlock()
	if ok {
		log.Errorf("Recovered a %v (%d similar suppressed); retrying with backoff. Please report it with this stack:\n%s", err, suppressed, debug.Stack())
	}
	return err
}

// guard runs fn in goroutine for database db, returning a panic in it as an error.
func guard(db, goroutine string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = recovered(db, goroutine, p)
		}
	}()
	return fn()
}

// withStore runs fn with storeMu held, in the flusher: the lock is released and a panic
// returned as an error whatever fn does.
func (w *writer) withStore(fn func() error) error {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	return guard(w.path, inFlusher, fn)
}

// dropStore closes the store after a panic in the flusher, which left its state unknown (its
// transaction, its dictionaries' cache): the next turn opens the database afresh.
func (w *writer) dropStore() {
	guard(w.path, inFlusher, func() error { w.closeStore(); return nil })
}
