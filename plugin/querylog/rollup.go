package querylog

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"time"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
)

// Rollups are counts per period that outlive the rows: per minute, hour and day (span 60, 3600
// and 86400 seconds), of query names by rcode, of clients, of outcomes (rcode, type,
// transport, answering plugin) with their durations in buckets and cache hits, of the
// clients' Kubernetes namespaces (queries, NXDOMAINs, cache hits, retransmissions), of names
// clients and pods within each namespace (rollup_namespace.go) and their fold into the names
// asked through search lists (rollup_searchpath.go), and of the upstreams forward used
// (queries, SERVFAILs, durations in buckets; rollup_upstreams.go).
//
// The writer counts each row in memory as it writes it, and every rollupEvery adds the counts
// to the minute rows in the transaction of a batch, with the id of the last row counted (state
// rollup_id). Rollups never scan rows, but once: when the counts in memory may be wrong (at
// open, or after a failed batch), the rows after rollup_id are counted again from the table
// (catchUpRollups), rollupCatchUpRows of them before each batch. Hours and days are summed
// from their minutes and hours once they are over (and again if late rows change them).
//
// Each period keeps at most limit names and limit clients, and within each of at most limit
// namespaces, limit names and clients; the rest are counted under
// otherKey, so a flood of new names or clients cannot grow the rollups past that, and the counts
// of a period always add up to its rows. A minute is exact rollupEvery after its last row is
// written.
const (
	rollupEvery = 10 * time.Second
	// rollupGrace is how long after a period ends, in the time of the rows, its sum waits for
	// replies still in flight (a row carries its query's arrival time).
	rollupGrace = time.Minute
	otherKey    = "(other)"
)

var (
	rollupSpans = []int64{60, 3600, 86400}
	// durationBounds are the upper bounds, in microseconds, of the duration buckets d0..d14 of
	// rollup_outcomes and rollup_upstreams; d15 counts the rest. The querylog command reads them.
	durationBounds = logrow.DurationBounds
)

type outcomeKey struct {
	rcode  int64
	qtype  uint16
	proto  proto
	plugin uint8 // the writer's label number
}

type outcomeCounts struct {
	n, durationUS, hits, misses int64
	buckets                     [16]int64
}

// clusterFacts are what a row tells of who asked and how (cluster.go, retransmit.go).
type clusterFacts struct {
	namespace string
	pod       string // the client pod's name, in namespace
	cache     cacheStatus
	retry     bool // the row is one of a retransmitted pair
	answered  bool // the reply had answers (a search list goes on after one without)
}

// namespaceCounts are one namespace's counts in a minute.
type namespaceCounts struct {
	n, nxdomain, hits, misses, retries int64
	detail                             nsDetail // its names and clients (rollup_namespace.go)
}

func (c *namespaceCounts) add(o *namespaceCounts, limit int) {
	c.n, c.nxdomain, c.hits, c.misses, c.retries = c.n+o.n, c.nxdomain+o.nxdomain, c.hits+o.hits, c.misses+o.misses, c.retries+o.retries
	c.detail.merge(&o.detail, limit)
}

// cacheStatusOf is the cacheStatus of a cache column value (logrow.Row.Cache).
func cacheStatusOf(v int64) cacheStatus {
	switch v {
	case logrow.CacheHit:
		return cacheHit
	case logrow.CacheMiss:
		return cacheMiss
	}
	return cacheNone
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// rcodeCounts are one name's counts in a minute by rcode: NOERROR to NXDOMAIN in place, the
// rest in a map.
type rcodeCounts struct {
	common [4]int64
	other  map[int64]int64
}

func (c *rcodeCounts) add(rcode, n int64) {
	if rcode >= 0 && rcode < int64(len(c.common)) {
		c.common[rcode] += n
		return
	}
	if c.other == nil {
		c.other = map[int64]int64{}
	}
	c.other[rcode] += n
}

// each calls f for every rcode counted, and zeroes the counts.
func (c *rcodeCounts) each(f func(rcode, n int64) error) error {
	for rcode, n := range c.common {
		if n != 0 {
			if err := f(int64(rcode), n); err != nil {
				return err
			}
		}
	}
	for rcode, n := range c.other {
		if err := f(rcode, n); err != nil {
			return err
		}
	}
	c.common, c.other = [4]int64{}, nil
	return nil
}

// minuteCounts are the counts of one minute not yet in its rows. A name or client is a key of
// names or clients once it has a row or counts in the minute: at most limit of each, and
// otherKey.
type minuteCounts struct {
	names      map[string]*rcodeCounts
	clients    map[string]*int64
	outcomes   map[outcomeKey]*outcomeCounts
	namespaces map[string]*namespaceCounts // at most limit, and otherKey; only rows with a namespace
	upstreams  map[uint16]*upstreamCounts  // by label number; only rows with an upstream (rollup_upstreams.go)
	checked    bool                        // the keys include the minute's rows written before these counts
	folds      int                         // how many times checkLimits folded keys into otherKey (tallies taken before are stale)
	serial     uint64                      // tells these counts from any others of the process, for tallies
}

// minuteTally is where one text is counted in a minute, kept in its dictionary entry (dict.go), so
// that the rows of a text in the dictionary, most rows, are counted without a lookup by text:
// valid while minute is the serial of the minute being counted and no key of it was folded
// since. It holds the serial, not the minute, so that a dictionary entry not seen for a while
// keeps only its own counts alive, not a whole past minute's.
type minuteTally struct {
	minute uint64
	folds  int
	name   *rcodeCounts // in the names dictionary's entries
	client *int64       // in the clients dictionary's entries
}

// keyed is a name or client to count, and its tally when it has one.
type keyed struct {
	text  string
	tally *minuteTally
}

// valid reports whether t holds the counts of m.
func (t *minuteTally) valid(m *minuteCounts) bool {
	return t != nil && t.minute == m.serial && t.folds == m.folds
}

// rollups is the writer's side of the rollup tables. Only the store's writer uses it.
//
// counted is the highest row id whose row is in the tables or in the counts in memory, and the
// state row rollup_id is counted as of the last flush: rows after it are in no rollup (the
// querylog command counts them from the rows). The writer counts rows as it writes them
// (live) once counted has reached the newest row; after an open, a failed batch, or rollups
// turned back on, it first catches up, counting rollupCatchUpRows rows after counted before
// each batch. With rollup_limit 0 (off) it counts nothing and counted stays where it is.
type rollups struct {
	limit      int                     // names and clients per period
	off        bool                    // rollup_limit 0
	catchingUp bool                    // rows after counted are in the log: count them first
	counted    int64                   // see above; -1: read rollup_id first
	minutes    map[int64]*minuteCounts // by minute (Unix seconds)
	last       *minuteCounts           // minutes[lastStart], the minute of the last row counted
	lastStart  int64
	serials    uint64            // the last minuteCounts.serial given
	dirty      map[[2]int64]bool // hours and days ([span, start]) to sum again once over
	// unfolded are the minutes whose namespace names were written since their fold
	// (foldMinutes); folded, those the last flush folded, marked again if its transaction fails.
	unfolded map[int64]bool
	folded   []int64
	flushed  time.Time
	flushNow bool // a catch-up chunk was counted: write it with the next batch

	catchUpRows int // rows counted before a batch while catching up: rollupCatchUpRows
}

// rollupCatchUpRows is how many rows catching up counts before a batch: 1.35 µs a row
// (BenchmarkRollupCatchUp), so about 14 ms, and a backlog of millions delays no batch by more.
// The 10 s of rows a crash leaves (100,000 at 10,000 QPS) take 10 batches.
const rollupCatchUpRows = 10_000

func newRollups(limit int) *rollups {
	return &rollups{limit: limit, minutes: map[int64]*minuteCounts{}, dirty: map[[2]int64]bool{}, unfolded: map[int64]bool{}, flushed: time.Now(),
		catchingUp: true, counted: -1, catchUpRows: rollupCatchUpRows}
}

// configure applies rollup_limit: 0 turns counting off; turned on again, the rows written
// meanwhile are counted first. The last limit stays for summing the periods already counted.
func (r *rollups) configure(limit int) {
	if r.off && limit != 0 {
		r.catchingUp = true
	}
	r.off = limit == 0
	if !r.off {
		r.limit = limit
	}
}

// live reports whether the rows being written are counted as they are written.
func (r *rollups) live() bool { return !r.off && !r.catchingUp }

func (r *rollups) minute(start int64) *minuteCounts {
	if r.last != nil && r.lastStart == start {
		return r.last // rows come in time order: nearly always
	}
	c := r.minutes[start]
	if c == nil {
		r.serials++
		c = &minuteCounts{names: map[string]*rcodeCounts{}, clients: map[string]*int64{}, outcomes: map[outcomeKey]*outcomeCounts{},
			namespaces: map[string]*namespaceCounts{}, serial: r.serials}
		r.minutes[start] = c
	}
	r.last, r.lastStart = c, start
	return c
}

// dropMinute forgets the counts of the minute from start.
func (r *rollups) dropMinute(start int64) {
	delete(r.minutes, start)
	r.last = nil
}

// dropAllMinutes forgets the counts of every minute.
func (r *rollups) dropAllMinutes() {
	clear(r.minutes)
	r.last = nil
}

// count adds one row, arrived at ts (Unix ms). It is on the writer's path for every row, so
// it looks each of name and client up once at most, and not at all with a valid tally.
func (r *rollups) count(ts int64, name, client keyed, rcode int64, qtype uint16, p proto, plugin uint8, durationUS int64, cf clusterFacts) {
	m := r.minute(floorDiv(ts, 60_000) * 60)
	var nc *rcodeCounts
	if name.tally.valid(m) {
		nc = name.tally.name
	} else {
		nc = counter(m.names, name.text, r.limit, func() *rcodeCounts { return &rcodeCounts{} })
		if t := name.tally; t != nil {
			t.minute, t.folds, t.name = m.serial, m.folds, nc
		}
	}
	nc.add(rcode, 1)
	var cc *int64
	if client.tally.valid(m) {
		cc = client.tally.client
	} else {
		cc = counter(m.clients, client.text, r.limit, func() *int64 { return new(int64) })
		if t := client.tally; t != nil {
			t.minute, t.folds, t.client = m.serial, m.folds, cc
		}
	}
	*cc++
	k := outcomeKey{rcode, qtype, p, plugin}
	o := m.outcomes[k]
	if o == nil {
		o = &outcomeCounts{}
		m.outcomes[k] = o
	}
	o.n++
	o.durationUS += durationUS
	hit, miss := b2i(cf.cache == cacheHit), b2i(cf.cache == cacheMiss)
	o.hits += hit
	o.misses += miss
	i, _ := slices.BinarySearch(durationBounds, durationUS)
	o.buckets[i]++
	if cf.namespace != "" {
		nc := counter(m.namespaces, cf.namespace, r.limit, func() *namespaceCounts { return &namespaceCounts{} })
		nc.n++
		nc.nxdomain += b2i(rcode == 3)
		nc.hits += hit
		nc.misses += miss
		nc.retries += b2i(cf.retry)
		nc.detail.countIn(name.text, client.text, rcode, qtype, cf, r.limit)
	}
}

// counter returns the counts of key in a minute's counts, adding them (made by add) if there is
// room for one more key, and otherKey's if not.
func counter[V any](counts map[string]*V, key string, limit int, add func() *V) *V {
	c := counts[key]
	if c == nil {
		if len(counts) >= limit {
			key = otherKey
			c = counts[key]
		}
		if c == nil {
			c = add()
			counts[key] = c
		}
	}
	return c
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// due reports whether the counts should be written with the next batch.
func (r *rollups) due(now time.Time) bool {
	return len(r.minutes) > 0 && (r.flushNow || now.Sub(r.flushed) >= rollupEvery)
}

// reset forgets the counts: a batch failed, and the rows are counted again from rollup_id.
func (r *rollups) reset() {
	r.dropAllMinutes()
	r.catchingUp, r.counted, r.flushNow = true, -1, false
	for _, start := range r.folded { // their folds were rolled back with the batch
		r.unfolded[start] = true
	}
	r.folded = nil
}

// flush adds the counts to the minute rows, sums the hours and days that are over and changed,
// and records counted as rollup_id, all in the transaction on dc. newest is the newest arrival
// written (Unix ms): periods end by the time of the rows, not by the clock.
func (r *rollups) flush(ctx context.Context, conn driver.Conn, newest int64, l *labels) (err error) {
	// The same upserts run once per name, client, namespace... of each minute: prepared once.
	dc := rawsql.NewStmts(conn)
	defer func() {
		if e := dc.Close(); err == nil {
			err = e
		}
	}()
	for start, m := range r.minutes {
		if !m.checked {
			if err := r.checkLimits(ctx, dc, start, m); err != nil {
				return err
			}
		}
		for name, c := range m.names {
			if err := c.each(func(rcode, n int64) error {
				return rawsql.Exec(ctx, dc, `INSERT INTO rollup_names (span, start, name, rcode, n) VALUES (60, ?, ?, ?, ?)
					ON CONFLICT DO UPDATE SET n = n + excluded.n`, start, name, rcode, n)
			}); err != nil {
				return err
			}
		}
		for client, n := range m.clients {
			if *n == 0 {
				continue
			}
			if err := rawsql.Exec(ctx, dc, `INSERT INTO rollup_clients (span, start, client, n) VALUES (60, ?, ?, ?)
				ON CONFLICT DO UPDATE SET n = n + excluded.n`, start, client, *n); err != nil {
				return err
			}
			*n = 0
		}
		for ns, c := range m.namespaces {
			if c.n == 0 {
				continue
			}
			if err := c.detail.flush(ctx, dc, start, ns); err != nil {
				return err
			}
			if err := rawsql.Exec(ctx, dc, `INSERT INTO rollup_namespaces (span, start, namespace, n, nxdomain, hits, misses, retries)
				VALUES (60, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT DO UPDATE SET n = n + excluded.n, nxdomain = nxdomain + excluded.nxdomain, hits = hits + excluded.hits,
				misses = misses + excluded.misses, retries = retries + excluded.retries`, start, ns, c.n, c.nxdomain, c.hits, c.misses, c.retries); err != nil {
				return err
			}
			*c = namespaceCounts{detail: c.detail}
			r.unfolded[start] = true
		}
		for k, o := range m.outcomes {
			args := []any{start, k.rcode, int64(k.qtype), k.proto.String(), l.text(labelPlugin, uint16(k.plugin)), o.n, o.durationUS, o.hits, o.misses}
			for _, b := range o.buckets {
				args = append(args, b)
			}
			if err := rawsql.Exec(ctx, dc, upsertOutcome, args...); err != nil {
				return err
			}
		}
		clear(m.outcomes)
		if err := flushUpstreams(ctx, dc, start, m, r.limit, l); err != nil {
			return err
		}
		r.dirty[[2]int64{3600, floorDiv(start, 3600) * 3600}] = true
		if over(start, 60, newest) {
			r.dropMinute(start) // late rows of it check its rows again (checkLimits)
		}
	}
	if err := r.foldMinutes(ctx, dc, newest); err != nil {
		return err
	}
	// Hours, then the days of the hours summed.
	for _, span := range rollupSpans[1:] {
		for p := range r.dirty {
			if p[0] != span || !over(p[1], span, newest) {
				continue
			}
			if err := sumPeriod(ctx, dc, span, p[1], r.limit); err != nil {
				return err
			}
			delete(r.dirty, p)
			if span == 3600 {
				r.dirty[[2]int64{86400, floorDiv(p[1], 86400) * 86400}] = true
			}
		}
	}
	return rawsql.Exec(ctx, dc, `INSERT INTO state (key, value) VALUES ('rollup_id', ?) ON CONFLICT DO UPDATE SET value = excluded.value`, r.counted)
}

// over reports whether the period of span seconds from start is over, grace included, by the
// time of the rows.
func over(start, span, newest int64) bool {
	return (start+span)*1000+rollupGrace.Milliseconds() < newest
}

// checkLimits reads the names and clients a minute already has rows for (when its counts began
// without them: a late row, or after a restart) and folds counts past the limit into otherKey.
func (r *rollups) checkLimits(ctx context.Context, dc driver.Conn, start int64, m *minuteCounts) error {
	stored, err := queryStrings(ctx, dc, `SELECT DISTINCT name FROM rollup_names WHERE span = 60 AND start = ? AND name <> '(other)'`, start)
	if err != nil {
		return err
	}
	m.folds++
	for name, keep := range fold(m.names, stored, r.limit) {
		if other := m.names[otherKey]; other == nil {
			m.names[otherKey] = &rcodeCounts{}
		}
		keep.each(func(rcode, n int64) error { m.names[otherKey].add(rcode, n); return nil })
		delete(m.names, name)
	}
	addKeys(m.names, stored, func() *rcodeCounts { return &rcodeCounts{} })
	if stored, err = queryStrings(ctx, dc, `SELECT client FROM rollup_clients WHERE span = 60 AND start = ? AND client <> '(other)'`, start); err != nil {
		return err
	}
	for client, n := range fold(m.clients, stored, r.limit) {
		if m.clients[otherKey] == nil {
			m.clients[otherKey] = new(int64)
		}
		*m.clients[otherKey] += *n
		delete(m.clients, client)
	}
	addKeys(m.clients, stored, func() *int64 { return new(int64) })
	if stored, err = queryStrings(ctx, dc, `SELECT namespace FROM rollup_namespaces WHERE span = 60 AND start = ? AND namespace <> '(other)'`, start); err != nil {
		return err
	}
	for ns, c := range fold(m.namespaces, stored, r.limit) {
		if m.namespaces[otherKey] == nil {
			m.namespaces[otherKey] = &namespaceCounts{}
		}
		m.namespaces[otherKey].add(c, r.limit)
		delete(m.namespaces, ns)
	}
	addKeys(m.namespaces, stored, func() *namespaceCounts { return &namespaceCounts{} })
	if err := checkNamespaceLimits(ctx, dc, start, m, r.limit); err != nil {
		return err
	}
	m.checked = true
	return nil
}

// fold returns the keys of counts that do not fit beside stored within limit, in no order
// (which ones is as arbitrary as the order rows arrive in).
func fold[V any](counts map[string]V, stored []string, limit int) map[string]V {
	have := map[string]bool{}
	for _, k := range stored {
		have[k] = true
	}
	out := map[string]V{}
	for k, v := range counts {
		if k == otherKey || have[k] {
			continue
		}
		if len(have) < limit {
			have[k] = true
		} else {
			out[k] = v
		}
	}
	return out
}

// addKeys adds the keys the minute already has rows for, with nothing counted yet, so that
// they count towards the limit and their later rows are counted under their own key.
func addKeys[V any](counts map[string]*V, stored []string, add func() *V) {
	for _, k := range stored {
		if counts[k] == nil {
			counts[k] = add()
		}
	}
}

var upsertOutcome = func() string {
	cols, vals, sums := "", "", ""
	for i := range 16 {
		cols += fmt.Sprintf(", d%d", i)
		vals += ", ?"
		sums += fmt.Sprintf(", d%d = d%d + excluded.d%d", i, i, i)
	}
	return `INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us, hits, misses` + cols + `)
		VALUES (60, ?, ?, ?, ?, ?, ?, ?, ?, ?` + vals + `)
		ON CONFLICT DO UPDATE SET n = n + excluded.n, duration_us = duration_us + excluded.duration_us, hits = hits + excluded.hits,
		misses = misses + excluded.misses` + sums
}()

// sumPeriod (re)computes the rows of one hour or day from its minutes or hours: the limit names
// and clients with the most queries, the rest under otherKey.
func sumPeriod(ctx context.Context, dc driver.Conn, span, start int64, limit int) error {
	sub := rollupSpans[slices.Index(rollupSpans, span)-1]
	buckets, sumBuckets := "", ""
	for i := range 16 {
		buckets += fmt.Sprintf(", d%d", i)
		sumBuckets += fmt.Sprintf(", sum(d%d)", i)
	}
	for _, q := range append([]string{
		`DELETE FROM rollup_names WHERE span = ?1 AND start = ?2`,
		`WITH parts AS (SELECT name, rcode, sum(n) AS n FROM rollup_names WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY name, rcode),
		      keep AS (SELECT name FROM parts WHERE name <> '(other)' GROUP BY name ORDER BY sum(n) DESC, name LIMIT ?4)
		INSERT INTO rollup_names (span, start, name, rcode, n)
		SELECT ?1, ?2, iif(name IN keep, name, '(other)') AS folded, rcode, sum(n) FROM parts GROUP BY folded, rcode`,
		`DELETE FROM rollup_clients WHERE span = ?1 AND start = ?2`,
		`WITH parts AS (SELECT client, sum(n) AS n FROM rollup_clients WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY client),
		      keep AS (SELECT client FROM parts WHERE client <> '(other)' ORDER BY n DESC, client LIMIT ?4)
		INSERT INTO rollup_clients (span, start, client, n)
		SELECT ?1, ?2, iif(client IN keep, client, '(other)') AS folded, sum(n) FROM parts GROUP BY folded`,
		`DELETE FROM rollup_namespaces WHERE span = ?1 AND start = ?2`,
		`WITH parts AS (SELECT namespace, sum(n) AS n, sum(nxdomain) AS nxdomain, sum(hits) AS hits, sum(misses) AS misses,
		                     sum(retries) AS retries
		              FROM rollup_namespaces WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace),
		      keep AS (SELECT namespace FROM parts WHERE namespace <> '(other)' ORDER BY n DESC, namespace LIMIT ?4)
		INSERT INTO rollup_namespaces (span, start, namespace, n, nxdomain, hits, misses, retries)
		SELECT ?1, ?2, iif(namespace IN keep, namespace, '(other)') AS folded, sum(n), sum(nxdomain), sum(hits), sum(misses), sum(retries)
		FROM parts GROUP BY folded`,
		`DELETE FROM rollup_outcomes WHERE span = ?1 AND start = ?2`,
		`INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us, hits, misses` + buckets + `)
		SELECT ?1, ?2, rcode, qtype, proto, plugin, sum(n), sum(duration_us), sum(hits), sum(misses)` + sumBuckets + `
		FROM rollup_outcomes WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY rcode, qtype, proto, plugin`,
		deleteUpstreamsPeriod, sumUpstreamsPeriod,
	}, namespaceSums[span]...) {
		if err := rawsql.Exec(ctx, dc, q, span, start, sub, limit); err != nil {
			return fmt.Errorf("summing the rollups of %d s from %d: %w", span, start, err)
		}
	}
	if span == 3600 { // days sum their hours' folds (namespaceSums)
		if err := foldSearchpath(ctx, dc, span, start); err != nil {
			return fmt.Errorf("folding the search paths of the hour from %d: %w", start, err)
		}
		// The hour's fold replaces its minutes' (foldMinutes).
		if err := deleteSearchpathFolds(ctx, dc, 60, start, start+span); err != nil {
			return fmt.Errorf("deleting the search path folds of the minutes of the hour from %d: %w", start, err)
		}
	}
	return nil
}

// namespaceSums are the statements that sum a period's namespace names, clients and pods, and a
// day's search-path folds, by span.
var namespaceSums = map[int64][]string{3600: sumNamespaceHour, 86400: append(slices.Clip(sumNamespaceDay), sumSearchpathDay...)}

// queryStrings returns the first column of query's rows on the driver connection.
func queryStrings(ctx context.Context, dc driver.Conn, query string, args ...any) ([]string, error) {
	var out []string
	err := rawsql.Each(ctx, dc, query, args, func(v []driver.Value) error {
		out = append(out, fmt.Sprint(v[0]))
		return nil
	})
	return out, err
}

// v2FirstID is below every id schema 2 gives (ids carry the time, and any time after 1970 is
// above it) and above every rowid schema 1 gave, so rows of queries_v1, which rollups do not
// count, are told apart by it.
const v2FirstID = 1 << 40

// rollupTables are the rollup tables, for retention and the size cap.
var rollupTables = []string{"rollup_names", "rollup_clients", "rollup_outcomes", "rollup_namespaces", "rollup_upstreams",
	"rollup_namespace_names", "rollup_namespace_clients", "rollup_namespace_pods", "rollup_searchpath", "rollup_searchpath_suffixes"}
