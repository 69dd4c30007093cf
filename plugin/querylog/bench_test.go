package querylog

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
	ot "github.com/opentracing/opentracing-go"

	"github.com/querylog/querylog/internal/rawsql"
)

// benchEntries makes n entries of the skewed mix.
func benchEntries(n int) []entry { return benchMix("skewed", n) }

// benchMix makes n entries (labels numbered by testLabels) of a named query mix, 10,000 a second: skewed (20,000 names with a
// Zipf popularity, 500 clients, about 10% NXDOMAIN), unique (every name new, as in a
// random-subdomain flood, all NXDOMAIN) or kube (skewed, from pods: see kubeMix).
func benchMix(mix string, n int) []entry {
	if mix == "kube" {
		return kubeMix(benchMix("skewed", n))
	}
	r := rand.New(rand.NewPCG(1, 2))
	names := rand.NewZipf(r, 1.1, 1, 20000-1)
	server, cache := uint8(testLabels.id(labelServer, "dns://:53")), uint8(testLabels.id(labelPlugin, "cache"))
	types := []uint16{dns.TypeA, dns.TypeA, dns.TypeA, dns.TypeA, dns.TypeA, dns.TypeAAAA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypePTR, dns.TypeTXT}
	now := time.Now().UnixNano()
	out := make([]entry, n)
	for i := range out {
		e := entry{
			start:    now + int64(i)*100_000,
			duration: uint32(50 + r.IntN(2000)),
			size:     uint32(60 + r.IntN(200)),
			qtype:    types[r.IntN(len(types))],
			qclass:   dns.ClassINET,
			answers:  1,
			server:   server,
			plugin:   cache,
			flags:    flagRD | flagRA,
		}
		if mix == "unique" {
			e.qname = fmt.Sprintf("%016x.nx.bench.test.", r.Uint64())
		} else {
			k := names.Uint64()
			e.qname = fmt.Sprintf("host%d.domain%d.example.com.", k, k%997)
		}
		if mix == "unique" || r.IntN(10) == 0 {
			e.rcode, e.answers = dns.RcodeNameError, 0
		}
		c := r.IntN(500)
		e.setAddr(netip.AddrFrom4([4]byte{10, 0, byte(c >> 8), byte(c)}))
		out[i] = e
	}
	return out
}

// kubeMix makes the skewed entries what a cluster's CoreDNS logs with the metadata plugin on
// and the metadata option listing the kubernetes plugin's two client labels: each of the 500
// clients is a pod (kubePods) with its namespace and pod name; the cache answers about 80%
// (plugin cache), the misses are answered by kubernetes or forward (through one upstream, in
// 2-80 ms); every entry has a source port and DNS id, and about 1% are retransmissions (the
// same client, port, id, name and type 1-4.9 s after the query they repeat). Its own random
// source, so that the skewed entries under it are those of the skewed mix. Of 200,000 entries:
// 38 namespaces, 500 pods, 79.8% hits, 1,984 retransmissions.
func kubeMix(out []entry) []entry {
	r := rand.New(rand.NewPCG(3, 4))
	pods := kubePods(r, 500)
	cache, kubernetes, forward := uint8(testLabels.id(labelPlugin, "cache")), uint8(testLabels.id(labelPlugin, "kubernetes")), uint8(testLabels.id(labelPlugin, "forward"))
	upstream := testLabels.id(labelUpstream, "10.0.0.2:53")
	// As the handler makes them with `metadata kubernetes/client-namespace
	// kubernetes/client-pod-name` (labels the option ignores: they have columns of their own):
	// one per pod, which its entries share (podExtras).
	extras := make([]*extra, len(pods))
	for c, p := range pods {
		extras[c] = &extra{namespace: p.namespace, pod: p.pod}
	}
	for i := range out {
		e := &out[i]
		a := e.addr().As4()
		c := int(a[2])<<8 | int(a[3]) // the client's number, from benchMix's address
		e.extra = extras[c]
		e.port, e.id = uint16(32768+r.IntN(28232)), uint16(r.Uint32())
		switch k := r.IntN(100); {
		case k < 80:
			e.cache = cacheHit
		case k < 90:
			e.cache, e.plugin, e.duration = cacheMiss, kubernetes, uint32(100+r.IntN(900))
		default:
			e.cache, e.plugin, e.upstream, e.duration = cacheMiss, forward, upstream, uint32(2000+r.IntN(78000))
		}
		e.plugin = cmp.Or(e.plugin, cache)
	}
	const later = 49_000 // 4.9 s at 10,000 entries a second
	for range len(out) / 100 {
		if len(out) <= later {
			break
		}
		i := r.IntN(len(out) - later)
		j := i + 10_000 + r.IntN(later-10_000) // 1-4.9 s later
		first, again := &out[i], &out[j]
		again.client, again.flags, again.extra = first.client, first.flags, first.extra
		again.port, again.id, again.qname, again.qtype, again.rcode, again.answers = first.port, first.id, first.qname, first.qtype, first.rcode, first.answers
	}
	return out
}

// kubePod is a client of the kube mix.
type kubePod struct{ namespace, pod string }

// kubePods makes n pods in up to 40 namespaces of skewed sizes (the first holds about a third
// of them), named as a Deployment's: the app, its ReplicaSet's hash and the pod's own suffix, as
// in web-7d9f8c6b5-x2k4q.
func kubePods(r *rand.Rand, n int) []kubePod {
	const hashChars = "bcdfghjklmnpqrstvwxz2456789" // Kubernetes' SafeEncodeString alphabet
	suffix := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = hashChars[r.IntN(len(hashChars))]
		}
		return string(b)
	}
	teams := []string{"checkout", "payments", "search", "catalog", "identity", "ledger", "notify", "media", "ads", "growth"}
	envs := []string{"prod", "staging", "dev", "canary"}
	apps := []string{"web", "api", "worker", "frontend", "gateway", "scheduler", "consumer", "exporter"}
	namespaces := rand.NewZipf(r, 1.3, 1, 39)
	replicaSets := map[[2]int]string{} // namespace and app: the ReplicaSet's hash
	pods := make([]kubePod, n)
	for i := range pods {
		ns := int(namespaces.Uint64())
		app := r.IntN(len(apps))
		rs, ok := replicaSets[[2]int{ns, app}]
		if !ok {
			rs = suffix(9 + r.IntN(2))
			replicaSets[[2]int{ns, app}] = rs
		}
		pods[i] = kubePod{teams[ns%len(teams)] + "-" + envs[ns/len(teams)], apps[app] + "-" + rs + "-" + suffix(5)}
	}
	return pods
}

// benchStore opens a store with its checkpointer running, as a writer has them.
func benchStore(b *testing.B, name string) (*store, *checkpointer) {
	path := filepath.Join(b.TempDir(), name)
	s, err := openStore(path)
	if err != nil {
		b.Fatal(err)
	}
	s.use(&testLabels, &keyring{})
	ckpt, err := startCheckpointer(path, defaultCheckpointEvery)
	if err != nil {
		b.Fatal(err)
	}
	return s, ckpt
}

// BenchmarkStoreWrite measures the writer's ingest through the real store, the three query
// mixes (kube: the skewed one with what a cluster adds, for issue 22's 44 B a row), schema 2
// (with rollups, and without: rollup_limit 0) against schema 1's layout (rows of text,
// indexed by ts; v1Store below), in one run: CPU time per row (ns/op, one op a row), rows/s and
// bytes per row on disk, every index and dictionary included. Batches of 1000 rows, as the
// flusher writes them by default.
//
// schema=v2-driver is the floor under schema 2: the same INSERTs of the same log rows, their
// values made beforehand, so that it costs only what the driver, SQLite and the file do. What
// v2-norollups costs above it is the writer's own work (dictionaries, packing, boxing).
//
// Each schema 2 layout also reports its CPU per row as a share of schema 1's, measured just
// before it (x-v1-cpu): this machine's speed moves by tens of percent from hour to hour, and
// the share much less. -count repeats each layout before the next, so the pairs are adjacent
// only when the command itself is repeated:
//
//	for i in 1 2 3 4 5; do go test -run '^$' -bench StoreWrite -benchtime 1000000x ./plugin/querylog/; done
func BenchmarkStoreWrite(b *testing.B) {
	for _, mix := range []string{"skewed", "unique", "kube"} {
		entries := benchMix(mix, 200_000)
		var v1CPU float64 // schema 1's CPU per row, from the last run of mix
		for _, layout := range []string{"v1", "v2", "v2-norollups", "v2-driver"} {
			b.Run(fmt.Sprintf("mix=%s/schema=%s", mix, layout), func(b *testing.B) {
				var write func(off, n int) error
				var used func() (int64, error)
				if layout == "v1" {
					s := openV1Store(b, filepath.Join(b.TempDir(), "bench.db"))
					write, used = func(off, n int) error { return s.write(entries[off : off+n]) }, func() (int64, error) { return usedBytes(s.db) }
				} else {
					s, ckpt := benchStore(b, "bench.db")
					defer s.close()
					defer ckpt.close()
					switch layout {
					case "v2-norollups":
						s.state.rollups.configure(0)
					case "v2-driver":
						write = driverWriter(b, s, entries)
					}
					if write == nil {
						write = func(off, n int) error { return s.write(entries[off : off+n]) }
					}
					used = func() (int64, error) { return usedBytes(s.db) }
				}
				cpu := benchWrite(b, entries, 1000, write, used)
				if layout == "v1" {
					v1CPU = cpu
				} else if v1CPU > 0 {
					b.ReportMetric(cpu/v1CPU, "x-v1-cpu")
				}
			})
		}
	}
}

// BenchmarkBatchSize measures the write cost by rows per transaction (batch_size), as
// BenchmarkStoreWrite does: schema 2, skewed mix, rollups on.
//
//	go test -run '^$' -bench BatchSize -benchtime 1000000x -count 3 ./plugin/querylog/
func BenchmarkBatchSize(b *testing.B) {
	entries := benchMix("skewed", 200_000)
	for _, batch := range []int{100, 1000, 5000, 20000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, ckpt := benchStore(b, "bench.db")
			defer s.close()
			defer ckpt.close()
			benchWrite(b, entries, batch, func(off, n int) error { return s.write(entries[off : off+n]) }, func() (int64, error) { return usedBytes(s.db) })
		})
	}
}

// benchWrite writes b.N rows of entries, batch rows per write (of entries[off:off+n]), each
// pass later in time than the one before, and reports rows/s, CPU per row and bytes per row on
// disk (used). It returns the CPU per row, in µs.
func benchWrite(b *testing.B, entries []entry, batch int, write func(off, n int) error, used func() (int64, error)) float64 {
	start := cpuTime()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		off := done % (len(entries) - batch)
		for i := range n { // later than everything before, as time goes on
			entries[off+i].start += int64(len(entries)) * 100_000
		}
		if err := write(off, n); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	cpu := float64((cpuTime() - start).Microseconds()) / float64(b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(cpu, "cpu-µs/row")
	if bytes, err := used(); err == nil {
		b.ReportMetric(float64(bytes)/float64(b.N), "B/row")
	}
	return cpu
}

// driverWriter writes log rows of entries as the store's writer binds them once the texts that
// repeat are in the dictionaries, with their values made here, beforehand, and boxed once: one
// transaction per write, its rows in the writer's multi-row INSERTs and nothing else.
func driverWriter(b *testing.B, s *store, entries []entry) func(off, n int) error {
	if err := s.resolveLabels([][]entry{entries}); err != nil {
		b.Fatal(err)
	}
	segments := [][]entry{entries}
	if err := s.addColumns(segments); err != nil { // the kube mix's pod and cache
		b.Fatal(err)
	}
	k := columnsOf(segments)
	bt := &s.state
	bt.rollups.configure(0)
	for range 2 { // the second pass finds nearly every text in the dictionaries
		bt.vals = bt.vals[:0]
		for i := range entries {
			bt.appendRow(&entries[i], entries[i].start/1e6<<8, k)
		}
	}
	vals := slices.Clone(bt.vals)
	cols := len(k.columns())
	ctx := context.Background()
	return func(off, n int) error {
		return s.withConn(ctx, func(dc driver.Conn) error {
			bt.use(dc)
			return rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error {
				_, err := bt.insertAll(ctx, dc, k, vals[off*cols:(off+n)*cols])
				return err
			})
		})
	}
}

// BenchmarkAppendRow measures the writer's own work per row of the kube mix, what writeRows
// does before SQLite sees a batch: the dictionaries, the retransmission check, the rollup
// counts, packing and boxing (appendRow), in batches of 1000 rows numbered as writeRows numbers
// them. No file and no other goroutine, so that under callgrind the instructions per row repeat
// exactly (BenchmarkStoreWrite's also count SQLite, the checkpointer and the rollups' flushes,
// whose number depends on where the minutes fall); the mix starts on a whole minute for the
// same reason.
//
//	go test -run '^$' -bench AppendRow -benchmem ./plugin/querylog/
func BenchmarkAppendRow(b *testing.B) {
	entries := benchMix("kube", 200_000)
	shift := -(entries[0].start % int64(time.Minute))
	for i := range entries {
		entries[i].start += shift
	}
	ws := newWriteState(&testLabels, &keyring{}, 0, 0, 1, 1, 1)
	ws.rollups.catchingUp = false  // as in a store whose rows are all counted: rollups live
	for kind := range ws.dbLabel { // as resolveLabels leaves them: every label has its number
		ws.dbLabel[kind] = make([]int64, 256)
		for i := range ws.dbLabel[kind] {
			ws.dbLabel[kind][i] = int64(i)
		}
	}
	k := stmtKey{table: "log", cluster: true}
	const batch = 1000
	b.ReportAllocs()
	i, id := 0, int64(0)
	for b.Loop() {
		e := &entries[i%len(entries)]
		if i%batch == 0 { // a batch written: what writeRows does after its transaction
			ws.names.pending, ws.clients.pending, ws.pods.pending = ws.names.pending[:0], ws.clients.pending[:0], ws.pods.pending[:0]
			ws.retries.pending = ws.retries.pending[:0]
			clear(ws.vals)
			ws.vals = ws.vals[:0]
			last := &entries[min(i%len(entries)+batch, len(entries))-1]
			id = max(id+1, last.start/1e6<<8) // entries come in time order: the batch's newest
		}
		ws.appendRow(e, id, k)
		id++
		i++
		if i%len(entries) == 0 { // the next pass later in time than everything before
			for j := range entries {
				entries[j].start += int64(len(entries)) * 100_000
			}
		}
	}
}

// BenchmarkRollupCatchUp measures counting rows for the rollups after the fact (at open, after
// a failed batch, or once rollups are turned back on), per row: what a catch-up chunk of
// rollupCatchUpRows delays a batch by.
//
//	go test -run '^$' -bench RollupCatchUp -benchtime 200000x ./plugin/querylog/
func BenchmarkRollupCatchUp(b *testing.B) {
	s, ckpt := benchStore(b, "catchup.db")
	defer s.close()
	defer ckpt.close()
	s.state.rollups.configure(0)
	entries := benchMix("skewed", b.N)
	for done := 0; done < b.N; done += 1000 {
		if err := s.write(entries[done:min(done+1000, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	s.state.rollups.configure(defaultRollupLimit)
	b.ResetTimer()
	for s.state.rollups.catchingUp {
		if err := s.catchUpRollups(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if r := s.state.rollups; r.counted != s.state.lastID {
		b.Fatalf("counted up to %d, want %d", r.counted, s.state.lastID)
	}
}

// BenchmarkRollupFlush measures one flush of the rollups' counts (rollups.flush, every
// rollupEvery in a writer's batch transaction) after 100,000 rows of the kube mix, the rows of a
// few seconds at a busy server's rate: CPU per flush, the writes of the rows excluded. Each op
// counts the rows a minute later than the op before, so each flush writes new minutes.
//
//	go test -run '^$' -bench RollupFlush -benchtime 20x -count 5 ./plugin/querylog/
func BenchmarkRollupFlush(b *testing.B) {
	s, ckpt := benchStore(b, "flush.db")
	defer s.close()
	defer ckpt.close()
	entries := benchMix("kube", 100_000)
	r := s.state.rollups
	var cpu time.Duration
	for range b.N {
		for off := 0; off < len(entries); off += 1000 {
			for i := off; i < off+1000; i++ {
				entries[i].start += time.Minute.Nanoseconds()
			}
			r.flushed = time.Now() // counted, not flushed, until the flush measured below
			if err := s.write(entries[off : off+1000]); err != nil {
				b.Fatal(err)
			}
		}
		start := cpuTime()
		if err := s.flushRollups(); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/flush")
}

// BenchmarkNameCountsFlush measures one flush of the rows counted per names number
// (nameCounts.flush: at most once a minute, after a batch) after a minute of the kube mix at
// 10,000 queries a second, 600,000 rows: CPU per flush, the writes of the rows excluded, and
// the names rows it updates.
//
//	go test -run '^$' -bench NameCountsFlush -benchtime 5x -count 3 ./plugin/querylog/
func BenchmarkNameCountsFlush(b *testing.B) {
	s, ckpt := benchStore(b, "counts.db")
	defer s.close()
	defer ckpt.close()
	entries := benchMix("kube", 200_000)
	c := &s.state.counts
	c.every = time.Hour // flushed below only
	var cpu time.Duration
	updated := 0
	for range b.N {
		for range 3 {
			for off := 0; off < len(entries); off += 1000 {
				if err := s.write(entries[off : off+1000]); err != nil {
					b.Fatal(err)
				}
			}
			for i := range entries { // the next pass later in time than everything before
				entries[i].start += int64(len(entries)) * 100_000
			}
		}
		updated += len(c.touched)
		start := cpuTime()
		if err := s.flushNameCounts(); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/flush")
	b.ReportMetric(float64(updated)/float64(b.N), "names/flush")
}

// BenchmarkStoreGrowth measures how writing slows as the log grows: the rate of the skewed mix
// into a database already holding 0, 10M, 50M and 100M rows (schema 1's layout reaches about
// 10 GB, schema 2's about 4 GB), with the file on disk and SQLite's default page cache. Both
// layouts, in one run; it takes minutes and needs the disk space.
//
// Each point is the median of three samples of 300,000 rows, taken after sync(2): filling
// writes gigabytes in a few minutes, a hundred times a server's rate, and the kernel would
// otherwise make the samples wait for that backlog to reach the disk.
//
//	go test -run '^$' -bench StoreGrowth -benchtime 1x -timeout 2h ./plugin/querylog/
func BenchmarkStoreGrowth(b *testing.B) {
	const sample, samples = 300_000, 3
	entries := benchMix("skewed", sample)
	for _, layout := range []string{"v2", "v1"} {
		b.Run("schema="+layout, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "growth.db")
			var write func([]entry) error
			if layout == "v1" {
				write = openV1Store(b, path).write
			} else {
				s, ckpt := benchStore(b, "growth.db")
				defer s.close()
				defer ckpt.close()
				write = func(es []entry) error { return s.write(es) }
			}
			const batch = 1000
			rows := 0
			writeN := func(n int) time.Duration {
				start := time.Now()
				for done := 0; done < n; done += batch {
					chunk := entries[done%sample : done%sample+batch]
					for i := range chunk {
						chunk[i].start += int64(sample) * 100_000
					}
					if err := write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				rows += n
				return time.Since(start)
			}
			for _, at := range []int{0, 10_000_000, 50_000_000, 100_000_000} {
				writeN(at - rows)
				syscall.Sync()
				var rates []float64
				for range samples {
					rates = append(rates, sample/writeN(sample).Seconds())
				}
				slices.Sort(rates)
				b.ReportMetric(rates[samples/2], fmt.Sprintf("rows/s@%dM", at/1_000_000))
			}
		})
	}
}

// cpuTime is the CPU time this process has used (all threads: SQLite's work, the Go
// runtime's and the garbage collector's).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// usedBytes is the size of the pages in use once the WAL is checkpointed.
func usedBytes(db *sql.DB) (int64, error) {
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return 0, err
	}
	var pages, free, pageSize int64
	err := db.QueryRow(`SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count),
		(SELECT page_size FROM pragma_page_size)`).Scan(&pages, &free, &pageSize)
	return (pages - free) * pageSize, err
}

// v1Store writes rows the way schema 1 did (twelve columns, text repeated in every row, an index
// on ts, 64-row INSERTs through database/sql), for BenchmarkStoreWrite's comparison.
type v1Store struct {
	db    *sql.DB
	stmts map[int]*sql.Stmt
	args  []any
}

func openV1Store(b *testing.B, path string) *v1Store {
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(migrations[0]); err != nil {
		b.Fatal(err)
	}
	s := &v1Store{db: db, stmts: map[int]*sql.Stmt{}}
	for n := 1; n <= rowsPerInsert; n++ {
		st, err := db.Prepare(`INSERT INTO queries (ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do") VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?,?,?,?,?,?),", n), ","))
		if err != nil {
			b.Fatal(err)
		}
		s.stmts[n] = st
	}
	return s
}

func (s *v1Store) write(rows []entry) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(rows) > 0 {
		n := min(len(rows), rowsPerInsert)
		s.args = s.args[:0]
		for i := range rows[:n] {
			e := &rows[i]
			s.args = append(s.args, e.start/1e6, "dns://:53", e.addr().String(), e.proto().String(), e.qname,
				int64(e.qtype), int64(e.qclass), int64(e.rcode), int64(e.size), int64(e.answers), int64(e.duration), e.flags&flagDO != 0)
		}
		if _, err := tx.Stmt(s.stmts[n]).Exec(s.args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return tx.Commit()
}

// BenchmarkServeDNS compares the handler cost of querylog against calling the next plugin
// directly, with a sink that only counts, so it measures the DNS path alone.
//
//	go test -run '^$' -bench ServeDNS -benchmem ./plugin/querylog/
func BenchmarkServeDNS(b *testing.B) {
	answer := test.A("example.org. 60 IN A 192.0.2.1")
	reply := func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Compress = true
		m.Answer = []dns.RR{answer}
		return dns.RcodeSuccess, w.WriteMsg(m)
	}
	next := test.HandlerFunc(reply)
	req := new(dns.Msg)
	req.SetQuestion("example.org.", dns.TypeA)
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: "dns://:53"}) // as a server's

	b.Run("none", func(b *testing.B) {
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			plugin.NextOrFailure("x", next, ctx, w, req)
		}
	})
	b.Run("querylog", func(b *testing.B) {
		q := &QueryLog{Next: next, sink: &discardSink{}, noMetadata: true} // as in a block without the metadata plugin
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			q.ServeDNS(ctx, w, req)
		}
	})
	b.Run("querylog+buffer", func(b *testing.B) {
		buf := newBuffer(options{bufferSize: 1 << 20, batchSize: 1 << 30, watermark: 99})
		q := &QueryLog{Next: next, sink: bufferSink{buf, &labels{}}}
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			q.ServeDNS(ctx, w, req)
			if size, _ := buf.fill(); size == 1<<20 {
				buf.remove(size, true, 0)
			}
		}
	})
	b.Run("querylog-cluster", func(b *testing.B) {
		// With a cache probed in the block (a context of its own per query) and a client that is
		// a pod (its namespace and pod read from the metadata and held in the entry's extra).
		q := &QueryLog{Next: next, sink: &discardSink{}, cacheNames: []string{"cache"}}
		mctx := metadata.ContextWithMetadata(ctx)
		metadata.SetValueFunc(mctx, namespaceLabel, func() string { return "team-a" })
		metadata.SetValueFunc(mctx, podLabel, func() string { return "web-7d9f8c6b5-x2k4q" })
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			q.ServeDNS(mctx, w, req)
		}
	})
	b.Run("log-plugin-recorder", func(b *testing.B) {
		// What plugin/log pays for its recorder, for reference.
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			rrw := dnstest.NewRecorder(w)
			plugin.NextOrFailure("log", next, ctx, rrw, req)
		}
	})
}

// BenchmarkNextCall isolates how ServeDNS calls the next plugin, with the same recorder and the
// prometheus plugin's recorder (a PluginTracker, as in production) beneath it: through
// plugin.NextOrFailure, which wraps the recorder once more, or directly as ServeDNS does when
// there is no tracing span.
//
//	go test -run '^$' -bench NextCall -benchmem -count 6 ./plugin/querylog/
func BenchmarkNextCall(b *testing.B) {
	req := new(dns.Msg)
	req.SetQuestion("example.org.", dns.TypeA)
	reply := new(dns.Msg).SetReply(req)
	reply.Answer = []dns.RR{test.A("example.org. 60 IN A 192.0.2.1")}
	next := test.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		return dns.RcodeSuccess, w.WriteMsg(reply)
	})
	ctx := context.Background()
	w := metrics.NewRecorder(newBenchWriter())

	b.Run("NextOrFailure", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec := &recorder{ResponseWriter: w}
			plugin.NextOrFailure("querylog", next, ctx, rec, req)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec := &recorder{ResponseWriter: w}
			if ot.SpanFromContext(ctx) != nil {
				b.Fatal("unexpected span")
			}
			rec.next = next.Name()
			next.ServeDNS(ctx, rec, req)
		}
	})
	if w.Plugin != "handlerfunc" {
		b.Fatalf("tracker below saw plugin %q, want handlerfunc", w.Plugin)
	}
}

// benchWriter returns fixed addresses, as miekg/dns's writers do (test.ResponseWriter parses
// a new one on every call, which would dominate the measurement).
type benchWriter struct {
	test.ResponseWriter
	remote, local net.Addr
}

func newBenchWriter() *benchWriter {
	return &benchWriter{
		remote: &net.UDPAddr{IP: net.IPv4(10, 240, 0, 1), Port: 40212},
		local:  &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
	}
}

func (w *benchWriter) RemoteAddr() net.Addr { return w.remote }
func (w *benchWriter) LocalAddr() net.Addr  { return w.local }

type discardSink struct {
	n int
	l labels
}

func (d *discardSink) log(entry)           { d.n++ }
func (d *discardSink) ready() bool         { return true }
func (d *discardSink) labelTable() *labels { return &d.l }

type bufferSink struct {
	b *buffer
	l *labels
}

func (s bufferSink) log(e entry)         { s.b.enqueue(e) }
func (bufferSink) ready() bool           { return true }
func (s bufferSink) labelTable() *labels { return s.l }

// BenchmarkBufferMemory fills a default-sized buffer and reports the heap it holds per entry,
// query name strings included.
//
//	go test -run '^$' -bench BufferMemory -benchtime 1x ./plugin/querylog/
func BenchmarkBufferMemory(b *testing.B) {
	const capacity = 50000
	// Entries are the same size whatever their names; the names are their own allocations.
	// schema1 has the names schema 1's benchmark measured (about 20 characters, host1234.
	// example5.com.), skewed those of the skewed mix (about 28, host1234.domain237.example.com.).
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, 50000)
	schema1 := func(i int) string { return fmt.Sprintf("host%d.example%d.com.", zipf.Uint64(), i%7) }
	skewed := benchMix("skewed", capacity)
	for _, names := range []struct {
		name string
		of   func(i int) string
	}{{"schema1", schema1}, {"skewed", func(i int) string { return skewed[i].qname }}} {
		b.Run("names="+names.name, func(b *testing.B) {
			for b.Loop() {
				entries := benchEntries(capacity)
				wire := make([][]byte, capacity)
				for i := range entries {
					wire[i] = []byte(names.of(i))
					entries[i].qname = ""
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				buf := newBuffer(options{bufferSize: capacity, batchSize: capacity, watermark: 99})
				for i, e := range entries {
					e.qname = string(wire[i]) // as off the wire: each query owns its name string
					buf.enqueue(e)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				held := float64(after.HeapAlloc - before.HeapAlloc)
				b.ReportMetric(held/capacity, "B/entry")
				b.ReportMetric(held/(1<<20), "MiB/50k")
				b.ReportMetric(float64(unsafe.Sizeof(entry{})), "B/slot")
				runtime.KeepAlive(buf)
				runtime.KeepAlive(wire)
				runtime.KeepAlive(entries)
			}
		})
	}
}

// BenchmarkPrune deletes a million expired rows the way retention does and reports the longest
// single chunk: the most a flush can be delayed while pruning runs.
//
//	go test -run '^$' -bench Prune -benchtime 1x ./plugin/querylog/
func BenchmarkPrune(b *testing.B) {
	const rows = 1_000_000
	entries := benchEntries(100_000)
	old := time.Now().Add(-30 * 24 * time.Hour).UnixNano()
	for _, chunk := range []int{500, 1000, 2000} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) { benchPrune(b, chunk, rows, entries, old) })
	}
}

func benchPrune(b *testing.B, chunk, rows int, entries []entry, old int64) {
	for b.Loop() {
		b.StopTimer()
		s, ckpt := benchStore(b, "prune.db")
		for i := 0; i < rows; i += len(entries) {
			for j := range entries {
				entries[j].start = old + int64(i+j)*1e6
			}
			if err := s.write(entries); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		var worst, total time.Duration
		chunks := 0
		cutoff := time.Now().Add(-7 * 24 * time.Hour).UnixMilli()
		for {
			start := time.Now()
			n, err := s.pruneOlder(cutoff, chunk, shipBound{})
			took := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			worst, total, chunks = max(worst, took), total+took, chunks+1
			if n < int64(chunk) {
				break
			}
		}
		b.ReportMetric(float64(worst.Microseconds())/1000, "worst-chunk-ms")
		b.ReportMetric(float64(total.Microseconds())/1000/float64(chunks), "mean-chunk-ms")
		b.ReportMetric(float64(total.Milliseconds()), "total-ms")
		ckpt.close()
		s.close()
	}
}
