package querylog

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
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
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
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
	for range 8 {
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

func TestParseOperatingOptions(t *testing.T) {
	dir := t.TempDir()
	good := []struct {
		in    string
		check func(options, filter) bool
	}{
		{`querylog`, func(o options, f filter) bool {
			return o.retention == 7*24*time.Hour && o.maxSize == 0 && o.minFreeBytes == 100_000_000 && f.anonV4 == 0 && !f.hash
		}},
		{`querylog { retention 30d }`, func(o options, _ filter) bool { return o.retention == 30*24*time.Hour }},
		{`querylog { retention 36h }`, func(o options, _ filter) bool { return o.retention == 36*time.Hour }},
		{`querylog { retention 0 }`, func(o options, _ filter) bool { return o.retention == 0 }},
		{`querylog { max_size 500MB }`, func(o options, _ filter) bool { return o.maxSize == 500_000_000 }},
		{`querylog { max_size 2GiB }`, func(o options, _ filter) bool { return o.maxSize == 2<<30 }},
		{`querylog { min_free 1% }`, func(o options, _ filter) bool { return o.minFreePercent == 1 }},
		{`querylog { min_free 0 }`, func(o options, _ filter) bool { return o.minFreeBytes == 0 && o.minFreePercent == 0 }},
		{`querylog { anonymize }`, func(_ options, f filter) bool { return f.anonV4 == 24 && f.anonV6 == 56 }},
		{`querylog { anonymize 16 }`, func(_ options, f filter) bool { return f.anonV4 == 16 && f.anonV6 == 56 }},
		{`querylog { anonymize 16 48 }`, func(_ options, f filter) bool { return f.anonV4 == 16 && f.anonV6 == 48 }},
		{`querylog q.db { anonymize hash }`, func(o options, f filter) bool { return f.hash && f.keyFile == o.path+".key" }},
		{`querylog { anonymize hash my.key }`, func(_ options, f filter) bool { return f.hash && f.keyFile == filepath.Join(dir, "my.key") }},
		{`querylog { ignore Example.ORG health.example.net }`, func(_ options, f filter) bool {
			return len(f.ignoreNames) == 2 && f.ignoreNames[0] == "example.org."
		}},
		{`querylog { ignore_clients 10.0.0.0/8 192.0.2.7 2001:db8::/32 }`, func(_ options, f filter) bool {
			return len(f.ignoreClients) == 3 && f.ignoreClients[1] == netip.MustParsePrefix("192.0.2.7/32")
		}},
	}
	// Corefile blocks need their braces on lines of their own.
	block := strings.NewReplacer("{ ", "{\n", " }", "\n}")
	for _, tc := range good {
		c := caddy.NewTestController("dns", block.Replace(tc.in))
		dnsserver.GetConfig(c).Root = dir
		o, f, err := parse(c)
		if err != nil {
			t.Errorf("%q: unexpected error %v", tc.in, err)
			continue
		}
		if !tc.check(o, f) {
			t.Errorf("%q: parsed %+v %+v", tc.in, o, f)
		}
	}

	bad := []struct{ in, want string }{
		{`querylog { retention }`, "retention"},
		{`querylog { retention -1d }`, `"-1d"`},
		{`querylog { retention 30s }`, `"30s"`},
		{`querylog { retention soon }`, `"soon"`},
		{`querylog { retention 7d 8d }`, "retention"},
		{`querylog { max_size 10 }`, `"10"`},
		{`querylog { max_size lots }`, `"lots"`},
		{`querylog { min_free 150% }`, `"150%"`},
		{`querylog { min_free -5MB }`, `"-5MB"`},
		{`querylog { anonymize 33 }`, `"33"`},
		{`querylog { anonymize 0 }`, `"0"`},
		{`querylog { anonymize 24 129 }`, `"129"`},
		{`querylog { anonymize 24 56 12 }`, "anonymize"},
		{`querylog { anonymize hash a b }`, "anonymize hash"},
		{`querylog { ignore }`, "ignore"},
		{`querylog { ignore_clients }`, "ignore_clients"},
		{`querylog { ignore_clients 10.0.0.0/33 }`, `"10.0.0.0/33"`},
	}
	for _, tc := range bad {
		c := caddy.NewTestController("dns", block.Replace(tc.in))
		dnsserver.GetConfig(c).Root = dir
		_, _, err := parse(c)
		if err == nil {
			t.Errorf("%q: no error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not mention %s", tc.in, err, tc.want)
		}
	}
}
