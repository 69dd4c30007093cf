package querylog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/testutil"
)

// fastMaintenance is a writer's pace with a maintenance pass every 20 ms.
var fastMaintenance = tuning{maintenanceEvery: 20 * time.Millisecond}

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
	w, err := acquire(o, fastMaintenance)
	if err != nil {
		t.Fatal(err)
	}
	defer w.release(w.options(), false)
	testutil.WaitFor(t, 10*time.Second, "old rows pruned", func() bool { return testutil.CountRows(t, path, "") == 300 })
	if got := promtest.ToFloat64(prunedTotal.WithLabelValues(path)); got != 5000 {
		t.Errorf("pruned_total = %v, want 5000", got)
	}
	// log_texts loses the ids of the rows pruned, once tidied with the dictionaries.
	testutil.WaitFor(t, 10*time.Second, "log_texts tidied with the rows", func() bool { return textRowsMismatch(t, path) == "" })
}

// TestMaxSizeShrinksFile grows a database without a cap, then sets max_size below its size:
// the file must shrink under the cap, and come back under it after each round of writing
// that follows. It logs the file size over time.
func TestMaxSizeShrinksFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	o := retentionOpts(path)
	o.retention = 0
	w, err := acquire(o, fastMaintenance)
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

	// The cap is enforced every maintenance pass: each round of about 150 KB starts under the
	// cap, may push the file over it until a pass has run, and ends back under it. So the
	// file never holds more than the cap and a round, however slow the machine.
	var peak int64
	for round := range 6 {
		write(4000)
		peak = max(peak, fileSize(path))
		t.Logf("writing on, round %d: file %d bytes, %d rows", round, fileSize(path), testutil.CountRows(t, path, ""))
		testutil.WaitFor(t, 10*time.Second, "file back under max_size", func() bool { return fileSize(path) <= o.maxSize })
	}
	if peak > 2*o.maxSize {
		t.Errorf("file reached %d bytes with max_size %d", peak, o.maxSize)
	}
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
	t.Parallel()
	path := filepath.Join(t.TempDir(), "d.db")
	o := retentionOpts(path)
	o.minFreePercent = 99.99 // more than any test filesystem has free
	w, err := acquire(o, tuning{})
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

// addRows adds n rows to the querylog database at path, with ts from tsMillis on, through the
// sqlite3 tool (waiting for a running writer's lock): a million take a second or two. Each is
// an A query for a name of its own, stored inline (codec.go: a = qtype 1, class IN; c = 60
// bytes, 100 µs).
func addRows(t *testing.T, path string, n int, tsMillis int64) {
	t.Helper()
	testutil.SQLite3(t, path, fmt.Sprintf(`PRAGMA busy_timeout = 5000; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < %d)
		INSERT INTO log (id, name, client, late, a, b, c)
		SELECT (%d + x) << 8, 'name' || x || '.example.org.', '192.0.2.1', 0, 1, 0, 60 | 100 << 24 FROM c`, n, tsMillis))
}

// TestMaintenanceYieldsToShutdown stops writers while a maintenance pass has a large job in
// front of it: a retention cut of a million rows, a size cap far below a million rows, and a
// million rows' worth of free pages (21,000) to give back. Each release must return within
// shutdown_timeout plus a step, not once the job is done.
func TestMaintenanceYieldsToShutdown(t *testing.T) {
	fixture := tempDB(t)
	createQuerylogDB(t, fixture, 0)
	addRows(t, fixture, 1_000_000, time.Now().Add(-48*time.Hour).UnixMilli())
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, path string, o *options)
	}{
		{"retention", func(t *testing.T, path string, o *options) { o.retention = 24 * time.Hour }},
		{"max_size", func(t *testing.T, path string, o *options) { o.maxSize = 1 << 20 }},
		{"vacuum", func(t *testing.T, path string, o *options) {
			testutil.SQLite3(t, path, "DELETE FROM log")
			o.maxSize = 1 << 20
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tempDB(t)
			copyFile(t, fixture, path)
			o := retentionOpts(path)
			o.retention = 0
			o.shutdownTimeout = 100 * time.Millisecond
			tc.prepare(t, path, &o)
			before := fileSize(path)

			w := testWriter(t, o)
			time.Sleep(200 * time.Millisecond) // well into the job
			start := time.Now()
			w.release(w.options(), false)
			took := time.Since(start)
			t.Logf("released after %s; %d rows left, file %d bytes of %d", took.Round(time.Millisecond),
				testutil.CountRows(t, path, ""), fileSize(path), before)
			// A step in progress (a chunk of rows, or of pages) may finish first: tens of
			// milliseconds alone, more with -race on shared cores under the whole suite.
			if limit := o.shutdownTimeout + 2*time.Second; took > limit {
				t.Errorf("release took %s with maintenance under way, want at most %s", took, limit)
			}
		})
	}
}

// copyFile copies the closed database at from (no WAL beside it) to to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// fakeWallClock is a wall clock for retention (tuning.wallClock): the real one plus an offset
// that jump sets; the monotonic clock is not affected.
func fakeWallClock() (clock func() time.Time, jump func(time.Duration)) {
	var offset atomic.Int64 // the flusher reads it while the test sets it
	clock = func() time.Time { return time.Now().Round(0).Add(time.Duration(offset.Load())) }
	return clock, func(d time.Duration) { offset.Store(int64(d)) }
}

// TestRetentionClockJump makes the wall clock jump by twice the retention, forward and back,
// while a writer runs. Neither may delete rows that have not outlived retention by the clock
// that advanced steadily, nor the rows written after the jump with the jumped clock; rows
// expired by the earlier clock still go; and the disagreement is logged.
func TestRetentionClockJump(t *testing.T) {
	const retention = 24 * time.Hour
	for _, jump := range []time.Duration{2 * retention, -2 * retention} {
		t.Run(fmt.Sprintf("jump=%s", jump), func(t *testing.T) {
			tu := fastMaintenance
			clock, setJump := fakeWallClock()
			tu.wallClock = clock
			logs := testutil.CaptureLog(t)
			path := tempDB(t)
			now := time.Now()
			s := testStore(t, path)
			if err := s.write(entriesAt(100, now.Add(-30*time.Hour))); err != nil { // expired
				t.Fatal(err)
			}
			if err := s.write(entriesAt(200, now.Add(-time.Hour))); err != nil {
				t.Fatal(err)
			}
			s.close()
			o := retentionOpts(path)
			o.retention = retention
			w := tunedWriter(t, o, tu)
			testutil.WaitFor(t, 10*time.Second, "the expired rows to go", func() bool { return testutil.CountRows(t, path, "") == 200 })

			setJump(jump)
			earlier := now // the earlier of the steady and the jumped clock
			if jump < 0 {
				earlier = now.Add(jump)
			}
			for _, e := range entriesAt(50, now.Add(jump)) { // answered after the jump, stamped with it
				w.log(e)
			}
			testutil.WaitFor(t, 10*time.Second, "the entries to be written", func() bool { size, _ := w.buf.fill(); return size == 0 })
			// Rows age by their arrival (the id), so rows that are old by the earlier clock
			// are added to the file directly.
			addRows(t, path, 20, earlier.Add(-retention-6*time.Hour).UnixMilli())
			testutil.WaitFor(t, 10*time.Second, "the rows expired by the earlier clock to go", func() bool {
				return testutil.CountRows(t, path, "WHERE ts < ?", earlier.Add(-retention).UnixMilli()) == 0
			})
			time.Sleep(300 * time.Millisecond) // a dozen more passes
			if n := testutil.CountRows(t, path, ""); n != 250 {
				t.Errorf("%d rows after the wall clock jumped by %s with retention %s, want the 200 written within it and the 50 after the jump", n, jump, retention)
			}
			if !strings.Contains(logs.String(), "clock") {
				t.Errorf("no warning about the clocks in the log:\n%s", logs)
			}
		})
	}
}

// capTo starts a writer on path, a file above maxSize, with max_size maxSize and no
// retention, and waits until the file is under the cap.
func capTo(t *testing.T, path string, maxSize int64) {
	t.Helper()
	if fileSize(path) <= maxSize {
		t.Fatalf("the file has %d bytes, not above max_size %d", fileSize(path), maxSize)
	}
	o := retentionOpts(path)
	o.retention = 0
	o.maxSize = maxSize
	tunedWriter(t, o, fastMaintenance)
	testutil.WaitFor(t, 10*time.Second, "the file to shrink under max_size", func() bool { return fileSize(path) <= maxSize })
}

// TestMaxSizeFreePagesOnly: a file above max_size whose rows fit under 90% of it (the rest are
// free pages) shrinks, and no row is deleted.
func TestMaxSizeFreePagesOnly(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	createQuerylogDB(t, path, 0)
	addRows(t, path, 40_000, time.Now().UnixMilli())
	testutil.SQLite3(t, path, "DELETE FROM log WHERE id NOT IN (SELECT id FROM log ORDER BY id LIMIT 5000)")
	capTo(t, path, 2<<20)
	if n := testutil.CountRows(t, path, ""); n != 5000 {
		t.Errorf("%d rows left of 5000; none had to go", n)
	}
}

// TestMaxSizeDeletesWhatRowsUsed: the size cap deletes, with the rows, the batch rows only they
// used, so that it never has to delete every row. Here each row was written in a transaction of
// its own (batch_size 1 under load), so the table batches has a row per row: left alone, it
// kept the file above the cap until the last row was gone.
func TestMaxSizeDeletesWhatRowsUsed(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	for _, e := range entriesAt(30_000, time.Now()) {
		if err := s.write([]entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	s.close()
	capTo(t, path, 1<<20)
	rows, batches := testutil.CountRows(t, path, ""), testutil.SQLite3(t, path, "SELECT count(*) FROM batches")
	if rows == 0 || batches != fmt.Sprint(rows) {
		t.Errorf("%d rows and %s batches left under max_size; want rows, each with its batch", rows, batches)
	}
	checkTextRows(t, path)
}

// TestMaxSizeRollupsFillCap: when hourly and daily rollups alone fill max_size, the size cap
// deletes the oldest of them (after the rows), the newest stay, and it says so in the log.
func TestMaxSizeRollupsFillCap(t *testing.T) {
	logs := testutil.CaptureLog(t)
	path := tempDB(t)
	createQuerylogDB(t, path, 0)
	addRows(t, path, 100, time.Now().UnixMilli())
	// 400 hours of 100 names each: about 2.5 MB.
	hour := time.Now().Truncate(time.Hour).Unix()
	testutil.SQLite3(t, path, fmt.Sprintf(`WITH RECURSIVE h(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM h WHERE x < 400),
		k(y) AS (SELECT 1 UNION ALL SELECT y+1 FROM k WHERE y < 100)
		INSERT INTO rollup_names SELECT 3600, %d - x * 3600, 'name' || y || '.example.org.', 0, x + y FROM h, k`, hour))
	capTo(t, path, 1<<20)
	kept := testutil.SQLite3(t, path, "SELECT count(DISTINCT start), max(start) FROM rollup_names")
	var n, newest int64
	if _, err := fmt.Sscanf(kept, "%d|%d", &n, &newest); err != nil || n == 0 || n == 400 || newest != hour-3600 {
		t.Errorf("rollup hours left (count|newest start): %s; want the newest of the 400, ending %d", kept, hour-3600)
	}
	if !strings.Contains(logs.String(), "Rollups fill max_size") {
		t.Errorf("no warning about rollups filling max_size:\n%s", logs)
	}
}
