package querylog

import (
	"cmp"
	"context"
	"database/sql/driver"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/rawsql"
)

// TestGenerateBenchDB writes the database that the querylog command's targets are measured on
// (docs/command.md, bench/README.md): rollups of 30 days at 10,000 queries a second, then 10 million
// rows through the store's real write path, ending now. It runs only when QUERYLOG_GENDB names
// the file to create:
//
//	QUERYLOG_GENDB=/tmp/bench.db go test -run TestGenerateBenchDB -count=1 -timeout 2h ./plugin/querylog/
//
// QUERYLOG_GENDB_ROWS (default 10000000), QUERYLOG_GENDB_DAYS (default 30) and
// QUERYLOG_GENDB_QPS (default 10000) change the sizes: docs/database.md's SQL recipes are timed on 10
// million rows at 125 queries a second (22 hours, 450,000 rows in the last hour).
//
// The rows are real: entries go through store.write in batches of 1000 in the order a server
// answers them (by arrival plus duration, so slow replies are written late), and the writer
// counts them into the minute rollups and sums the hours and days they end, as it does in
// CoreDNS. As a running writer leaves them, the last 10 s of rows are after rollup_id, and
// the last minute or less of rows after names_counted.
//
// The rollups before the rows are synthetic: counting 26 billion rows is out of reach, so each
// minute's rollup rows are drawn from the same distribution (see genMix) the way the writer
// would count them (the first rollup_limit names of the minute kept, the rest under (other);
// every client; outcomes with duration buckets; forward's upstream), then the hours and days
// are summed from them with sumPeriod. Minutes older than 7 days (the default retention) are
// deleted once their hour is summed, as retention would have.
func TestGenerateBenchDB(t *testing.T) {
	path := os.Getenv("QUERYLOG_GENDB")
	if path == "" {
		t.Skip("set QUERYLOG_GENDB=PATH to write the benchmark database of the querylog command")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists; remove it (and its -wal, -shm) first", path)
	}
	rows, days := envInt(t, "QUERYLOG_GENDB_ROWS", 10_000_000), envInt(t, "QUERYLOG_GENDB_DAYS", 30)
	qps := envInt(t, "QUERYLOG_GENDB_QPS", 10_000)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var l labels
	s.use(&l, &keyring{})
	g := newGenMix(&l)

	// The rows start on a minute and end about when the database is ready (the windows of the
	// measurements are relative to now); the rollups cover the days before them. The last hour
	// of rollups is made once the time the rows begin is known.
	start := time.Now()
	split := (start.Unix() - int64(rows/qps) - 3600) / 60 * 60
	// Where the rows will begin, about: the synthetic rollups take minutes.
	g.rollupsStart, g.rollupsEnd = split-int64(days)*86400, split+3600
	if err := g.synthesizeRollups(s, split-int64(days)*86400, split, 7*86400); err != nil {
		t.Fatal(err)
	}
	first := (time.Now().UnixMilli() - int64(rows)*1000/int64(qps)) / 60_000 * 60
	g.rollupsEnd = first
	if err := g.synthesizeRollups(s, split, first, 7*86400); err != nil {
		t.Fatal(err)
	}
	// The writer records the registered domains of the names it sees as text (firsts.go); those
	// of the synthetic rollups' names, which no row held, as an upgrade to schema 6 does.
	if err := s.change(backfillSeenDomains); err != nil {
		t.Fatal(err)
	}
	t.Logf("synthesized %d days of rollups in %s", days, time.Since(start).Round(time.Second))
	if g.hourFolds > 0 {
		t.Logf("the writer's fold of an hour's namespace names (foldSearchpath): %s on average over %d hours",
			(g.hourFoldTime / time.Duration(g.hourFolds)).Round(time.Millisecond), g.hourFolds)
	}
	if g.minuteFolds > 0 {
		t.Logf("the writer's fold of a finished minute's namespace names (foldMinutes): %s on average over %d minutes of %d names rows on average",
			(g.minuteFoldTime / time.Duration(g.minuteFolds)).Round(time.Millisecond), g.minuteFolds, g.minuteFoldNames/g.minuteFolds)
	}

	start = time.Now()
	if err := g.writeRows(s, first*1000, rows, qps); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d rows in %s", rows, time.Since(start).Round(time.Second))
	// Closed without writing the counts of the last rows: they stay after rollup_id.
	s.state.closeStmts()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// genMix is the query mix of the benchmark database, for rows and rollups alike: 100,000 names
// with a Zipf popularity (s = 1.1), a tenth of them under example.org. (example.org. itself the
// fourth most asked) and a tenth NXDOMAIN names under example.net.; 1% SERVFAIL; 500 IPv4 and
// 20 IPv6 clients asking equally; A 50%, AAAA 20%, HTTPS, PTR and TXT 10% each; udp 90%, tcp 4%,
// dot and doh 3% each; 80% answered by cache in 30-500 µs (cache hits), 20% by forward in 2-80
// ms (misses), through one upstream (genUpstream). One name, rare.example.net., is asked 5
// times in the rows and never in the rollups.
//
// The IPv4 clients are pods (kubePods: 39 namespaces of skewed sizes, names such as
// web-7d9f8c6b5-x2k4q), and their rows name their namespace and pod, as with the metadata
// option listing the kubernetes plugin's two client labels; the IPv6 clients are not pods. In
// the rows, genSearchShare of the pods' lookups go through a stub resolver's search list
// (ndots:5, search NS.svc.cluster.local svc.cluster.local cluster.local; genSearch).
type genMix struct {
	pmf      []float64 // popularity of name k
	nxMass   float64   // share of queries for NXDOMAIN names
	clients  []netip.Addr
	pods     []kubePod  // of clients[i], i < len(pods)
	metadata [][]string // their values of the metadata option's two labels
	labels   *labels
	server   uint8
	plugins  [3]uint8 // cache, forward, kubernetes
	upstream uint16
	// The synthetic rollups' time (Unix seconds), which namespaceDetail draws by the day, hour
	// or minute.
	rollupsStart, rollupsEnd int64
	// The writer's fold of the hours' namespace names (foldSearchpath): how many, how long.
	hourFolds    int
	hourFoldTime time.Duration
	// The writer's folds of the minutes of the hour not summed (foldMinutes), and the
	// namespace names they folded.
	minuteFolds     int
	minuteFoldTime  time.Duration
	minuteFoldNames int
}

const (
	genNames     = 100_000
	genZipfS     = 1.1
	genRareName  = "rare.example.net."
	genRareCount = 5
	genUpstream  = "192.0.2.53:53" // forward's, for every query it answers
)

// genSearchShare is the share of the pods' lookups in the rows that go through the search
// list: 8 queries each (A and AAAA of 3 expansions, NXDOMAIN, then of the name itself), so that
// about a fifth of the rows are theirs.
const genSearchShare = 0.03

var (
	genTypes      = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypePTR, dns.TypeTXT}
	genTypeShares = []float64{0.5, 0.2, 0.1, 0.1, 0.1}
	genProtos     = []proto{protoUDP, protoTCP, protoDoT, protoDoH}
	genProtoShare = []float64{0.9, 0.04, 0.03, 0.03}
)

func newGenMix(l *labels) *genMix {
	g := &genMix{pmf: make([]float64, genNames), labels: l}
	var sum float64
	for k := range g.pmf {
		g.pmf[k] = math.Pow(float64(k+1), -genZipfS) // rand.Zipf with v = 1
		sum += g.pmf[k]
	}
	for k := range g.pmf {
		g.pmf[k] /= sum
		if genNX(k) {
			g.nxMass += g.pmf[k]
		}
	}
	for c := range 500 {
		g.clients = append(g.clients, netip.AddrFrom4([4]byte{10, 0, byte(c >> 8), byte(c)}))
	}
	for c := range 20 {
		g.clients = append(g.clients, netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", c+1)))
	}
	g.server = uint8(l.id(labelServer, "dns://:53"))
	g.pods = kubePods(rand.New(rand.NewPCG(7, 8)), 500)
	for _, p := range g.pods {
		g.metadata = append(g.metadata, []string{p.namespace, p.pod})
	}
	g.plugins = [3]uint8{uint8(l.id(labelPlugin, "cache")), uint8(l.id(labelPlugin, "forward")), uint8(l.id(labelPlugin, "kubernetes"))}
	g.upstream = l.id(labelUpstream, genUpstream)
	return g
}

func genNX(k int) bool { return k%10 == 9 }

func genName(k int) string {
	switch {
	case k == 3:
		return "example.org."
	case k%10 == 3:
		return fmt.Sprintf("w%d.example.org.", k)
	case genNX(k):
		return fmt.Sprintf("nx%d.example.net.", k)
	}
	return fmt.Sprintf("host%d.domain%d.example.com.", k, k%997)
}

// pick returns an index drawn with the given shares.
func pick(r *rand.Rand, shares []float64) int {
	x := r.Float64()
	for i, s := range shares {
		if x < s {
			return i
		}
		x -= s
	}
	return len(shares) - 1
}

// genDuration is a reply time in µs: cache 30-500 µs, forward 2-80 ms (log-uniform).
func genDuration(r *rand.Rand, forward bool) int64 {
	if !forward {
		return 30 + r.Int64N(471)
	}
	return int64(2000 * math.Exp(r.Float64()*math.Log(40)))
}

// writeRows writes n rows at qps from first (Unix ms) through the store, the way the flusher
// does; the rollups' counts of the last 10 s are not written.
func (g *genMix) writeRows(s *store, first int64, n, qps int) error {
	r := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(r, genZipfS, 1, genNames-1)
	const chunk = 100_000
	rare := map[int]bool{}
	for i := range genRareCount {
		rare[n/genRareCount*i+12_345] = true
	}
	entries := make([]entry, 0, chunk)
	counted := first                 // the rows' time of the last rollups write
	namesCounted := first            // and of the last names' counts write
	searchFree := func(i int) bool { // the lookup's 8 rows fit, and none is one of the rare name's
		for j := i; j < i+8; j++ {
			if rare[j] {
				return false
			}
		}
		return i+8 <= n
	}
	for done := 0; done < n; {
		entries = entries[:0]
		for i := done; i < min(done+chunk, n); i++ {
			k := int(zipf.Uint64())
			forward := r.IntN(5) == 0
			e := entry{
				start:    first*1e6 + int64(i)*(1e9/int64(qps)) + r.Int64N(1e9/int64(qps)),
				qname:    genName(k),
				duration: uint32(genDuration(r, forward)),
				size:     uint32(60 + r.IntN(200)),
				qtype:    genTypes[pick(r, genTypeShares)],
				qclass:   dns.ClassINET,
				answers:  1,
				server:   g.server,
				plugin:   g.plugins[0],
				flags:    flagRD | flagRA,
			}
			if rare[i] {
				e.qname = genRareName
			}
			if forward {
				e.plugin, e.upstream = g.plugins[1], g.upstream
			}
			switch {
			case genNX(k):
				e.rcode, e.answers = dns.RcodeNameError, 0
			case r.IntN(100) == 0:
				e.rcode, e.answers = dns.RcodeServerFailure, 0
			}
			if r.IntN(10) < 3 {
				e.flags |= flagDO
			}
			c := r.IntN(len(g.clients))
			e.setAddr(g.clients[c])
			e.setProto(genProtos[pick(r, genProtoShare)])
			e.cache = cacheHit
			if forward {
				e.cache = cacheMiss
			}
			if c < len(g.pods) {
				e.extra = &extra{metadataLabels: genPodLabels, metadata: g.metadata[c], namespace: g.pods[c].namespace, pod: g.pods[c].pod}
				if r.Float64() < genSearchShare && searchFree(i) {
					entries = g.search(r, entries, e)
					i += 7
					continue
				}
			}
			entries = append(entries, e)
		}
		// In the order they are answered, as the buffer hands them over.
		slices.SortStableFunc(entries, func(a, b entry) int {
			return cmp.Compare(a.start+int64(a.duration)*1000, b.start+int64(b.duration)*1000)
		})
		for len(entries) > 0 {
			// The rollups' counts are written every 10 s of the rows' time, as at 10,000
			// queries a second, but for the last 10 s.
			m := min(1000, len(entries))
			last := entries[m-1].start / 1e6
			if tail := n - 10*qps; done < tail && (last-counted >= rollupEvery.Milliseconds() || done+m >= tail) {
				s.state.rollups.flushed, counted = time.Now().Add(-rollupEvery), last
			} else {
				s.state.rollups.flushed = time.Now().Add(time.Hour)
			}
			// The names' counts are added once a minute of the rows' time (nameCountsEvery),
			// as a writer at 10,000 queries a second adds them: the rows of the last minute's
			// part stay after names_counted.
			if last-namesCounted >= nameCountsEvery.Milliseconds() {
				s.state.counts.flushed, namesCounted = time.Now().Add(-nameCountsEvery), last
			} else {
				s.state.counts.flushed = time.Now().Add(time.Hour)
			}
			if err := s.write(entries[:m]); err != nil {
				return err
			}
			entries, done = entries[m:], done+m
		}
	}
	return nil
}

// genPodLabels are the metadata option's labels in the rows of pods.
var genPodLabels = []string{namespaceLabel, podLabel}

// search appends the 8 queries of a lookup of e's name (of fewer than 5 dots) by a pod's stub
// resolver with ndots:5: A and AAAA of each expansion by the search list, answered NXDOMAIN
// (by the cache, or kubernetes on a miss), then of the name itself, with e's answer. A and
// AAAA go together; each pair after the slower reply of the one before.
func (g *genMix) search(r *rand.Rand, entries []entry, e entry) []entry {
	asked := strings.TrimSuffix(e.qname, ".")
	at := e.start
	for _, suffix := range []string{e.extra.namespace + ".svc.cluster.local.", "svc.cluster.local.", "cluster.local.", ""} {
		var slowest int64
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			q := e
			q.qtype, q.start = qtype, at+r.Int64N(20_000)
			if suffix != "" {
				q.qname, q.rcode, q.answers, q.upstream = asked+"."+suffix, dns.RcodeNameError, 0, 0
				q.plugin, q.cache, q.duration = g.plugins[0], cacheHit, uint32(genDuration(r, false))
				if r.IntN(5) == 0 {
					q.plugin, q.cache, q.duration = g.plugins[2], cacheMiss, uint32(100+r.IntN(900))
				}
			}
			slowest = max(slowest, q.start-at+int64(q.duration)*1000)
			entries = append(entries, q)
		}
		at += slowest + 20_000 + r.Int64N(80_000)
	}
	return entries
}

// synthesizeRollups writes the rollups of the minutes from start to end (Unix seconds, minute
// aligned), sums every hour and day that ends by end, and deletes the minutes of hours that
// end keep seconds or more before end.
func (g *genMix) synthesizeRollups(s *store, start, end, keep int64) error {
	r := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	return s.withConn(ctx, func(dc driver.Conn) error {
		for hour := start / 3600 * 3600; hour < end; hour += 3600 {
			if err := rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error { return g.hourOfRollups(ctx, dc, r, hour, start, end, keep) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// hourOfRollups writes the minutes of the hour from hour that fall in [start, end), sums it and
// its day if they end by end, and deletes its minutes if it ends keep seconds or more before
// end.
func (g *genMix) hourOfRollups(ctx context.Context, dc driver.Conn, r *rand.Rand, hour, start, end, keep int64) error {
	for m := max(hour, start); m < min(hour+3600, end); m += 60 {
		if err := g.minute(ctx, dc, r, m); err != nil {
			return err
		}
		if hour+3600 > g.rollupsEnd { // an hour not summed keeps its namespaces' minutes
			if err := g.namespaceDetail(ctx, dc, r, 60, m); err != nil {
				return err
			}
			// The writer folds each finished minute (foldMinutes); the last one is left as
			// names, as the current minute is (a whole one: the worst case of the command).
			if m+60 < g.rollupsEnd {
				if err := g.foldMinute(ctx, dc, m); err != nil {
					return err
				}
			}
		}
	}
	if hour+3600 <= end {
		if err := sumPeriod(ctx, dc, 3600, hour, defaultRollupLimit); err != nil {
			return err
		}
		// The namespaces' names and clients of the hour, as its sum leaves them, drawn for the
		// hour at once (the minutes of 39 namespaces are too many rows to write and sum here),
		// for the hours of the first and the last two days: the days between get day rows only,
		// which a window of days reads.
		if hour < g.rollupsStart+86400 || hour >= g.rollupsEnd-2*86400 {
			if err := g.namespaceDetail(ctx, dc, r, 3600, hour); err != nil {
				return err
			}
			// sumPeriod folded the hour before its names were drawn: fold it as it would.
			began := time.Now()
			if err := foldSearchpath(ctx, dc, 3600, hour); err != nil {
				return err
			}
			g.hourFolds++
			g.hourFoldTime += time.Since(began)
		}
	}
	if day := (hour + 3600) - 86400; (hour+3600)%86400 == 0 && hour+3600 <= end && day >= start/86400*86400 {
		if err := sumPeriod(ctx, dc, 86400, day, defaultRollupLimit); err != nil {
			return err
		}
		if day >= g.rollupsStart+86400 && day+86400 < g.rollupsEnd-2*86400 {
			if err := g.namespaceDetail(ctx, dc, r, 86400, day); err != nil {
				return err
			}
			// No hours to sum: the day's names are folded at once.
			if err := foldSearchpath(ctx, dc, 86400, day); err != nil {
				return err
			}
		}
	}
	if hour+3600 <= end-keep {
		for _, table := range rollupTables {
			if err := rawsql.Exec(ctx, dc, `DELETE FROM `+table+` WHERE span = 60 AND start >= ? AND start < ?`, hour, hour+3600); err != nil {
				return err
			}
		}
	}
	return nil
}

// foldMinute folds the minute from m's namespace names as the writer does once the minute is
// over, and times it.
func (g *genMix) foldMinute(ctx context.Context, dc driver.Conn, m int64) error {
	names, err := queryStrings(ctx, dc, `SELECT count(*) FROM rollup_namespace_names WHERE span = 60 AND start = ?`, m)
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(names[0])
	began := time.Now()
	r := &rollups{unfolded: map[int64]bool{m: true}}
	if err := r.foldMinutes(ctx, dc, (m+60)*1000); err != nil {
		return err
	}
	g.minuteFolds++
	g.minuteFoldTime += time.Since(began)
	g.minuteFoldNames += n
	return nil
}

// minute writes one minute's rollup rows: about qps × 60 queries, counted as the writer would.
func (g *genMix) minute(ctx context.Context, dc driver.Conn, r *rand.Rand, start int64) error {
	total := int64(600_000 * (1 + 0.03*r.NormFloat64()))
	poisson := func(mean float64) int64 { // normal approximation, at least 0
		return max(0, int64(math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	// Names: the writer keeps the first rollup_limit names the minute brings; find them by
	// drawing queries until there are as many, then count each over the whole minute.
	zipf := rand.NewZipf(r, genZipfS, 1, genNames-1)
	kept := map[int]bool{}
	for len(kept) < defaultRollupLimit {
		kept[int(zipf.Uint64())] = true
	}
	byRcode := map[int64]int64{}
	var nameRows []any
	var keptMass, keptNX float64
	var counted int64
	for k := range kept {
		n := max(1, poisson(float64(total)*g.pmf[k]))
		counted += n
		keptMass += g.pmf[k]
		if genNX(k) {
			keptNX += g.pmf[k]
			nameRows = append(nameRows, start, genName(k), int64(dns.RcodeNameError), n)
			byRcode[dns.RcodeNameError] += n
			continue
		}
		fail := min(n, poisson(float64(n)*0.01))
		for _, c := range [][2]int64{{dns.RcodeSuccess, n - fail}, {dns.RcodeServerFailure, fail}} {
			if c[1] > 0 {
				nameRows = append(nameRows, start, genName(k), c[0], c[1])
				byRcode[c[0]] += c[1]
			}
		}
	}
	total = max(total, counted)
	if other := total - counted; other > 0 {
		nx := int64(math.Round(float64(other) * (g.nxMass - keptNX) / (1 - keptMass)))
		fail := int64(math.Round(float64(other-nx) * 0.01))
		for _, c := range [][2]int64{{dns.RcodeSuccess, other - nx - fail}, {dns.RcodeNameError, nx}, {dns.RcodeServerFailure, fail}} {
			if c[1] > 0 {
				nameRows = append(nameRows, start, otherKey, c[0], c[1])
				byRcode[c[0]] += c[1]
			}
		}
	}
	// Clients: every one, about equally; the first takes the rounding.
	var clientRows []any
	rest := total
	for _, a := range g.clients[1:] {
		n := min(rest, poisson(float64(total)/float64(len(g.clients))))
		rest -= n
		clientRows = append(clientRows, start, a.String(), n)
	}
	clientRows = append(clientRows, start, g.clients[0].String(), rest)
	// Outcomes: each rcode's queries split by type, transport and plugin (the largest cell
	// takes the rounding), with durations in buckets shaped by a sample; forward's are the
	// upstream's.
	var outcomeRows []any
	var up upstreamCounts
	for rcode, n := range byRcode {
		type cell struct{ t, p, f int }
		var cells []cell
		var counts []int64
		for ti, tshare := range genTypeShares {
			for pi, pshare := range genProtoShare {
				for fi, fshare := range []float64{0.8, 0.2} {
					cells = append(cells, cell{ti, pi, fi})
					counts = append(counts, int64(math.Round(float64(n)*tshare*pshare*fshare)))
				}
			}
		}
		var sum int64
		for _, c := range counts {
			sum += c
		}
		counts[slices.Index(counts, slices.Max(counts))] += n - sum
		for i, c := range cells {
			count := counts[i]
			if count <= 0 {
				continue
			}
			sample := min(count, 200)
			var buckets [16]int64
			var us int64
			for range sample {
				d := genDuration(r, c.f == 1)
				b, _ := slices.BinarySearch(durationBounds, d)
				buckets[b]++
				us += d
			}
			var assigned int64
			for b := range buckets {
				buckets[b] = buckets[b] * count / sample
				assigned += buckets[b]
			}
			buckets[slices.Index(buckets[:], slices.Max(buckets[:]))] += count - assigned
			hits, misses := int64(0), count // forward's answers are the cache's misses
			if c.f == 0 {
				hits, misses = count, 0 // the cache's answers
			}
			row := []any{start, rcode, int64(genTypes[c.t]), genProtos[c.p].String(), []string{"cache", "forward"}[c.f], count, us * count / sample, hits, misses}
			if c.f == 1 {
				up.add(&upstreamCounts{n: count, servfail: b2i(rcode == dns.RcodeServerFailure) * count, durationUS: us * count / sample, buckets: buckets})
			}
			for _, b := range buckets {
				row = append(row, b)
			}
			outcomeRows = append(outcomeRows, row...)
		}
	}
	if err := insertRows(ctx, dc, "rollup_names (span, start, name, rcode, n)", 60, 4, nameRows); err != nil {
		return err
	}
	if err := insertRows(ctx, dc, "rollup_clients (span, start, client, n)", 60, 3, clientRows); err != nil {
		return err
	}
	// Namespaces: the pods' share of the clients, each client asking equally.
	perNamespace := map[string]int64{}
	for _, p := range g.pods {
		perNamespace[p.namespace]++
	}
	var namespaceRows []any
	for _, ns := range slices.Sorted(maps.Keys(perNamespace)) {
		n := poisson(float64(total) * float64(perNamespace[ns]) / float64(len(g.clients)))
		hits := int64(math.Round(float64(n) * 0.8))
		namespaceRows = append(namespaceRows, start, ns, n, int64(math.Round(float64(n)*g.nxMass)), hits, n-hits, int64(0))
	}
	if err := insertRows(ctx, dc, "rollup_namespaces (span, start, namespace, n, nxdomain, hits, misses, retries)", 60, 7, namespaceRows); err != nil {
		return err
	}
	buckets := bucketColumns(func(i int) string { return fmt.Sprintf("d%d", i) })
	upstreamRow := []any{start, genUpstream, up.n, up.servfail, up.durationUS}
	for _, b := range up.buckets {
		upstreamRow = append(upstreamRow, b)
	}
	if err := insertRows(ctx, dc, "rollup_upstreams (span, start, upstream, n, servfail, duration_us"+buckets+")", 60, 21, upstreamRow); err != nil {
		return err
	}
	return insertRows(ctx, dc, "rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us, hits, misses"+buckets+")", 60, 25, outcomeRows)
}

// namespaceDetail writes the rows of rollup_namespace_names, _clients and _pods of one
// period (span seconds from start) at 10,000 queries a second, as the writer would leave them:
// each namespace has its pods' share of the queries; genSearchShare of their lookups go through
// the search list (genMix.search: A and AAAA of three NXDOMAIN expansions, then of the name),
// the rest ask names as is (A 50%, AAAA 20%); the rollup_limit names with the most queries keep
// their own rows, the rest are under (other); every pod is a client.
func (g *genMix) namespaceDetail(ctx context.Context, dc driver.Conn, r *rand.Rand, span, start int64) error {
	poisson := func(mean float64) int64 {
		return max(0, int64(math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	pods, podNames := map[string][]string{}, map[string][]string{}
	for c, p := range g.pods {
		pods[p.namespace] = append(pods[p.namespace], g.clients[c].String())
		podNames[p.namespace] = append(podNames[p.namespace], p.pod)
	}
	type counts struct{ n, a, aaaa, answered int64 }
	type key struct {
		name  string
		rcode int64
	}
	var nameRows, clientRows, podRows []any
	for _, ns := range slices.Sorted(maps.Keys(pods)) {
		total := float64(10_000*span) * float64(len(pods[ns])) / float64(len(g.clients))
		lookups := total * genSearchShare / (1 - genSearchShare + 8*genSearchShare) // 8 queries each
		direct := total - 8*lookups
		names := map[key]*counts{}
		add := func(name string, rcode, n, a, aaaa, answered int64) {
			if n == 0 {
				return
			}
			c := names[key{name, rcode}]
			if c == nil {
				c = &counts{}
				names[key{name, rcode}] = c
			}
			c.n, c.a, c.aaaa, c.answered = c.n+n, c.a+a, c.aaaa+aaaa, c.answered+answered
		}
		for k := range 4 * defaultRollupLimit { // the names past these are too rare to be kept
			n := poisson(direct * g.pmf[k])
			a, aaaa := n/2, n/5
			if genNX(k) {
				add(genName(k), dns.RcodeNameError, n, a, aaaa, 0)
			} else {
				add(genName(k), dns.RcodeSuccess, n, a, aaaa, a+aaaa)
			}
			l := poisson(lookups * g.pmf[k])
			if l == 0 {
				continue
			}
			asked := strings.TrimSuffix(genName(k), ".")
			for _, suffix := range []string{ns + ".svc.cluster.local.", "svc.cluster.local.", "cluster.local."} {
				add(asked+"."+suffix, dns.RcodeNameError, 2*l, l, l, 0)
			}
			if genNX(k) {
				add(genName(k), dns.RcodeNameError, 2*l, l, l, 0)
			} else {
				add(genName(k), dns.RcodeSuccess, 2*l, l, l, 2*l)
			}
		}
		byName := map[string]int64{}
		for k, c := range names {
			byName[k.name] += c.n
		}
		order := slices.SortedFunc(maps.Keys(byName), func(x, y string) int { return cmp.Or(cmp.Compare(byName[y], byName[x]), strings.Compare(x, y)) })
		kept := map[string]bool{}
		for _, name := range order[:min(len(order), defaultRollupLimit)] {
			kept[name] = true
		}
		var counted int64
		other := map[int64]*counts{}
		for _, k := range slices.SortedFunc(maps.Keys(names), func(x, y key) int { return cmp.Or(strings.Compare(x.name, y.name), cmp.Compare(x.rcode, y.rcode)) }) {
			c := names[k]
			counted += c.n
			if kept[k.name] {
				nameRows = append(nameRows, start, ns, k.name, k.rcode, c.n, c.a, c.aaaa, c.answered)
				continue
			}
			o := other[k.rcode]
			if o == nil {
				o = &counts{}
				other[k.rcode] = o
			}
			o.n, o.a, o.aaaa, o.answered = o.n+c.n, o.a+c.a, o.aaaa+c.aaaa, o.answered+c.answered
		}
		if rest := int64(total) - counted; rest > 0 { // the rare names: asked as is
			add := other[dns.RcodeSuccess]
			if add == nil {
				add = &counts{}
				other[dns.RcodeSuccess] = add
			}
			add.n, add.a, add.aaaa, add.answered = add.n+rest, add.a+rest/2, add.aaaa+rest/5, add.answered+rest/2+rest/5
		}
		for _, rcode := range slices.Sorted(maps.Keys(other)) {
			o := other[rcode]
			nameRows = append(nameRows, start, ns, otherKey, rcode, o.n, o.a, o.aaaa, o.answered)
		}
		for _, c := range pods[ns] {
			clientRows = append(clientRows, start, ns, c, int64(total)/int64(len(pods[ns])))
		}
		for _, p := range podNames[ns] { // a pod's queries, 80% of them cache hits
			n := int64(total) / int64(len(podNames[ns]))
			hits := n * 8 / 10
			podRows = append(podRows, start, ns, p, n, hits, n-hits)
		}
	}
	if err := insertRows(ctx, dc, "rollup_namespace_pods (span, start, namespace, pod, n, hits, misses)", span, 6, podRows); err != nil {
		return err
	}
	if err := insertRows(ctx, dc, "rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)", span, 8, nameRows); err != nil {
		return err
	}
	return insertRows(ctx, dc, "rollup_namespace_clients (span, start, namespace, client, n)", span, 4, clientRows)
}
