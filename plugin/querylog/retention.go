package querylog

import "time"

const (
	// defaultMaintenanceEvery is how often retention and the size cap are enforced.
	defaultMaintenanceEvery = 10 * time.Second
	// pruneChunk is the number of rows deleted per transaction: 3.6-4.3 ms each on average
	// (BenchmarkPrune), so a flush waiting behind one is delayed by a few milliseconds.
	pruneChunk = 2000
	// vacuumChunk is the number of free pages given back per step (4 MB of 4 KiB pages).
	vacuumChunk = 1000
	// rollupPeriodsChunk is the number of rollup periods per table and span deleted per step
	// (a period has at most a few thousand rows, rollup_limit).
	rollupPeriodsChunk = 10
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
