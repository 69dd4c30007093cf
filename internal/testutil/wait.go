package testutil

import (
	"testing"
	"time"
)

// Patience is the least time WaitFor and the process tests' waits give a condition before the
// test fails. On a busy machine (two shared cores, other test binaries, the race detector) a
// step that takes milliseconds alone can take many seconds, and a shorter bound fails tests
// that are right; a condition that never holds still fails the test, after Patience. The whole
// run is bounded by go test's -timeout (15m in make test).
const Patience = 2 * time.Minute

// Poll calls cond every interval until it holds or timeout has passed, and reports whether it
// held. It is exact: for a wait that fails the test, use WaitFor.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// WaitFor polls cond every few milliseconds until it holds; what says what the test is waiting
// for. expected is how long that takes on an idle machine: a longer wait is logged, and the test
// fails only once the longer of expected and Patience has passed.
func WaitFor(t testing.TB, expected time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	limit := max(expected, Patience)
	if !Poll(limit, 5*time.Millisecond, cond) {
		t.Fatalf("timed out after %s waiting for %s", limit, what)
	}
	if took := time.Since(start); took > expected {
		t.Logf("waited %s for %s (%s on an idle machine)", took.Round(time.Millisecond), what, expected)
	}
}

// Watch calls f every interval in a goroutine of its own until stop is called; stop returns once
// f has returned for the last time, so what f wrote may then be read without a lock.
func Watch(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			f()
			time.Sleep(interval)
		}
	}()
	return func() { close(done); <-finished }
}
