package querylog

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/retry"
	"github.com/querylog/querylog/internal/testutil"
)

// TestRecoversPanics: a panic in the flusher's use of the store (here a store whose handle is
// gone, as a bug might leave it) does not take the process down. It is
// counted and logged once, the lock is released, the database is opened afresh, and the
// entries of the failed batch are written all the same.
func TestRecoversPanics(t *testing.T) {
	logs := testutil.CaptureLog(t)
	path := filepath.Join(t.TempDir(), "p.db")
	w := testWriter(t, retentionOpts(path))
	for _, e := range benchEntries(100) {
		w.log(e)
	}
	testutil.WaitFor(t, time.Minute, "the first rows", func() bool { return testutil.CountRows(t, path, "") == 100 })

	w.storeMu.Lock()
	db := w.store.db
	w.store.db = nil // every use of it panics
	w.storeMu.Unlock()
	defer db.Close()
	for _, e := range benchEntries(100) {
		w.log(e)
	}
	testutil.WaitFor(t, time.Minute, "the batch written after the panic", func() bool { return testutil.CountRows(t, path, "") == 200 })
	if n := promtest.ToFloat64(retry.PanicsTotal.WithLabelValues(path, inFlusher)); n < 1 {
		t.Errorf("panics_total{goroutine=flusher} = %v, want at least 1", n)
	}
	// The flusher takes storeMu again for its next step right after the commit that made the
	// rows visible, so the lock is free at some moment, not at this one.
	testutil.WaitFor(t, time.Minute, "storeMu free after the panic", func() bool {
		if !w.storeMu.TryLock() {
			return false
		}
		w.storeMu.Unlock()
		return true
	})
	if n := strings.Count(logs.String(), "Recovered a panic in the flusher of "+path); n != 1 {
		t.Errorf("the panic was logged %d times, want once (at most once per 10 s):\n%s", n, logs)
	}
}
