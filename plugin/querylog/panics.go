package querylog

import "github.com/querylog/querylog/internal/retry"

// No panic in a goroutine querylog starts may take CoreDNS down: each runs its attempts under
// retry.Guard, which counts a panic in panics_total, logs it, and returns it as a failed
// attempt.

// The plugin's goroutines, as panics_total names them (the shipper's are in package ship).
const (
	inFlusher      = "flusher"
	inCheckpointer = "checkpointer"
)

// withStore runs fn with storeMu held, in the flusher: the lock is released and a panic
// returned as an error whatever fn does.
func (w *writer) withStore(fn func() error) error {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	return retry.Guard(w.path, inFlusher, fn)
}

// dropStore closes the store after a panic in the flusher, which left its state unknown (its
// transaction, its dictionaries' cache): the next turn opens the database afresh.
func (w *writer) dropStore() {
	retry.Guard(w.path, inFlusher, func() error { w.closeStore(); return nil })
}
