package querylog

import (
	"path/filepath"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/testutil"
)

// fastMaintenance shortens maintenance for one test.
func fastMaintenance(t *testing.T) {
	old := maintenanceEvery
	maintenanceEvery = 20 * time.Millisecond
	t.Cleanup(func() { maintenanceEvery = old })
}

// retentionOpts is a writer configuration with short flush intervals and no disk guard.
func retentionOpts(path string) options {
	o := defaults()
	o.path = path
	o.bufferSize = 10000
	o.batchSize = 500
	o.minInterval, o.flushInterval, o.maxInterval = 10*time.Millisecond, 20*time.Millisecond, 50*time.Millisecond
	o.minFreeBytes = 0
	return o
}

// entriesAt is n entries a millisecond apart from start.
func entriesAt(n int, start time.Time) []entry {
	es := benchEntries(n)
	for i := range es {
		es[i].start = start.UnixNano() + int64(i)*int64(time.Millisecond)
	}
	return es
}

func TestRetentionDeletesOldRows(t *testing.T) {
	fastMaintenance(t)
	path := filepath.Join(t.TempDir(), "r.db")
	s := testStore(t, path)
	if err := s.write(entriesAt(5000, time.Now().Add(-48*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := s.write(entriesAt(300, time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	s.close()

	o := retentionOpts(path)
	o.retention = 24 * time.Hour
	w, err := acquire(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.release(w.options(), false)
	testutil.WaitFor(t, 10*time.Second, "old rows pruned", func() bool { return testutil.CountRows(t, path, "") == 300 })
	if got := promtest.ToFloat64(prunedTotal.WithLabelValues(path)); got != 5000 {
		t.Errorf("pruned_total = %v, want 5000", got)
	}
}

// TestMaxSizeShrinksFile grows a database without a cap, then sets max_size below its size:
// the file must shrink under the cap and stay there while writing goes on. It logs the file
// size over time.
func TestMaxSizeShrinksFile(t *testing.T) {
	fastMaintenance(t)
	path := filepath.Join(t.TempDir(), "m.db")
	o := retentionOpts(path)
	o.retention = 0
	w, err := acquire(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.release(w.options(), false)

	write := func(n int) {
		for _, e := range entriesAt(n, time.Now()) {
			w.log(e)
		}
		testutil.WaitFor(t, 10*time.Second, "buffer flushed", func() bool { size, _ := w.buf.fill(); return size == 0 })
	}
	for range 20 { // about 3 MB of rows
		write(4000)
	}
	// Let the checkpointer move the WAL into the file.
	testutil.WaitFor(t, 10*time.Second, "checkpoint", func() bool { return fileSize(path) > 2<<20 })
	grown := fileSize(path)
	t.Logf("without a cap: file %d bytes, %d rows", grown, testutil.CountRows(t, path, ""))

	o.maxSize = 1 << 20
	w.configure(o)
	testutil.WaitFor(t, 10*time.Second, "file under max_size", func() bool { return fileSize(path) <= o.maxSize })
	t.Logf("max_size %d: file shrank to %d bytes, %d rows", o.maxSize, fileSize(path), testutil.CountRows(t, path, ""))

	var peak int64
	for round := range 6 {
		write(4000)
		peak = max(peak, fileSize(path))
		t.Logf("writing on, round %d: file %d bytes, %d rows", round, fileSize(path), testutil.CountRows(t, path, ""))
	}
	// The cap is enforced every maintenance pass; while this test writes as fast as it can
	// (far faster, against a 1 MiB cap, than any real load against a real one) pruning lags
	// by a round or two, never without bound.
	if peak > 3*o.maxSize {
		t.Errorf("file reached %d bytes with max_size %d", peak, o.maxSize)
	}
	testutil.WaitFor(t, 10*time.Second, "file back under max_size", func() bool { return fileSize(path) <= o.maxSize })
	if n := testutil.CountRows(t, path, ""); n == 0 {
		t.Errorf("all rows deleted; want the newest kept")
	}
	if got := promtest.ToFloat64(prunedTotal.WithLabelValues(path)); got == 0 {
		t.Error("pruned_total did not rise")
	}
}

// TestDiskLowGuard drives the free-disk guard with thresholds above and below what the
// filesystem really has.
func TestDiskLowGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	o := retentionOpts(path)
	o.minFreePercent = 99.99 // more than any test filesystem has free
	w, err := acquire(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.release(w.options(), false)
	for _, e := range entriesAt(100, time.Now()) {
		w.log(e)
	}
	testutil.WaitFor(t, 10*time.Second, "disk_low drops", func() bool {
		s := w.buf.snapshot()
		return s.size == 0 && len(s.stats) == 1 && s.stats[0].dropped[reasonDiskLow] == 100
	})
	if !w.gauges().diskLow {
		t.Error("disk_low gauge not set")
	}
	if n := testutil.CountRows(t, path, ""); n != 0 {
		t.Errorf("%d rows written while the disk was low", n)
	}

	o.minFreePercent = 0
	o.minFreeBytes = 1
	w.configure(o)
	for _, e := range entriesAt(100, time.Now()) {
		w.log(e)
	}
	testutil.WaitFor(t, 10*time.Second, "writing resumed", func() bool { return testutil.CountRows(t, path, "") == 100 })
	if w.gauges().diskLow {
		t.Error("disk_low gauge still set after space came back")
	}
}
