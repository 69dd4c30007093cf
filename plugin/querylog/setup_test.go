package querylog

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/querylog/querylog/internal/testutil"
)

// controller returns a test controller for input whose root folder is root.
func controller(input, root string) *caddy.Controller {
	c := caddy.NewTestController("dns", input)
	dnsserver.GetConfig(c).Root = root
	return c
}

func TestParseGood(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(t.TempDir(), "abs.db")
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.db")
	createQuerylogDB(t, existing, 0)

	with := func(f func(o *options)) options {
		o := defaults()
		o.path = filepath.Join(dir, defaultPath)
		f(&o)
		return o
	}
	tests := []struct {
		name  string
		input string
		want  options
	}{
		{"defaults", "querylog", with(func(*options) {})},
		{"defaults, empty block", "querylog {\n}", with(func(*options) {})},
		{"relative path", "querylog q.db", with(func(o *options) { o.path = filepath.Join(dir, "q.db") })},
		{"relative path in a sub folder", "querylog sub/q.db", with(func(o *options) { o.path = filepath.Join(dir, "sub", "q.db") })},
		{"relative path with ..", "querylog sub/../q.db", with(func(o *options) { o.path = filepath.Join(dir, "q.db") })},
		{"absolute path ignores root", "querylog " + abs, with(func(o *options) { o.path = abs })},
		{"existing empty file", "querylog empty.db", with(func(o *options) { o.path = empty })},
		{"existing querylog database", "querylog existing.db", with(func(o *options) { o.path = existing })},
		{"PATH with SQLite URI syntax", `querylog "q%41 ?x=1#y.db"`, with(func(o *options) { o.path = filepath.Join(dir, "q%41 ?x=1#y.db") })},
		{"buffer_size min", "querylog {\n buffer_size 10000\n}", with(func(o *options) { o.bufferSize = 10000 })},
		{"buffer_size max", "querylog {\n buffer_size 200000\n}", with(func(o *options) { o.bufferSize = 200000 })},
		{"batch_size min", "querylog {\n batch_size 1\n}", with(func(o *options) { o.batchSize = 1 })},
		{"batch_size max", "querylog {\n buffer_size 60000\n batch_size 50000\n}", with(func(o *options) { o.bufferSize, o.batchSize = 60000, 50000 })},
		{"batch_size equal to buffer_size", "querylog {\n buffer_size 10000\n batch_size 10000\n}", with(func(o *options) { o.bufferSize, o.batchSize = 10000, 10000 })},
		{"flush_interval", "querylog {\n flush_interval 2s\n}", with(func(o *options) { o.flushInterval = 2 * time.Second })},
		{"flush_interval at adaptive MIN", "querylog {\n flush_interval 100ms\n}", with(func(o *options) { o.flushInterval = 100 * time.Millisecond })},
		{"flush_interval at adaptive MAX", "querylog {\n flush_interval 5s\n}", with(func(o *options) { o.flushInterval = 5 * time.Second })},
		{"adaptive off", "querylog {\n adaptive off\n}", with(func(o *options) { o.adaptive = false })},
		{"adaptive off allows any flush_interval", "querylog {\n adaptive off\n flush_interval 1h\n}", with(func(o *options) {
			o.adaptive = false
			o.flushInterval = time.Hour
		})},
		{"adaptive MIN MAX", "querylog {\n adaptive 50ms 10s\n}", with(func(o *options) {
			o.minInterval, o.maxInterval = 50*time.Millisecond, 10*time.Second
		})},
		{"adaptive MIN equal to MAX", "querylog {\n adaptive 1s 1s\n}", with(func(o *options) {
			o.minInterval, o.maxInterval = time.Second, time.Second
		})},
		{"watermark", "querylog {\n watermark 50\n}", with(func(o *options) { o.watermark = 50 })},
		{"watermark with %", "querylog {\n watermark 90%\n}", with(func(o *options) { o.watermark = 90 })},
		{"watermark lowest", "querylog {\n watermark 1%\n}", with(func(o *options) { o.watermark = 1 })},
		{"watermark highest", "querylog {\n watermark 99\n}", with(func(o *options) { o.watermark = 99 })},
		{"on_full drop", "querylog {\n on_full drop\n}", with(func(*options) {})},
		{"on_full block", "querylog {\n on_full block 50ms\n}", with(func(o *options) { o.blockFor = 50 * time.Millisecond })},
		{"on_full block max", "querylog {\n on_full block 5s\n}", with(func(o *options) { o.blockFor = 5 * time.Second })},
		{"shutdown_timeout", "querylog {\n shutdown_timeout 30s\n}", with(func(o *options) { o.shutdownTimeout = 30 * time.Second })},
		{"shutdown_timeout max", "querylog {\n shutdown_timeout 10m\n}", with(func(o *options) { o.shutdownTimeout = 10 * time.Minute })},
		{"retention in days", "querylog {\n retention 30d\n}", with(func(o *options) { o.retention = 30 * 24 * time.Hour })},
		{"retention duration", "querylog {\n retention 90m\n}", with(func(o *options) { o.retention = 90 * time.Minute })},
		{"retention in hours, as the README shows", "querylog {\n retention 36h\n}", with(func(o *options) { o.retention = 36 * time.Hour })},
		{"retention off", "querylog {\n retention 0\n}", with(func(o *options) { o.retention = 0 })},
		{"max_size", "querylog {\n max_size 500MB\n}", with(func(o *options) { o.maxSize = 500_000_000 })},
		{"max_size binary", "querylog {\n max_size 2GiB\n}", with(func(o *options) { o.maxSize = 2 << 30 })},
		// What the plugin README says sizes mean: units in any case, K M G T P powers of 1000
		// with or without B, Ki Mi Gi ... powers of 1024, decimals rounded down to a byte.
		{"max_size 500mb is 500*10^6", "querylog {\n max_size 500mb\n}", with(func(o *options) { o.maxSize = 500_000_000 })},
		{"max_size 2G is 2*10^9", "querylog {\n max_size 2G\n}", with(func(o *options) { o.maxSize = 2_000_000_000 })},
		{"max_size 2Gi is 2^31", "querylog {\n max_size 2Gi\n}", with(func(o *options) { o.maxSize = 2 << 30 })},
		{"max_size 1.5GB is 1.5*10^9", "querylog {\n max_size 1.5GB\n}", with(func(o *options) { o.maxSize = 1_500_000_000 })},
		{"max_size 1.5GiB", "querylog {\n max_size 1.5GiB\n}", with(func(o *options) { o.maxSize = 3 << 29 })},
		{"max_size in bytes", "querylog {\n max_size 1048576\n}", with(func(o *options) { o.maxSize = 1 << 20 })},
		{"buffer_bytes", "querylog {\n buffer_bytes 64MiB\n}", with(func(o *options) { o.bufferBytes = 64 << 20 })},
		{"buffer_bytes min", "querylog {\n buffer_bytes 1MB\n}", with(func(o *options) { o.bufferBytes = 1_000_000 })},
		{"buffer_bytes max", "querylog {\n buffer_bytes 16GiB\n}", with(func(o *options) { o.bufferBytes = 16 << 30 })},
		{"buffer_bytes decimal", "querylog {\n buffer_bytes 1.5GB\n}", with(func(o *options) { o.bufferBytes = 1_500_000_000 })},
		{"answers with MAXBYTES", "querylog {\n answers 1024\n}", with(func(o *options) { o.answersMax = 1024 })},
		{"answers MAXBYTES min", "querylog {\n answers 64\n}", with(func(o *options) { o.answersMax = 64 })},
		{"answers MAXBYTES max", "querylog {\n answers 65536\n}", with(func(o *options) { o.answersMax = 65536 })},
		{"answers without MAXBYTES keeps 512", "querylog {\n answers\n}", with(func(*options) {})},
		{"lists may be given on several lines", "querylog {\n ignore a.example\n ignore b.example\n ignore_clients 10.0.0.1\n ignore_clients 10.0.0.2\n}", with(func(*options) {})},
		{"min_free size", "querylog {\n min_free 1GB\n}", with(func(o *options) { o.minFreeBytes = 1_000_000_000 })},
		{"min_free percent", "querylog {\n min_free 5%\n}", with(func(o *options) { o.minFreeBytes, o.minFreePercent = 0, 5 })},
		{"min_free 1%, as the README shows", "querylog {\n min_free 1%\n}", with(func(o *options) { o.minFreeBytes, o.minFreePercent = 0, 1 })},
		{"min_free off", "querylog {\n min_free 0\n}", with(func(o *options) { o.minFreeBytes = 0 })},
		{"min_free fractional percent", "querylog {\n min_free 2.5%\n}", with(func(o *options) { o.minFreeBytes, o.minFreePercent = 0, 2.5 })},
		{"min_free smallest percent", "querylog {\n min_free 0.01%\n}", with(func(o *options) { o.minFreeBytes, o.minFreePercent = 0, 0.01 })},
		{"min_free largest percent", "querylog {\n min_free 99.99%\n}", with(func(o *options) { o.minFreeBytes, o.minFreePercent = 0, 99.99 })},
		{"retention 100 years in days", "querylog {\n retention 36500d\n}", with(func(o *options) { o.retention = 36500 * 24 * time.Hour })},
		{"retention 100 years in hours", "querylog {\n retention 876000h\n}", with(func(o *options) { o.retention = 876000 * time.Hour })},
		{"every option", `querylog sub/all.db {
			buffer_size 100000
			batch_size 5000
			flush_interval 500ms
			adaptive 200ms 2s
			watermark 75%
			on_full block 20ms
			shutdown_timeout 1m
			retention 2d
			rollup_retention 30d
			rollup_limit 5000
			max_size 10MiB
			min_free 2%
			buffer_bytes 64MB
			answers 1000
		}`, options{
			path:            filepath.Join(dir, "sub", "all.db"),
			bufferSize:      100000,
			batchSize:       5000,
			flushInterval:   500 * time.Millisecond,
			adaptive:        true,
			minInterval:     200 * time.Millisecond,
			maxInterval:     2 * time.Second,
			watermark:       75,
			blockFor:        20 * time.Millisecond,
			shutdownTimeout: time.Minute,
			retention:       48 * time.Hour,
			rollupRetention: 30 * 24 * time.Hour,
			rollupLimit:     5000,
			maxSize:         10 << 20,
			minFreePercent:  2,
			bufferBytes:     64_000_000,
			answersMax:      1000,
		}},
		{"rollups kept for ever", "querylog {\n rollup_retention 0\n}", with(func(o *options) { o.rollupRetention = 0 })},
		{"rollup_limit bounds", "querylog {\n rollup_limit 10\n}", with(func(o *options) { o.rollupLimit = 10 })},
		{"rollups off", "querylog {\n rollup_limit 0\n}", with(func(o *options) { o.rollupLimit = 0 })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := parse(controller(tc.input, dir))
			if err != nil {
				t.Fatalf("parse(%q): unexpected error: %v", tc.input, err)
			}
			if got != tc.want {
				t.Errorf("parse(%q)\n got %+v\nwant %+v", tc.input, got, tc.want)
			}
		})
	}
	// parse must not create or modify anything.
	for _, p := range []string{filepath.Join(dir, defaultPath), filepath.Join(dir, "q.db"), abs} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("parse created %s (stat: %v)", p, err)
		}
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("parse changed the empty file: %v %v", fi, err)
	}
	// The defaults the README documents for operating options.
	if d := defaults(); d.retention != 7*24*time.Hour || d.maxSize != 0 || d.minFreeBytes != 100_000_000 {
		t.Errorf("defaults: retention %s, max_size %d, min_free %d; want 7d, none, 100MB", d.retention, d.maxSize, d.minFreeBytes)
	}
	if d := defaults(); d.bufferBytes != 32<<20 || d.answersMax != 512 {
		t.Errorf("defaults: buffer_bytes %d, answers %d; want 32MiB, 512", d.bufferBytes, d.answersMax)
	}
}

func TestParseFilter(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, defaultPath)
	tests := []struct {
		name  string
		input string
		want  filter
	}{
		{"none", "querylog", filter{}},
		{"anonymize defaults", "querylog {\n anonymize\n}", filter{anonV4: 24, anonV6: 56}},
		{"anonymize V4BITS", "querylog {\n anonymize 16\n}", filter{anonV4: 16, anonV6: 56}},
		{"anonymize V4BITS V6BITS", "querylog {\n anonymize 32 128\n}", filter{anonV4: 32, anonV6: 128}},
		{"anonymize hash, key beside the database", "querylog {\n anonymize hash\n}", filter{hash: true, keyFile: db + ".key"}},
		{"anonymize hash, key beside a named database", "querylog sub.db {\n anonymize hash\n}", filter{hash: true, keyFile: filepath.Join(dir, "sub.db.key")}},
		{"anonymize hash KEYFILE relative to root", "querylog {\n anonymize hash k.key\n}", filter{hash: true, keyFile: filepath.Join(dir, "k.key")}},
		{"anonymize hash absolute KEYFILE", "querylog {\n anonymize hash /etc/ql.key\n}", filter{hash: true, keyFile: "/etc/ql.key"}},
		{"anonymize hash KEYFILE with ? and #", "querylog {\n anonymize hash \"k?#.key\"\n}", filter{hash: true, keyFile: filepath.Join(dir, "k?#.key")}},
		{"ignore", "querylog {\n ignore Example.ORG local\n ignore arpa.\n}", filter{ignoreNames: []string{"example.org.", "local.", "arpa."}}},
		{"ignore_clients", "querylog {\n ignore_clients 10.1.2.3/8 192.0.2.1 2001:db8::/32\n}", filter{ignoreClients: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/32")}}},
		{"ignore_clients IPv4-mapped", "querylog {\n ignore_clients ::ffff:10.0.0.0/104 ::ffff:192.0.2.1\n}", filter{ignoreClients: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}}},
		{"metadata and answers", "querylog {\n metadata kubernetes/client-label/app geoip/country/code\n metadata kubernetes/client-label/app\n answers\n}",
			filter{metadata: []string{"kubernetes/client-label/app", "geoip/country/code"}, answers: true}},
		// The namespace and pod have columns of their own, always filled: listing them adds nothing.
		{"metadata of the namespace and pod", "querylog {\n metadata kubernetes/client-namespace geoip/country/code kubernetes/client-pod-name\n}",
			filter{metadata: []string{"geoip/country/code"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := parse(controller(tc.input, dir))
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.input, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parse(%q) filter\n got %+v\nwant %+v", tc.input, got, tc.want)
			}
		})
	}
}

// Without a root directive a relative PATH is relative to the working directory.
func TestParseDefaultPathWithoutRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := parse(caddy.NewTestController("dns", "querylog"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, defaultPath); o.path != want {
		t.Errorf("path = %q, want %q", o.path, want)
	}
}

func TestParseBad(t *testing.T) {
	dir := t.TempDir()
	block := func(lines ...string) string {
		return "querylog {\n" + strings.Join(lines, "\n") + "\n}"
	}
	tests := []struct {
		name  string
		input string
		want  []string // every one must appear in the error
	}{
		{"unknown option", block("foo bar"), []string{"foo"}},
		{"misspelled option", block("buffersize 10000"), []string{"buffersize"}},
		{"two PATH args", "querylog a.db b.db", []string{"PATH", "a.db b.db"}},
		{"option on the directive line", "querylog q.db buffer_size 10000", []string{"PATH", "q.db buffer_size 10000"}},
		{"PATH with a NUL byte", "querylog \"a\x00b.db\"", []string{"PATH", `a\x00b.db`, "NUL"}},
		{"KEYFILE with a NUL byte", block("anonymize hash \"a\x00b.key\""), []string{"KEYFILE", `a\x00b.key`, "NUL"}},

		{"buffer_size missing", block("buffer_size"), []string{"buffer_size", "got 0"}},
		{"buffer_size extra", block("buffer_size 10000 20000"), []string{"buffer_size", "10000 20000"}},
		{"buffer_size not a number", block("buffer_size lots"), []string{"buffer_size", "lots"}},
		{"buffer_size float", block("buffer_size 1e5"), []string{"buffer_size", "1e5"}},
		{"buffer_size too small", block("buffer_size 9999"), []string{"buffer_size", "9999"}},
		{"buffer_size too large", block("buffer_size 200001"), []string{"buffer_size", "200001"}},
		{"buffer_size negative", block("buffer_size -50000"), []string{"buffer_size", "-50000"}},

		{"rollup_limit too small", block("rollup_limit 9"), []string{"rollup_limit", `"9"`, "10 to 100000"}},
		{"rollup_limit not a number", block("rollup_limit all"), []string{"rollup_limit", "all"}},
		{"rollup_retention in words", block("rollup_retention 400 days"), []string{"rollup_retention", "400d"}},
		{"rollup_retention too short", block("rollup_retention 30s"), []string{"rollup_retention", "30s"}},
		{"metadata without labels", block("metadata"), []string{"metadata", "LABEL"}},
		{"metadata not a label", block("metadata geoip"), []string{"metadata", "geoip"}},
		{"answers with arguments", block("answers all"), []string{"answers", "all"}},
		{"answers MAXBYTES too small", block("answers 63"), []string{"answers", `"63"`, "64 to 65536"}},
		{"answers MAXBYTES too large", block("answers 65537"), []string{"answers", `"65537"`, "64 to 65536"}},
		{"answers MAXBYTES as a size", block("answers 1KB"), []string{"answers", `"1KB"`}},
		{"answers two arguments", block("answers 512 1024"), []string{"answers", "512 1024"}},
		{"buffer_bytes missing", block("buffer_bytes"), []string{"buffer_bytes", "got 0"}},
		{"buffer_bytes too small", block("buffer_bytes 999999"), []string{"buffer_bytes", `"999999"`, "1.0 MB to 16 GiB"}},
		{"buffer_bytes too large", block("buffer_bytes 17GiB"), []string{"buffer_bytes", "17GiB"}},
		{"buffer_bytes not a size", block("buffer_bytes lots"), []string{"buffer_bytes", "lots"}},
		{"buffer_bytes negative", block("buffer_bytes -1MB"), []string{"buffer_bytes", "-1MB"}},
		{"buffer_bytes with a comma, which humanize would drop", block("buffer_bytes 1,5GB"), []string{"buffer_bytes", "1,5GB", "no comma"}},
		{"max_size with a comma", block("max_size 1,000MB"), []string{"max_size", "1,000MB", "no comma"}},
		{"on_full given twice", block("on_full block 1s", "on_full drop"), []string{"on_full is given twice", "Testfile:2", "Testfile:3"}},

		{"batch_size missing", block("batch_size"), []string{"batch_size", "got 0"}},
		{"batch_size extra", block("batch_size 100 200"), []string{"batch_size", "100 200"}},
		{"batch_size not a number", block("batch_size ten"), []string{"batch_size", "ten"}},
		{"batch_size zero", block("batch_size 0"), []string{"batch_size", `"0"`}},
		{"batch_size negative", block("batch_size -1"), []string{"batch_size", "-1"}},
		{"batch_size too large", block("buffer_size 200000", "batch_size 50001"), []string{"batch_size", "50001"}},
		{"batch_size above buffer_size", block("buffer_size 10000", "batch_size 10001"), []string{"batch_size", "10001", "10000"}},
		{"batch_size above buffer_size, other order", block("batch_size 20000", "buffer_size 15000"), []string{"batch_size", "20000", "15000"}},

		{"flush_interval missing", block("flush_interval"), []string{"flush_interval", "got 0"}},
		{"flush_interval extra", block("flush_interval 1s 2s"), []string{"flush_interval", "1s 2s"}},
		{"flush_interval not a duration", block("flush_interval fast"), []string{"flush_interval", "fast"}},
		{"flush_interval without unit", block("flush_interval 10"), []string{"flush_interval", `"10"`}},
		{"flush_interval zero", block("flush_interval 0s"), []string{"flush_interval", "0s"}},
		{"flush_interval bare zero", block("adaptive off", "flush_interval 0"), []string{"flush_interval", `"0"`}},
		{"flush_interval negative", block("flush_interval -1s"), []string{"flush_interval", "-1s"}},
		{"flush_interval too long", block("adaptive off", "flush_interval 2h"), []string{"flush_interval", "2h"}},
		{"flush_interval below adaptive MIN", block("flush_interval 50ms"), []string{"flush_interval", "50ms"}},
		{"flush_interval above adaptive MAX", block("flush_interval 6s"), []string{"flush_interval", "6s"}},
		{"adaptive bounds exclude default flush_interval", block("adaptive 2s 3s"), []string{"flush_interval", "1s", "2s", "3s"}},

		{"adaptive missing", block("adaptive"), []string{"adaptive", `""`}},
		{"adaptive one duration", block("adaptive 1s"), []string{"adaptive", "1s"}},
		{"adaptive three args", block("adaptive 1s 2s 3s"), []string{"adaptive", "1s 2s 3s"}},
		{"adaptive on", block("adaptive on"), []string{"adaptive", "on"}},
		{"adaptive off with extra", block("adaptive off 1s"), []string{"adaptive", `"off"`}},
		{"adaptive MIN not a duration", block("adaptive soon 1s"), []string{"adaptive", "soon"}},
		{"adaptive MAX not a duration", block("adaptive 1s later"), []string{"adaptive", "later"}},
		{"adaptive MIN zero", block("adaptive 0s 1s"), []string{"adaptive", "0s"}},
		{"adaptive MAX zero", block("adaptive 100ms 0s"), []string{"adaptive", "0s"}},
		{"adaptive MIN negative", block("adaptive -1s 1s"), []string{"adaptive", "-1s"}},
		{"adaptive MAX negative", block("adaptive 1s -2s"), []string{"adaptive", "-2s"}},
		{"adaptive MAX too long", block("adaptive 1s 2h"), []string{"adaptive", "2h"}},
		{"adaptive MIN greater than MAX", block("adaptive 2s 1s"), []string{"adaptive", "2s", "1s"}},

		{"watermark missing", block("watermark"), []string{"watermark", "got 0"}},
		{"watermark extra", block("watermark 50 60"), []string{"watermark", "50 60"}},
		{"watermark zero", block("watermark 0"), []string{"watermark", `"0"`}},
		{"watermark 100", block("watermark 100"), []string{"watermark", "100"}},
		{"watermark 0%", block("watermark 0%"), []string{"watermark", "0%"}},
		{"watermark 100%", block("watermark 100%"), []string{"watermark", "100%"}},
		{"watermark not a number", block("watermark high"), []string{"watermark", "high"}},
		{"watermark fraction", block("watermark 50.5"), []string{"watermark", "50.5"}},
		{"watermark negative", block("watermark -5"), []string{"watermark", "-5"}},

		{"on_full missing", block("on_full"), []string{"on_full", `""`}},
		{"on_full block without duration", block("on_full block"), []string{"on_full", "block"}},
		{"on_full block zero", block("on_full block 0s"), []string{"on_full", "0s"}},
		{"on_full block negative", block("on_full block -50ms"), []string{"on_full", "-50ms"}},
		{"on_full block too long", block("on_full block 6s"), []string{"on_full", "6s"}},
		{"on_full block not a duration", block("on_full block soon"), []string{"on_full", "soon"}},
		{"on_full block extra", block("on_full block 1s 2s"), []string{"on_full", "block 1s 2s"}},
		{"on_full drop extra", block("on_full drop 1s"), []string{"on_full", "drop 1s"}},
		{"on_full unknown mode", block("on_full wait"), []string{"on_full", "wait"}},

		{"shutdown_timeout missing", block("shutdown_timeout"), []string{"shutdown_timeout", "got 0"}},
		{"shutdown_timeout extra", block("shutdown_timeout 5s 10s"), []string{"shutdown_timeout", "5s 10s"}},
		{"shutdown_timeout zero", block("shutdown_timeout 0s"), []string{"shutdown_timeout", "0s"}},
		{"shutdown_timeout negative", block("shutdown_timeout -5s"), []string{"shutdown_timeout", "-5s"}},
		{"shutdown_timeout too long", block("shutdown_timeout 11m"), []string{"shutdown_timeout", "11m"}},
		{"shutdown_timeout not a duration", block("shutdown_timeout never"), []string{"shutdown_timeout", "never"}},

		{"retention missing", block("retention"), []string{"retention", "got 0"}},
		{"retention extra", block("retention 1d 2d"), []string{"retention", "1d 2d"}},
		{"retention too short", block("retention 30s"), []string{"retention", "30s"}},
		{"retention negative days", block("retention -1d"), []string{"retention", "-1d"}},
		{"retention not a duration", block("retention forever"), []string{"retention", "forever"}},
		{"retention too many days", block("retention 36501d"), []string{"retention", "36501d"}},
		{"max_size missing", block("max_size"), []string{"max_size", "got 0"}},
		{"max_size too small", block("max_size 1KB"), []string{"max_size", "1KB"}},
		{"max_size not a size", block("max_size big"), []string{"max_size", "big"}},
		{"min_free missing", block("min_free"), []string{"min_free", "got 0"}},
		{"min_free 0%", block("min_free 0%"), []string{"min_free", "0%"}},
		{"min_free 100%", block("min_free 100%"), []string{"min_free", "100%"}},
		{"min_free not a size", block("min_free some"), []string{"min_free", "some"}},
		{"min_free negative", block("min_free -5MB"), []string{"min_free", "-5MB"}},
		{"min_free NaN%", block("min_free nan%"), []string{"min_free", "nan%"}},
		{"min_free below 0.01%", block("min_free 0.001%"), []string{"min_free", "0.001%"}},
		{"min_free above 99.99%", block("min_free 99.999%"), []string{"min_free", "99.999%"}},
		{"min_free percent without digits", block("min_free .5%"), []string{"min_free", ".5%"}},
		{"retention days that would wrap", block("retention 106751991167300d"), []string{"retention", "106751991167300d"}},
		{"min_free NaN% in capitals", block("min_free NaN%"), []string{"min_free", "NaN%"}},
		{"min_free inf%", block("min_free inf%"), []string{"min_free", "inf%"}},
		{"min_free -inf%", block("min_free -Inf%"), []string{"min_free", "-Inf%"}},
		{"min_free exponent%", block("min_free 1e-300%"), []string{"min_free", "1e-300%"}},
		{"min_free hex float%", block("min_free 0x1p-2%"), []string{"min_free", "0x1p-2%"}},
		{"min_free NaN bytes", block("min_free NaN"), []string{"min_free", "NaN"}},
		{"min_free infinite bytes", block("min_free +InfMB"), []string{"min_free", "+InfMB"}},
		{"max_size NaN", block("max_size NaNGB"), []string{"max_size", "NaNGB"}},
		{"max_size beyond 1 PiB", block("max_size 2PiB"), []string{"max_size", "2PiB"}},
		{"retention in hours beyond 100 years", block("retention 900000h"), []string{"retention", "900000h"}},
		{"anonymize V4BITS too large", block("anonymize 33"), []string{"anonymize", "33"}},
		{"anonymize V4BITS zero", block("anonymize 0"), []string{"anonymize", `"0"`}},
		{"anonymize V6BITS too large", block("anonymize 24 129"), []string{"anonymize", "129"}},
		{"anonymize three args", block("anonymize 24 56 8"), []string{"anonymize", "24 56 8"}},
		{"anonymize hash two KEYFILEs", block("anonymize hash a.key b.key"), []string{"anonymize hash", "a.key b.key"}},
		{"ignore missing", block("ignore"), []string{"ignore", "NAME"}},
		{"ignore_clients missing", block("ignore_clients"), []string{"ignore_clients", "CIDR"}},
		{"ignore_clients bad prefix length", block("ignore_clients 10.0.0.0/33"), []string{"ignore_clients", "10.0.0.0/33"}},
		{"ignore_clients not an address", block("ignore_clients 10.0.0.0/8 office"), []string{"ignore_clients", "office"}},
		{"ignore_clients IPv4-mapped shorter than /96", block("ignore_clients ::ffff:0.0.0.0/95"), []string{"ignore_clients", "::ffff:0.0.0.0/95", "/96"}},
		{"ignore_clients with a zone", block("ignore_clients fe80::1%eth0"), []string{"ignore_clients", "fe80::1%eth0", "zone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(controller(tc.input, dir))
			wantErr(t, tc.input, err, tc.want...)
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("parse left files in %s: %v %v", dir, entries, err)
	}
}

// TestParseErrorMessages checks the exact message and line of errors a new user meets: each
// must point at the line to change and say what is wrong in the user's terms.
func TestParseErrorMessages(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, input string
		want        string // the whole message after "Testfile:"
	}{
		{"folder does not exist", "querylog nope/q.db",
			`1 - Error during parsing: querylog PATH "` + dir + `/nope/q.db": folder ` + dir + `/nope does not exist`},
		{"folder does not exist, block after it", "querylog nope/q.db {\n buffer_size 10000\n}",
			`1 - Error during parsing: querylog PATH "` + dir + `/nope/q.db": folder ` + dir + `/nope does not exist`},
		{"folder is a file", "querylog file/q.db",
			`1 - Error during parsing: querylog PATH "` + dir + `/file/q.db": ` + dir + `/file is not a folder`},
		{"folder that takes no files", "querylog /proc/querylog.db",
			`1 - Error during parsing: querylog PATH "/proc/querylog.db": folder /proc does not accept new files`},
		{"flush_interval outside the adaptive bounds", "querylog {\n buffer_size 10000\n flush_interval 10s\n retention 7d\n}",
			"3 - Error during parsing: flush_interval 10s must lie within the adaptive bounds 100ms..5s (widen them with adaptive MIN MAX, or set adaptive off)"},
		{"adaptive bounds exclude the default flush_interval", "querylog {\n adaptive 2s 3s\n retention 7d\n}",
			"2 - Error during parsing: flush_interval 1s must lie within the adaptive bounds 2s..3s (widen them with adaptive MIN MAX, or set adaptive off)"},
		{"batch_size above buffer_size", "querylog {\n batch_size 20000\n buffer_size 15000\n retention 7d\n}",
			"2 - Error during parsing: batch_size 20000 must not exceed buffer_size 15000"},
		{"two querylog lines in one block", "querylog\nquerylog",
			"2 - Error during parsing: this plugin can only be used once per Server Block"},
		{"retention 7 days", "querylog {\n retention 7 days\n}",
			`2 - Error during parsing: retention needs 1 argument(s), got 2: "7 days" (did you mean 7d?)`},
		{"retention 1 day", "querylog {\n retention 1 day\n}",
			`2 - Error during parsing: retention needs 1 argument(s), got 2: "1 day" (did you mean 1d?)`},
		{"retention 2 weeks", "querylog {\n retention 2 weeks\n}",
			`2 - Error during parsing: retention needs 1 argument(s), got 2: "2 weeks" (did you mean 14d?)`},
		{"retention 12 hours", "querylog {\n retention 12 hours\n}",
			`2 - Error during parsing: retention needs 1 argument(s), got 2: "12 hours" (did you mean 12h?)`},
		{"retention 7 d", "querylog {\n retention 7 d\n}",
			`2 - Error during parsing: retention needs 1 argument(s), got 2: "7 d" (did you mean 7d?)`},
		{"retention 3w", "querylog {\n retention 3w\n}",
			`2 - Error during parsing: retention: invalid value "3w": must be 0, a duration from 1m, or days such as 30d, up to 36500d (did you mean 21d?)`},
		{"retention 7days", "querylog {\n retention 7days\n}",
			`2 - Error during parsing: retention: invalid value "7days": must be 0, a duration from 1m, or days such as 30d, up to 36500d (did you mean 7d?)`},
		{"flush_interval without a unit", "querylog {\n flush_interval 5\n}",
			`2 - Error during parsing: flush_interval: invalid duration "5": missing unit, e.g. 5s`},
		{"on_full block without a unit", "querylog {\n on_full block 20\n}",
			`2 - Error during parsing: on_full block: invalid duration "20": missing unit, e.g. 20s`},
		{"misspelled option", "querylog {\n bufer_size 10000\n}",
			`2 - Error during parsing: unknown property "bufer_size" (did you mean buffer_size?)`},
		{"option without its underscore", "querylog {\n buffersize 10000\n}",
			`2 - Error during parsing: unknown property "buffersize" (did you mean buffer_size?)`},
		{"swapped letters", "querylog {\n retnetion 7d\n}",
			`2 - Error during parsing: unknown property "retnetion" (did you mean retention?)`},
		{"unknown option, nothing near", "querylog {\n compress on\n}",
			`2 - Error during parsing: unknown property "compress"`},
		{"max_size in two words", "querylog {\n max_size 2 GB\n}",
			`2 - Error during parsing: max_size needs 1 argument(s), got 2: "2 GB" (did you mean 2GB?)`},
		{"min_free in two words", "querylog {\n min_free 1.5 GiB\n}",
			`2 - Error during parsing: min_free needs 1 argument(s), got 2: "1.5 GiB" (did you mean 1.5GiB?)`},
		{"buffer_bytes in two words", "querylog {\n buffer_bytes 64 mb\n}",
			`2 - Error during parsing: buffer_bytes needs 1 argument(s), got 2: "64 mb" (did you mean 64mb?)`},
		{"max_size two words that are no size", "querylog {\n max_size 2 lots\n}",
			`2 - Error during parsing: max_size needs 1 argument(s), got 2: "2 lots"`},
		{"option given twice", "querylog {\n watermark 50\n retention 7d\n watermark 60\n}",
			"4 - Error during parsing: watermark is given twice, at Testfile:2 and Testfile:4; keep one"},
		{"anonymize hash KEYFILE in a missing folder", "querylog {\n anonymize hash nope/k\n retention 7d\n}",
			`2 - Error during parsing: anonymize hash KEYFILE "` + dir + `/nope/k": folder ` + dir + `/nope does not exist`},
		{"anonymize hash KEYFILE under a file", "querylog {\n anonymize hash file/k\n}",
			`2 - Error during parsing: anonymize hash KEYFILE "` + dir + `/file/k": ` + dir + `/file is not a folder`},
		{"node without ship points at node", "querylog {\n node ns1\n retention 7d\n}",
			"2 - Error during parsing: node, ship_password and ship_ca need a ship line"},
		{"ship_password without ship points at it", "querylog {\n retention 7d\n ship_password env X\n}",
			"3 - Error during parsing: node, ship_password and ship_ca need a ship line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(controller(tc.input, dir))
			if err == nil {
				t.Fatalf("parse(%q): no error", tc.input)
			}
			if got := err.Error(); got != "Testfile:"+tc.want {
				t.Errorf("parse(%q):\n got %s\nwant Testfile:%s", tc.input, got, tc.want)
			}
		})
	}
}

func TestParseTwice(t *testing.T) {
	dir := t.TempDir()
	for _, input := range []string{
		"querylog\nquerylog",
		"querylog a.db\nquerylog b.db",
		"querylog {\n buffer_size 10000\n}\nquerylog",
	} {
		_, _, err := parse(controller(input, dir))
		if !errors.Is(err, plugin.ErrOnce) {
			t.Errorf("parse(%q) = %v, want plugin.ErrOnce", input, err)
		}
	}
}

// TestParseBadFile covers PATH values whose folder or file cannot be used. The error must name
// the file.
func TestParseBadFile(t *testing.T) {
	dir := t.TempDir()

	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	createOtherDB(t, other, false)
	future := filepath.Join(dir, "future.db")
	createQuerylogDB(t, future, schemaVersion+1)
	folder := filepath.Join(dir, "folder.db")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(readOnly, 0o755) })

	tests := []struct {
		name  string
		input string
		want  []string
		skip  string
	}{
		{name: "folder does not exist", input: "querylog nope/q.db", want: []string{filepath.Join(dir, "nope", "q.db")}},
		{name: "absolute, folder does not exist", input: "querylog /nonexistent-ql/q.db", want: []string{"/nonexistent-ql/q.db"}},
		{name: "folder under /proc", input: "querylog /proc/querylog.db", want: []string{"/proc/querylog.db"}},
		{name: "folder under /proc/sys", input: "querylog /proc/sys/querylog.db", want: []string{"/proc/sys/querylog.db"}},
		{name: "folder mode 0500", input: "querylog ro/q.db", want: []string{filepath.Join(readOnly, "q.db")},
			skip: skipIfRoot("root may create files in a 0500 folder")},
		{name: "text file", input: "querylog notes.txt", want: []string{text}},
		{name: "text file, absolute", input: "querylog " + text, want: []string{text}},
		{name: "another application's SQLite database", input: "querylog other.db", want: []string{other, "not a querylog database"}},
		{name: "querylog database from a newer build", input: "querylog future.db", want: []string{future, fmt.Sprintf("schema version %d", schemaVersion+1)}},
		{name: "a folder", input: "querylog folder.db", want: []string{folder}},
		{name: "a device", input: "querylog /dev/null", want: []string{"/dev/null"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			_, _, err := parse(controller(tc.input, dir))
			wantErr(t, tc.input, err, tc.want...)
		})
	}

	// Refused files are left as they were.
	if b, err := os.ReadFile(text); err != nil || string(b) != "not a database\n" {
		t.Errorf("text file changed: %q %v", b, err)
	}
	if _, err := os.Stat("/proc/querylog.db"); err == nil {
		t.Errorf("/proc/querylog.db exists")
	}
}

// TestParseWarnsReadableByAll: an existing database (or its -wal, -shm) that every user may
// read is accepted, since its mode is the operator's choice, but a warning names it once per
// Corefile load. Files readable only by owner and group give no warning.
func TestParseWarnsReadableByAll(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.db")
	createQuerylogDB(t, open, 0)
	private := filepath.Join(dir, "private.db")
	createQuerylogDB(t, private, 0)
	if err := os.WriteFile(private+"-wal", nil, 0o600); err != nil { // as a stopped CoreDNS leaves it
		t.Fatal(err)
	}
	for path, perm := range map[string]os.FileMode{open: 0o644, private: 0o640, private + "-wal": 0o604} {
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
	}
	logged := testutil.CaptureLog(t)
	if _, _, err := parse(controller("querylog open.db", dir)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parse(controller("querylog private.db", dir)); err != nil {
		t.Fatal(err)
	}
	out := logged.String()
	for _, want := range []string{
		"[WARNING] plugin/querylog: " + open + " is readable by every user (mode 0644)",
		"[WARNING] plugin/querylog: " + private + "-wal is readable by every user (mode 0604)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not contain %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "[WARNING]"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, out)
	}
}

// A folder mode 0500 is usable for root, which may create files anywhere the file system allows.
func TestParseReadOnlyFolderAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parse(controller("querylog q.db", ro)); err != nil {
		t.Errorf("parse: %v", err)
	}
}

func TestSetupWrapsErrors(t *testing.T) {
	err := setup(controller("querylog {\n buffer_size 5\n}", t.TempDir()))
	wantErr(t, "buffer_size 5", err, "plugin/querylog", "buffer_size", `"5"`)
}

// Two server blocks of one Corefile (one generation) that name the same database must use
// identical options, since they share one writer.
func TestSetupSameFileTwoBlocks(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.db")
	createQuerylogDB(t, q, 0)
	if err := os.Symlink(q, filepath.Join(dir, "link.db")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		first, second string
		shouldErr     bool
	}{
		{"identical", "querylog q.db", "querylog q.db", false},
		{"identical, relative and absolute", "querylog q.db", "querylog " + q, false},
		{"identical, explicit defaults", "querylog q.db", "querylog q.db {\n buffer_size 50000\n watermark 80%\n on_full drop\n}", false},
		{"different files, different options", "querylog a.db", "querylog b.db {\n buffer_size 10000\n}", false},
		{"different buffer_size", "querylog q.db", "querylog q.db {\n buffer_size 10000\n}", true},
		{"different batch_size", "querylog q.db {\n batch_size 10\n}", "querylog q.db", true},
		{"different adaptive", "querylog q.db", "querylog " + q + " {\n adaptive off\n}", true},
		{"different on_full", "querylog q.db {\n on_full block 10ms\n}", "querylog q.db {\n on_full block 20ms\n}", true},
		{"different shutdown_timeout", "querylog q.db", "querylog q.db {\n shutdown_timeout 1m\n}", true},
		{"different watermark, same file through a symlink", "querylog q.db", "querylog link.db {\n watermark 50\n}", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c1 := controller(tc.first, dir)
			if err := setup(c1); err != nil {
				t.Fatalf("first block: %v", err)
			}
			// A second server block of the same Corefile: same instance, next block index.
			c2 := *c1
			c2.Dispenser = caddyfile.NewDispenser("Testfile", strings.NewReader(tc.second))
			c2.ServerBlockIndex = 1
			dnsserver.GetConfig(&c2).Root = dir
			err := setup(&c2)
			if !tc.shouldErr {
				if err != nil {
					t.Fatalf("second block: %v", err)
				}
				if n := handlersOf(&c2); n != 2 {
					t.Errorf("generation has %d handlers, want 2", n)
				}
				return
			}
			if err == nil {
				t.Fatalf("second block %q: no error, want one about differing options", tc.second)
			}
			if !strings.Contains(err.Error(), "plugin/querylog") || !strings.Contains(err.Error(), "identical") {
				t.Errorf("error %q does not say the options must be identical", err)
			}
			if !strings.Contains(err.Error(), q) && !strings.Contains(err.Error(), filepath.Join(dir, "link.db")) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestGenerationAdd(t *testing.T) {
	o := defaults()
	o.path = "/x/q.db"
	other := o
	other.bufferSize = 10000
	elsewhere := other
	elsewhere.path = "/x/r.db"

	g := &generation{}
	for i, tc := range []struct {
		opts      options
		shouldErr bool
	}{
		{o, false},
		{o, false},
		{elsewhere, false},
		{other, true},
		{elsewhere, false},
	} {
		err := g.add(&QueryLog{opts: tc.opts})
		if (err != nil) != tc.shouldErr {
			t.Errorf("add #%d: err = %v, want error: %v", i, err, tc.shouldErr)
		}
		if err != nil && !strings.Contains(err.Error(), "/x/q.db") {
			t.Errorf("add #%d: error %q does not name the file", i, err)
		}
	}
	if len(g.handlers) != 4 {
		t.Errorf("generation has %d handlers, want 4 (the refused one is not added)", len(g.handlers))
	}
}

func wantErr(t *testing.T, input string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("parse(%q): no error, want one containing %q", input, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("parse(%q): error %q does not contain %q", input, err, w)
		}
	}
}

func skipIfRoot(why string) string {
	if os.Geteuid() == 0 {
		return "running as root: " + why
	}
	return ""
}

// createQuerylogDB creates a querylog database at path; a version above 0 is then written
// into PRAGMA user_version.
func createQuerylogDB(t *testing.T, path string, version int) {
	t.Helper()
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if version > 0 {
		testutil.Exec(t, path, fmt.Sprintf("PRAGMA user_version = %d", version))
	}
}

// createOtherDB creates an SQLite database of some other application, in WAL mode if wal.
func createOtherDB(t *testing.T, path string, wal bool) {
	t.Helper()
	pragma := ""
	if wal {
		pragma = "PRAGMA journal_mode = WAL; "
	}
	testutil.Exec(t, path, pragma+`CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO accounts (name) VALUES ('alice'), ('bob')`)
}

// TestParseOptionGroups checks that parseOption hands every option of the block to a group's
// parser: given without arguments, each is either accepted or refused for its arguments, never
// an unknown property.
func TestParseOptionGroups(t *testing.T) {
	dir := t.TempDir()
	for _, name := range blockOptions {
		_, _, err := parse(controller("querylog q.db {\n "+name+"\n}", dir))
		if err != nil && strings.Contains(err.Error(), "unknown property") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
