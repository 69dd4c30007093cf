package querylog

// No panic in a goroutine querylog starts may take CoreDNS down: each runs its attempts under
// retry.Guard, which counts a panic in panics_total, logs it, and returns it as a failed
// attempt.

// The plugin's goroutines, as panics_total names them (the shipper's are in package ship).
const (
	inFlusher      = "flusher"
	inCheckpointer = "checkpointer"
)
