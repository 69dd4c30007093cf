package querylog

// Fault tests against an in-process CoreDNS with a real SQLite file: a full disk, a database
// that becomes unwritable, a long-running reader, and files that are not querylog databases.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ftSQLiteCmd runs sql on path with the sqlite3 command-line tool.
func ftSQLiteCmd(path, sql string) (string, error) {
	out, err := exec.Command("sqlite3", path, sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ftNeedSQLite3 skips the test when the sqlite3 command-line tool is missing.
func ftNeedSQLite3(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 command-line tool not installed (apt-get install sqlite3)")
	}
}

// ftNeedRoot skips the test unless it runs as root (CI does).
func ftNeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount, chattr); CI runs as root")
	}
}

// ftCLI is an interactive sqlite3 session on a pipe, to hold a transaction open.
type ftCLI struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func ftStartCLI(t *testing.T, path string) *ftCLI {
	t.Helper()
	ftNeedSQLite3(t)
	cmd := exec.Command("sqlite3", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &ftCLI{cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// run sends sql and waits for the output line marker, which sql must print.
func (c *ftCLI) run(t *testing.T, sql, marker string) []string {
	t.Helper()
	if _, err := io.WriteString(c.in, sql+"\n"); err != nil {
		t.Fatal(err)
	}
	var out []string
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("sqlite3 exited; output %q", out)
			}
			if l == marker {
				return out
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("sqlite3: no %q after %q; output %q", marker, sql, out)
		}
	}
}

// quit ends the session and waits for the process.
func (c *ftCLI) quit(t *testing.T) {
	t.Helper()
	io.WriteString(c.in, ".quit\n")
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("sqlite3 did not exit")
	}
}

// ftFileSize is the size of path, 0 if it does not exist.
func ftFileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ---- 8. Disk full, database unwritable ----

// ftTmpfs mounts a tmpfs of the given size (e.g. "8m") in a temporary folder for the test.
func ftTmpfs(t *testing.T, size string) string {
	t.Helper()
	ftNeedRoot(t)
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

// ftFill writes a file into the filesystem of dir that leaves about free bytes available.
func ftFill(t *testing.T, path string, free int64) {
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

// TestFaultDiskFull fills the filesystem of the database (a small tmpfs) under load: writes
// fail and are retried, the buffer holds the entries, nothing is dropped, and once space is
// freed writing resumes by itself and every answered query is a row.
func TestFaultDiskFull(t *testing.T) {
	mnt := ftTmpfs(t, "8m")
	db := filepath.Join(mnt, "q.db")
	// min_free 0: no guard, so the writes themselves fail (SQLITE_FULL).
	inst := startCoreDNS(t, ftCorefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms\n        min_free 0"))
	warm := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 200, 0)
	warm.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })

	filler := filepath.Join(mnt, "filler")
	ftFill(t, filler, 128<<10)
	errs0 := ftFlushErrors(db)
	full := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 4, 2500, 0)
	ftWaitFor(t, 30*time.Second, "a flush to fail on the full disk", func() bool {
		return ftFlushErrors(db) > errs0
	})
	full.Wait()
	if a := accountFor(t, db); a.buffered == 0 || a.dropped != 0 {
		t.Fatalf("disk full: %+v, want entries waiting in the buffer and nothing dropped", a)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	ftWaitFor(t, 20*time.Second, "the buffer to drain after space was freed", func() bool { return accountFor(t, db).buffered == 0 })
	after := ftStartLoad(t, "udp", udpAddr(inst, 0), "c", 2, 200, 0)
	after.Wait()
	stopCoreDNS(t, inst)

	var answered []ftAnswer
	var failed []string
	for _, l := range []*ftLoad{warm, full, after} {
		a, f := l.results()
		answered, failed = append(answered, a...), append(failed, f...)
	}
	ftCheckLogged(t, answered, failed, db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
	if out := ftSQLite(t, db, "PRAGMA integrity_check"); out != "ok" {
		t.Errorf("integrity_check: %s", out)
	}
}

// TestFaultDiskLow fills the filesystem below min_free under load: querylog stops writing and
// counts the entries it drops as disk_low (exported by the disk_low gauge and dropped_total),
// and once space is freed it writes again by itself. Every answered query is a row or a drop.
func TestFaultDiskLow(t *testing.T) {
	mnt := ftTmpfs(t, "8m")
	db := filepath.Join(mnt, "q.db")
	logs := ftCaptureLog(t)
	inst := startCoreDNS(t, ftCorefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms\n        min_free 2MB"))
	warm := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 200, 0)
	warm.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })

	filler := filepath.Join(mnt, "filler")
	ftFill(t, filler, 1<<20)
	low := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	low.Wait()
	ftWaitFor(t, 10*time.Second, "the entries to be dropped as disk_low", func() bool { return accountFor(t, db).buffered == 0 })
	a := accountFor(t, db)
	dropped := ftDropped(t, db, "disk_low")
	w, _ := ftWriter(db)
	if dropped == 0 || a.dropped != dropped || !w.gauges().diskLow {
		t.Errorf("below min_free: %+v, %v dropped as disk_low, disk_low gauge %v; want all drops disk_low and the gauge set", a, dropped, w.gauges().diskLow)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := ftStartLoad(t, "udp", udpAddr(inst, 0), "c", 2, 500, 0)
	after.Wait()
	stopCoreDNS(t, inst)
	if w.gauges().diskLow {
		t.Errorf("the disk_low gauge is still set after space was freed")
	}
	a1, f1 := warm.results()
	a3, f3 := after.results()
	ftCheckLogged(t, append(a1, a3...), append(f1, f3...), db) // the dropped ones aside
	a2, _ := low.results()
	rows := ftCountRows(t, db, "")
	if lowRows := ftCountRows(t, db, "WHERE qname LIKE 'b-%'"); float64(len(a2)) != float64(lowRows)+dropped {
		t.Errorf("below min_free: %d answered, %d rows + %v dropped", len(a2), lowRows, dropped)
	}
	ftCheckAccounting(t, db, rows, dropped)
	for _, want := range []string{"below min_free", "writing resumed"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line saying %q:\n%s", want, logs)
		}
	}
}

// ftDropped is coredns_querylog_dropped_total{reason} for db, summed over servers.
func ftDropped(t *testing.T, db, reason string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "coredns_querylog_dropped_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "db") == db && label(m, "reason") == reason {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestFaultUnwritable makes the database and its WAL immutable (chattr +i, which also stops
// writes through descriptors already open, unlike chmod for root) under load: writes fail and
// are retried, and once the files are writable again everything buffered is written.
func TestFaultUnwritable(t *testing.T) {
	ftNeedRoot(t)
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("chattr not installed")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	inst := startCoreDNS(t, ftCorefile(db, "flush_interval 200ms\n        adaptive 100ms 500ms"))
	warm := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 300, 0)
	warm.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })

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

	errs0 := ftFlushErrors(db)
	locked := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 1000, 0)
	ftWaitFor(t, 20*time.Second, "a flush to fail on the immutable database", func() bool {
		return ftFlushErrors(db) > errs0
	})
	locked.Wait()
	if a := accountFor(t, db); a.buffered == 0 || a.dropped != 0 {
		t.Fatalf("unwritable: %+v, want entries waiting in the buffer and nothing dropped", a)
	}
	if err := chattr("-i"); err != nil {
		t.Fatal(err)
	}
	ftWaitFor(t, 20*time.Second, "the buffer to drain once writable", func() bool { return accountFor(t, db).buffered == 0 })
	stopCoreDNS(t, inst)

	a1, f1 := warm.results()
	a2, f2 := locked.results()
	ftCheckLogged(t, append(a1, a2...), append(f1, f2...), db)
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
	if out := ftSQLite(t, db, "PRAGMA integrity_check"); out != "ok" {
		t.Errorf("integrity_check: %s", out)
	}
}

// ---- 9. A long-running reader ----

// TestFaultLongReader keeps a read transaction open in the sqlite3 tool while entries pour in
// (DNS queries, plus bulk entries handed straight to the writer to grow the WAL quickly). The
// writer keeps up and drops nothing, and the reader's snapshot stays as it was. The WAL grows
// while the reader pins it (no checkpoint can get past the reader's snapshot, so the WAL cannot
// start over); once the reader ends, the next checkpoint completes and the WAL is reused from
// its start: after at most one more batch, more rows no longer make the file larger.
func TestFaultLongReader(t *testing.T) {
	ftNeedSQLite3(t)
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, ftCorefile(db, "batch_size 5000\n        flush_interval 200ms\n        adaptive 100ms 500ms"))
	warm := ftStartLoad(t, "udp", udpAddr(inst, 0), "a", 2, 200, 0)
	warm.Wait()
	ftWaitFor(t, 10*time.Second, "the first queries to be written", func() bool { return accountFor(t, db).buffered == 0 })
	w, _ := ftWriter(db)

	// bulk hands n entries with long names straight to the writer, never overfilling the
	// buffer, and waits until they are written.
	injected := 0
	bulk := func(n int) {
		pad := strings.Repeat("x", 60)
		for i := 0; i < n; i++ {
			if i%5000 == 0 {
				ftWaitFor(t, 30*time.Second, "the buffer to make room", func() bool {
					size, capacity := w.buf.fill()
					return size < capacity/2
				})
			}
			w.log(entry{start: time.Now().UnixNano(), server: "bulk", client: netip.MustParseAddr("192.0.2.7"),
				qname: fmt.Sprintf("%s.%s.%s.bulk%d.example.", pad, pad, pad, injected), qtype: 1, qclass: 1})
			injected++
		}
		ftWaitFor(t, 30*time.Second, "the writer to catch up", func() bool { return accountFor(t, db).buffered == 0 })
	}

	reader := ftStartCLI(t, db)
	out := reader.run(t, "BEGIN; SELECT count(*) FROM queries; SELECT 'reading';", "reading")
	walStart := ftFileSize(db + "-wal")
	during := ftStartLoad(t, "udp", udpAddr(inst, 0), "b", 2, 500, 0)
	bulk(12000)
	during.Wait()
	ftWaitFor(t, 30*time.Second, "the writer to catch up while the reader is open", func() bool { return accountFor(t, db).buffered == 0 })
	walReader := ftFileSize(db + "-wal")
	if got := reader.run(t, "SELECT count(*) FROM queries; SELECT 'again';", "again"); !slices.Equal(got, out) {
		t.Errorf("the reader's snapshot changed: %v, then %v", out, got)
	}
	reader.run(t, "COMMIT; SELECT 'done';", "done")
	reader.quit(t)

	var walAfter []int64
	for range 2 {
		time.Sleep(1500 * time.Millisecond) // a checkpoint runs every second
		bulk(5000)
		walAfter = append(walAfter, ftFileSize(db+"-wal"))
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
	stopCoreDNS(t, inst)

	a1, f1 := warm.results()
	a2, f2 := during.results()
	names := ftCheckLoggedExcept(t, append(a1, a2...), append(f1, f2...), db, ".example.")
	if names != injected {
		t.Errorf("%d bulk rows, want %d", names, injected)
	}
	ftCheckAccounting(t, db, ftCountRows(t, db, ""), 0)
}

// ftCheckLoggedExcept is ftCheckLogged for the DNS queries (under example.org) in db, where
// the other rows are entries handed straight to the writer, named *<suffix>: it returns their
// number and fails on duplicates or rows that are neither.
func ftCheckLoggedExcept(t *testing.T, answered []ftAnswer, failed []string, db, suffix string) int {
	t.Helper()
	all := ftNames(t, db)
	want := map[string]bool{}
	for _, a := range answered {
		want[a.name] = true
		if all[a.name] != 1 {
			t.Errorf("answered %s: %d rows", a.name, all[a.name])
		}
	}
	for _, n := range failed {
		want[n] = true
	}
	other := 0
	for n, c := range all {
		switch {
		case strings.HasSuffix(n, ".example.org."):
			if !want[n] || c != 1 {
				t.Errorf("row %s (x%d) is no query of this test", n, c)
			}
		case strings.HasSuffix(n, suffix):
			if c != 1 {
				t.Errorf("%s logged %d times", n, c)
			}
			other++
		default:
			t.Errorf("unexpected row %s (x%d)", n, c)
		}
	}
	return other
}

// ---- 11. Files that are not querylog databases ----

// TestFaultForeignDatabase starts CoreDNS on files that are not querylog databases: startup
// fails with an error naming the file, and the file and its folder are left exactly as they were.
func TestFaultForeignDatabase(t *testing.T) {
	ftNeedSQLite3(t)
	cases := map[string]struct {
		make func(t *testing.T, path string)
		want string
	}{
		"other application": {func(t *testing.T, p string) {
			ftSQLite(t, p, `CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('alice');`)
		}, "not a querylog database"},
		"other application, WAL": {ftForeignDB, "not a querylog database"},
		"other application with a queries table": {func(t *testing.T, p string) {
			ftSQLite(t, p, `CREATE TABLE queries (x); INSERT INTO queries VALUES (1);`)
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
			ftSQLite(t, p, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA journal_mode = DELETE;", schemaVersion+1))
		}, "newer than this build supports"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "q.db")
			tc.make(t, db)
			before, _ := os.ReadFile(db)
			entries := ftDirList(t, dir)

			inst, err := ftStart(ftCorefile(db, ""))
			if err == nil {
				stopCoreDNS(t, inst)
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
			for _, n := range ftDirList(t, dir) {
				switch {
				case slices.Contains(entries, n):
				case n == "q.db-shm":
					t.Logf("note: the check left SQLite's shared-memory index %s", n)
				case n == "q.db-wal" && ftFileSize(filepath.Join(dir, n)) == 0:
					t.Logf("note: the check left an empty %s", n)
				default:
					t.Errorf("folder had %v, now also %s (%d bytes)", entries, n, ftFileSize(filepath.Join(dir, n)))
				}
			}
			if w, _ := ftWriter(db); w != nil {
				t.Errorf("a writer for %s is live", db)
			}
		})
	}
}

func ftDirList(t *testing.T, dir string) []string {
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
