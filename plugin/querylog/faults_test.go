package querylog

// Fault tests against an in-process CoreDNS with a real SQLite file: a full disk, a database
// that becomes unwritable, a long-running reader, and files that are not querylog databases.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns/caddy"

	"github.com/querylog/querylog/internal/testutil"
)

// needRoot skips the test unless it runs as root (CI does).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount, chattr); CI runs as root")
	}
}

// fileSize is the size of path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tmpfs mounts a tmpfs of the given size (e.g. "8m") in a temporary folder for the test.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (%v); this test needs root with CAP_SYS_ADMIN, as in CI", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into the filesystem of dir that leaves about free bytes available.
func fill(t *testing.T, path string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	if avail <= free {
		t.Fatalf("only %d bytes available, cannot leave %d", avail, free)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for left := avail - free; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// loadWhileFailing sends workers×n queries to inst while writes to db fail because of what,
// and checks that a flush failed and that the entries wait in the buffer, none dropped.
func loadWhileFailing(t *testing.T, inst *caddy.Instance, db string, workers, n int, what string) *testutil.Load {
	t.Helper()
	errs0 := testutil.Gather(t).Get(db, "flush_errors_total")
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", workers, n, 0)
	testutil.WaitFor(t, 30*time.Second, "a flush to fail on "+what, func() bool {
		return testutil.Gather(t).Get(db, "flush_errors_total") > errs0
	})
	l.Wait()
	if a := testutil.Gather(t).Account(db); a.Buffered == 0 || a.Dropped != 0 {
		t.Fatalf("%s: %+v, want entries waiting in the buffer and nothing dropped", what, a)
	}
	return l
}

// TestFaultDiskFull fills the filesystem of the database (a small tmpfs) under load: writes
// fail and are retried, the buffer holds the entries, nothing is dropped, and once space is
// freed writing resumes by itself and every answered query is a row.
func TestFaultDiskFull(t *testing.T) {
	mnt := tmpfs(t, "8m")
	db := filepath.Join(mnt, "q.db")
	// min_free 0: no guard, so the writes themselves fail (SQLITE_FULL).
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms\n        min_free 0"))
	warm := warmUp(t, inst, db, 200)

	filler := filepath.Join(mnt, "filler")
	fill(t, filler, 128<<10)
	full := loadWhileFailing(t, inst, db, 4, 2500, "the full disk")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the buffer to drain after space was freed", func() bool { return bufferEmpty(t, db) })
	after := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "c", 2, 200, 0)
	after.Wait()
	testutil.StopCoreDNS(t, inst)

	answered, failed := testutil.Results(warm, full, after)
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
	if out := testutil.SQLite3(t, db, "PRAGMA integrity_check"); out != "ok" {
		t.Errorf("integrity_check: %s", out)
	}
}

// TestFaultStartDiskFull starts CoreDNS with a new database on a full filesystem: CoreDNS
// starts anyway, querylog buffers the entries and is not ready; once space is freed it creates
// the database by itself, becomes ready and writes everything.
func TestFaultStartDiskFull(t *testing.T) {
	mnt := tmpfs(t, "8m")
	db := filepath.Join(mnt, "q.db")
	filler := filepath.Join(mnt, "filler")
	fill(t, filler, 0)
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms\n        min_free 0"))
	w, _ := liveWriter(db)
	l := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 200, 0)
	l.Wait()
	testutil.WaitFor(t, 10*time.Second, "failed attempts to create the database", func() bool {
		return testutil.Gather(t).Get(db, "flush_errors_total") >= 2
	})
	if a := testutil.Gather(t).Account(db); w.ready() || a.Buffered == 0 || a.Written != 0 {
		t.Errorf("on the full disk: ready %v, %+v; want not ready, the entries buffered", w.ready(), a)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the buffer to drain once space was freed", func() bool { return bufferEmpty(t, db) })
	if !w.ready() {
		t.Errorf("not ready once the database is open")
	}
	testutil.StopCoreDNS(t, inst)
	answered, failed := l.Results()
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestFaultDiskLow fills the filesystem below min_free under load: querylog stops writing and
// counts the entries it drops as disk_low (exported by the disk_low gauge and dropped_total),
// and once space is freed it writes again by itself. Every answered query is a row or a drop.
func TestFaultDiskLow(t *testing.T) {
	mnt := tmpfs(t, "8m")
	db := filepath.Join(mnt, "q.db")
	logs := testutil.CaptureLog(t)
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms\n        min_free 2MB"))
	warm := warmUp(t, inst, db, 200)

	filler := filepath.Join(mnt, "filler")
	fill(t, filler, 1<<20)
	low := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	low.Wait()
	testutil.WaitFor(t, 10*time.Second, "the entries to be dropped as disk_low", func() bool { return bufferEmpty(t, db) })
	m := testutil.Gather(t)
	a, dropped := m.Account(db), m.Get(db, "dropped_total", "reason", "disk_low")
	w, _ := liveWriter(db)
	if dropped == 0 || a.Dropped != dropped || !w.gauges().diskLow {
		t.Errorf("below min_free: %+v, %v dropped as disk_low, disk_low gauge %v; want all drops disk_low and the gauge set", a, dropped, w.gauges().diskLow)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "c", 2, 500, 0)
	after.Wait()
	testutil.StopCoreDNS(t, inst)
	if w.gauges().diskLow {
		t.Errorf("the disk_low gauge is still set after space was freed")
	}
	answered, failed := testutil.Results(warm, after)
	testutil.CheckLogged(t, answered, failed, db) // the dropped ones aside
	rows := testutil.CountRows(t, db, "")
	if lowRows := testutil.CountRows(t, db, "WHERE qname LIKE 'b-%'"); float64(low.Count()) != float64(lowRows)+dropped {
		t.Errorf("below min_free: %d answered, %d rows + %v dropped", low.Count(), lowRows, dropped)
	}
	checkAccounting(t, db, rows, dropped)
	for _, want := range []string{"below min_free", "writing resumed"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line saying %q:\n%s", want, logs)
		}
	}
}

// TestFaultUnwritable makes the database and its WAL immutable (chattr +i, which also stops
// writes through descriptors already open, unlike chmod for root) under load: writes fail and
// are retried, and once the files are writable again everything buffered is written.
func TestFaultUnwritable(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("chattr not installed")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	inst := startCoreDNS(t, corefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms"))
	warm := warmUp(t, inst, db, 300)

	files := []string{db, db + "-wal"} // not -shm: it is mapped into memory
	chattr := func(flag string) error {
		out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("chattr %s: %v: %s", flag, err, out)
		}
		return nil
	}
	if err := chattr("+i"); err != nil {
		t.Skipf("cannot make the database immutable on this filesystem: %v", err)
	}
	t.Cleanup(func() { chattr("-i") })
	// Verify the premise: the open WAL can no longer be written.
	if f, err := os.OpenFile(db+"-wal", os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Skip("chattr +i did not make the WAL unwritable for root on this filesystem")
	}

	locked := loadWhileFailing(t, inst, db, 2, 1000, "the immutable database")
	if err := chattr("-i"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the buffer to drain once writable", func() bool { return bufferEmpty(t, db) })
	testutil.StopCoreDNS(t, inst)

	answered, failed := testutil.Results(warm, locked)
	testutil.CheckLogged(t, answered, failed, db)
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
	if out := testutil.SQLite3(t, db, "PRAGMA integrity_check"); out != "ok" {
		t.Errorf("integrity_check: %s", out)
	}
}

// TestFaultLongReader keeps a read transaction open in the sqlite3 tool while entries pour in
// (DNS queries, plus bulk entries handed straight to the writer to grow the WAL quickly). The
// writer keeps up and drops nothing, and the reader's snapshot stays as it was. The WAL grows
// while the reader pins it (no checkpoint can get past the reader's snapshot, so the WAL cannot
// start over); once the reader ends, the next checkpoint completes and the WAL is reused from
// its start: after at most one more batch, more rows no longer make the file larger.
func TestFaultLongReader(t *testing.T) {
	testutil.NeedSQLite3(t)
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, corefile(db, "batch_size 5000\n        flush_interval 200ms\n        adaptive 100ms 500ms"))
	warm := warmUp(t, inst, db, 200)
	w, _ := liveWriter(db)

	// bulk hands n entries with long names straight to the writer, never overfilling the
	// buffer, and waits until they are written.
	injected := 0
	bulk := func(n int) {
		pad := strings.Repeat("x", 60)
		for i := 0; i < n; i++ {
			if i%5000 == 0 {
				testutil.WaitFor(t, 30*time.Second, "the buffer to make room", func() bool {
					size, capacity := w.buf.fill()
					return size < capacity/2
				})
			}
			w.log(entryOf(&w.labels, queryRow{ts: time.Now().UnixMilli(), server: "bulk", client: "192.0.2.7",
				qname: fmt.Sprintf("%s.%s.%s.bulk%d.example.", pad, pad, pad, injected), qtype: 1, qclass: 1}))
			injected++
		}
		testutil.WaitFor(t, 30*time.Second, "the writer to catch up", func() bool { return bufferEmpty(t, db) })
	}

	reader := testutil.StartCLI(t, db)
	out := reader.Run(t, "BEGIN; SELECT count(*) FROM queries; SELECT 'reading';", "reading")
	walStart := fileSize(db + "-wal")
	during := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	bulk(20000)
	during.Wait()
	testutil.WaitFor(t, 30*time.Second, "the writer to catch up while the reader is open", func() bool { return bufferEmpty(t, db) })
	walReader := fileSize(db + "-wal")
	if got := reader.Run(t, "SELECT count(*) FROM queries; SELECT 'again';", "again"); !slices.Equal(got, out) {
		t.Errorf("the reader's snapshot changed: %v, then %v", out, got)
	}
	reader.Run(t, "COMMIT; SELECT 'done';", "done")
	reader.Quit(t)

	var walAfter []int64
	for range 2 {
		time.Sleep(1500 * time.Millisecond) // a checkpoint runs every second
		bulk(5000)
		walAfter = append(walAfter, fileSize(db+"-wal"))
	}
	t.Logf("reader saw %v rows; WAL: %d bytes when it began, %d when it ended, then %v after 2 x 5000 rows", out, walStart, walReader, walAfter)
	if walReader < 3<<20 {
		t.Errorf("the WAL reached only %d bytes while the reader was open; the test needs it larger", walReader)
	}
	// The first transactions after the reader may still append (at most a batch), until a
	// checkpoint has caught up; after that the WAL starts over instead of growing.
	if walAfter[0] > walReader+2<<20 {
		t.Errorf("the WAL grew from %d to %d bytes after the reader ended, more than a batch", walReader, walAfter[0])
	}
	if walAfter[1] > walAfter[0] {
		t.Errorf("the WAL kept growing after the reader ended: %v", walAfter)
	}
	testutil.StopCoreDNS(t, inst)

	answered, failed := testutil.Results(warm, during)
	names := checkLoggedExcept(t, answered, failed, db, ".example.")
	if names != injected {
		t.Errorf("%d bulk rows, want %d", names, injected)
	}
	checkAccounting(t, db, testutil.CountRows(t, db, ""), 0)
}

// TestFaultForeignDatabase starts CoreDNS on files that are not querylog databases: startup
// fails with an error naming the file, and the file and its folder are left exactly as they were.
func TestFaultForeignDatabase(t *testing.T) {
	testutil.NeedSQLite3(t)
	cases := map[string]struct {
		make func(t *testing.T, path string)
		want string
	}{
		"other application": {func(t *testing.T, p string) {
			createOtherDB(t, p, false)
		}, "not a querylog database"},
		"other application, WAL": {func(t *testing.T, p string) {
			createOtherDB(t, p, true)
		}, "not a querylog database"},
		"other application with a queries table": {func(t *testing.T, p string) {
			testutil.SQLite3(t, p, `CREATE TABLE queries (x); INSERT INTO queries VALUES (1);`)
		}, "not a querylog database"},
		"text file": {func(t *testing.T, p string) {
			os.WriteFile(p, []byte(strings.Repeat("not a database\n", 100)), 0o644)
		}, "not a readable SQLite database"},
		"short text file": {func(t *testing.T, p string) {
			os.WriteFile(p, []byte("hello\n"), 0o644)
		}, "not a readable SQLite database"},
		"future schema": {func(t *testing.T, p string) {
			st, err := openStore(p)
			if err != nil {
				t.Fatal(err)
			}
			st.close()
			testutil.SQLite3(t, p, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA journal_mode = DELETE;", schemaVersion+1))
		}, "newer than this build supports"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "q.db")
			tc.make(t, db)
			before, _ := os.ReadFile(db)
			entries := dirList(t, dir)

			inst, err := testutil.CaddyStart(corefile(db, ""))
			if err == nil {
				testutil.StopCoreDNS(t, inst)
				t.Fatalf("CoreDNS started on %s", name)
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to name %s and say %q", err, db, tc.want)
			}
			if after, _ := os.ReadFile(db); !bytes.Equal(before, after) {
				t.Errorf("%s was modified", db)
			}
			// Opening a WAL-mode database, even read-only, makes SQLite create its -wal and
			// -shm beside it; those hold no data. Nothing else may appear.
			for _, n := range dirList(t, dir) {
				switch {
				case slices.Contains(entries, n):
				case n == "q.db-shm":
					t.Logf("note: the check left SQLite's shared-memory index %s", n)
				case n == "q.db-wal" && fileSize(filepath.Join(dir, n)) == 0:
					t.Logf("note: the check left an empty %s", n)
				default:
					t.Errorf("folder had %v, now also %s (%d bytes)", entries, n, fileSize(filepath.Join(dir, n)))
				}
			}
			if w, _ := liveWriter(db); w != nil {
				t.Errorf("a writer for %s is live", db)
			}
		})
	}
}

func dirList(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
