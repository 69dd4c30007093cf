package querylog

import (
	"net"
	"os"
	"slices"
	"sync"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/querylog/querylog/internal/retry"
	"github.com/querylog/querylog/plugin/querylog/ship"
)

const subsystem = "querylog"

// registered registers querylog's collectors with Prometheus's default registry, which the
// prometheus plugin serves, and records the full name of each metric as it does, so that
// MetricNames lists what is exported. New metrics go through it: registered.counterVec,
// registered.histogramVec, or newDesc for bufferCollector.
var registered = &collectors{reg: prometheus.DefaultRegisterer}

type collectors struct {
	reg   prometheus.Registerer
	names []string // fully-qualified, in the order registered (package initialization only)
}

func (r *collectors) record(namespace, subsystem, name string) {
	r.names = append(r.names, prometheus.BuildFQName(namespace, subsystem, name))
}

func (r *collectors) counterVec(opts prometheus.CounterOpts, labels []string) *prometheus.CounterVec {
	r.record(opts.Namespace, opts.Subsystem, opts.Name)
	return promauto.With(r.reg).NewCounterVec(opts, labels)
}

func (r *collectors) histogramVec(opts prometheus.HistogramOpts, labels []string) *prometheus.HistogramVec {
	r.record(opts.Namespace, opts.Subsystem, opts.Name)
	return promauto.With(r.reg).NewHistogramVec(opts, labels)
}

// Collectors updated directly by the flusher and the handler.
var (
	flushDuration = registered.histogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "batch_flush_duration_seconds",
		Help:      "Histogram of the time taken to write one batch to SQLite.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 11), // 1ms .. 1.024s
	}, []string{"db"})

	flushSize = registered.histogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "batch_flush_size",
		Help:      "Histogram of the number of rows written per batch.",
		Buckets:   prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
	}, []string{"db"})

	flushErrors = registered.counterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "flush_errors_total",
		Help:      "Counter of failed batch writes; a failed batch stays buffered and is retried.",
	}, []string{"db"})

	prunedTotal = registered.counterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "pruned_total",
		Help:      "Counter of rows deleted by retention or the size cap.",
	}, []string{"db"})

	ignoredTotal = registered.counterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ignored_total",
		Help:      "Counter of responses not logged because of ignore or ignore_clients.",
	}, []string{"server"})

	truncatedTotal = registered.counterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "truncated_total",
		Help:      "Counter of texts cut to their cap before buffering, by field: answer_data (answers MAXBYTES) or metadata (a value over 256 bytes).",
	}, []string{"server", "field"})

	dictionaryLookups = registered.counterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "dictionary_lookups_total",
		Help:      "Counter of dictionary lookups by the writer (names, clients, pods), by result: hit (a number from the cache), added (a text seen twice, added), inline (a text seen once, stored in the row), found (a name seen again after it left the cache, its number found in the names table).",
	}, []string{"db", "dictionary", "result"})
)

// The buffer's accounting is exported by bufferCollector from one locked snapshot per database,
// so that enqueued = written + dropped + buffered holds exactly at every scrape.
var (
	descBufferSize = newDesc("buffer_size", "Entries waiting in memory to be written.", "db")
	descCapacity   = newDesc("buffer_capacity", "Capacity of the buffer in entries.", "db")
	descBytes      = newDesc("buffer_bytes", "Bytes held by the entries waiting in memory (slots and texts).", "db")
	descBudget     = newDesc("buffer_bytes_capacity", "Byte budget of the buffer (buffer_bytes).", "db")
	descPeak       = newDesc("buffer_peak_size", "Highest buffer fill since start.", "db")
	descEnqueued   = newDesc("enqueued_total", "Responses handed to querylog, accepted or dropped.", "server", "db")
	descWritten    = newDesc("written_total", "Rows committed to SQLite.", "server", "db")
	descDropped    = newDesc("dropped_total", "Entries lost, by reason.", "server", "db", "reason")
	descInterval   = newDesc("flush_interval_seconds", "Current adaptive flush interval.", "db")
	descDBSize     = newDesc("db_size_bytes", "Size of the database and its WAL on disk.", "db")
	descLastFlush  = newDesc("last_flush_timestamp_seconds", "Unix time of the last successful flush.", "db")
	descDiskLow    = newDesc("disk_low", "1 while writing is paused because the filesystem is low on space.", "db")
	descWALSize    = newDesc("wal_size_bytes", "Size of the database's -wal file, read at scrape time; it grows for as long as a reader holds a snapshot.", "db")
)

// bufferDescs is every Desc made by newDesc; bufferCollector describes them all.
var bufferDescs []*prometheus.Desc

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	registered.record(plugin.Namespace, subsystem, name)
	d := prometheus.NewDesc(prometheus.BuildFQName(plugin.Namespace, subsystem, name), help, labels, nil)
	bufferDescs = append(bufferDescs, d)
	return d
}

// Collectors of other packages: the shipper's, and panics_total, which every goroutine shares;
// their names are recorded as theirs are.
func init() {
	registered.reg.MustRegister(bufferCollector{}, retry.PanicsTotal)
	registered.reg.MustRegister(ship.Collectors(runningShippers)...)
	registered.record(plugin.Namespace, subsystem, "panics_total")
	registered.names = append(registered.names, ship.Names()...)
}

type bufferCollector struct{}

func (bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range bufferDescs {
		ch <- d
	}
}

func (bufferCollector) Collect(ch chan<- prometheus.Metric) {
	live, all := writersForMetrics()
	// One snapshot per buffer, used for its gauges and its counters alike.
	snaps := make(map[*writer]snapshot, len(all))
	for _, w := range all {
		snaps[w] = w.buf.snapshot()
	}
	for _, w := range live {
		s := snaps[w]
		g := w.gauges()
		ch <- prometheus.MustNewConstMetric(descBufferSize, prometheus.GaugeValue, float64(s.size), w.path)
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(s.capacity), w.path)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.bytes), w.path)
		ch <- prometheus.MustNewConstMetric(descBudget, prometheus.GaugeValue, float64(s.budget), w.path)
		ch <- prometheus.MustNewConstMetric(descPeak, prometheus.GaugeValue, float64(s.peak), w.path)
		ch <- prometheus.MustNewConstMetric(descInterval, prometheus.GaugeValue, g.interval.Seconds(), w.path)
		ch <- prometheus.MustNewConstMetric(descDBSize, prometheus.GaugeValue, float64(g.dbSize), w.path)
		ch <- prometheus.MustNewConstMetric(descLastFlush, prometheus.GaugeValue, g.lastFlush, w.path)
		ch <- prometheus.MustNewConstMetric(descDiskLow, prometheus.GaugeValue, b2f(g.diskLow), w.path)
		ch <- prometheus.MustNewConstMetric(descWALSize, prometheus.GaugeValue, float64(walSize(w.path)), w.path)
	}

	// Counters are summed over every buffer a database has had (a path can be closed and
	// reopened by reloads), so they never go backwards.
	type key struct{ server, db string }
	sums := map[key]*counts{}
	var order []key
	for _, w := range all {
		for _, c := range snaps[w].stats {
			k := key{w.labels.text(labelServer, uint16(c.server)), w.path}
			t, ok := sums[k]
			if !ok {
				t = &counts{}
				sums[k] = t
				order = append(order, k)
			}
			t.add(c)
		}
	}
	// Servers declared at startup that have not been counted yet show zeros.
	declaredMu.Lock()
	for _, w := range all {
		for _, server := range declared[w.path] {
			if k := (key{server, w.path}); sums[k] == nil {
				sums[k] = &counts{}
				order = append(order, k)
			}
		}
	}
	declaredMu.Unlock()
	for _, k := range order {
		t := sums[k]
		ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.CounterValue, float64(t.enqueued), k.server, k.db)
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(t.written), k.server, k.db)
		for r, n := range t.dropped {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), k.server, k.db, reasonNames[r])
		}
	}
}

// Every documented series exists at 0 from startup, for each database and for each server that
// logs to it: a series that first appears already raised is invisible to increase(), and one
// that is absent makes rate() show nothing rather than 0. The labelled collectors are created
// by declareSeries; the buffer's counters by Collect, from declared.
var (
	declaredMu sync.Mutex
	declared   = map[string][]string{} // servers by database, as declared at startup
)

// declareSeries creates the series of database db and of the servers logging to it, at 0.
// Declarations are kept for the life of the process, as counters are (also across reloads).
func declareSeries(db string, servers []string) {
	flushErrors.WithLabelValues(db)
	prunedTotal.WithLabelValues(db)
	flushDuration.WithLabelValues(db)
	flushSize.WithLabelValues(db)
	for _, dict := range dictionaryNames {
		for _, result := range []string{"hit", "added", "inline"} {
			dictionaryLookups.WithLabelValues(db, dict, result)
		}
	}
	for _, s := range servers {
		ignoredTotal.WithLabelValues(s)
		truncatedTotal.WithLabelValues(s, "answer_data")
		truncatedTotal.WithLabelValues(s, "metadata")
	}
	declaredMu.Lock()
	defer declaredMu.Unlock()
	for _, s := range servers {
		if !slices.Contains(declared[db], s) {
			declared[db] = append(declared[db], s)
		}
	}
}

// listeners returns the server label (metrics.WithServer) of every listener of c's server
// block, spelt as CoreDNS names its servers (dnsserver's groupConfigsByListenAddr): the
// transport, then host:port, for each key of the block and each address it is bound to. Call
// it from OnStartup, once CoreDNS has given every key the block's bind addresses.
func listeners(c *caddy.Controller) []string {
	var out []string
	for i := range max(1, len(c.ServerBlockKeys)) {
		key := *c
		key.ServerBlockKeyIndex = i
		cfg := dnsserver.GetConfig(&key)
		for _, h := range cfg.ListenHosts {
			addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(h, cfg.Port))
			if err != nil {
				continue // CoreDNS cannot listen there either
			}
			if s := cfg.Transport + "://" + addr.String(); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// walSize is the size of the WAL of the database at path; 0 if it has none. It is read at
// scrape time, not after flushes: a WAL held by a reader grows while the writer idles too, and a
// stat costs less than a scrape's other work.
func walSize(path string) int64 {
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricNames lists the full names of every metric querylog exports, as recorded when each was
// registered; deploy/ checks its alert rules and dashboard against it.
func MetricNames() []string { return slices.Clone(registered.names) }
