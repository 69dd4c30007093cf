package retry

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/querylog/querylog/internal/chwire"
)

// No panic in a goroutine querylog starts may take CoreDNS down: whatever trips it (a bug, a
// tampered file that trips SQLite, a hostile peer), the goroutine recovers, counts the panic in
// panics_total, logs it with its stack at most once per LogEvery for each goroutine of each
// database, and treats it as a failed attempt: retried with backoff, counted with that
// attempt's errors.

var log = clog.NewWithPlugin("querylog")

// ErrPanic marks an error that was a recovered panic.
var ErrPanic = errors.New("panic")

// PanicsTotal counts recovered panics by database and goroutine. The plugin registers it, with
// its other collectors.
var PanicsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: plugin.Namespace,
	Subsystem: "querylog",
	Name:      "panics_total",
	Help:      "Counter of panics recovered in querylog's goroutines (flusher, checkpointer, shipper, ship_reader); each is also a failed attempt, retried with backoff.",
}, []string{"db", "goroutine"})

var panicLogs = struct {
	sync.Mutex
	m map[string]*Limiter // by db and goroutine
}{m: map[string]*Limiter{}}

// Guard runs fn in goroutine for database db, returning a panic in it as an error marked
// ErrPanic, counted and logged.
func Guard(db, goroutine string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = recovered(db, goroutine, p)
		}
	}()
	return fn()
}

func recovered(db, goroutine string, p any) error {
	PanicsTotal.WithLabelValues(db, goroutine).Inc()
	err := fmt.Errorf("%w in the %s of %s: %s", ErrPanic, goroutine, db, chwire.Printable(fmt.Sprint(p)))
	panicLogs.Lock()
	l := panicLogs.m[db+"\x00"+goroutine]
	if l == nil {
		l = &Limiter{Every: LogEvery}
		panicLogs.m[db+"\x00"+goroutine] = l
	}
	ok, suppressed := l.Allow(time.Now())
	panicLogs.Unlock()
	if ok {
		log.Errorf("Recovered a %v (%d similar suppressed); retrying with backoff. Please report it with this stack:\n%s", err, suppressed, debug.Stack())
	}
	return err
}
