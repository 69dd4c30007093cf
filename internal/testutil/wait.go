package testutil

import (
	"testing"
	"time"
)

// Poll calls cond every interval until it holds or timeout has passed, and reports whether it
// held.
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

// WaitFor polls cond every few milliseconds and fails the test if it does not hold within
// timeout; what says what the test was waiting for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, 5*time.Millisecond, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
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
