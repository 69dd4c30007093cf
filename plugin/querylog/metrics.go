package querylog

import (
	"time"

	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const subsystem = "querylog"

// Collectors updated directly by the flusher and the handler.
var (
	flushDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "batch_flush_duration_seconds",
		Help:      "Histogram of the time taken to write one batch to SQLite.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 11), // 1ms .. 1.024s
	}, []string{"db"})

	flushSize = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "batch_flush_size",
		Help:      "Histogram of the number of rows written per batch.",
		Buckets:   prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
	}, []string{"db"})

	flushErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "flush_errors_total",
		Help:      "Counter of failed batch writes; a failed batch stays buffered and is retried.",
	}, []string{"db"})

	prunedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "pruned_total",
		Help:      "Counter of rows deleted by retention or the size cap.",
	}, []string{"db"})

	ignoredTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ignored_total",
		Help:      "Counter of responses not logged because of ignore or ignore_clients.",
	}, []string{"server"})
)

// Shipping to ClickHouse (ship.go): counters updated by the shipper and by max_size; the lag
// gauges are read from each shipper at scrape time by shipCollector.
var (
	shippedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "shipped_total",
		Help:      "Counter of rows ClickHouse has acknowledged.",
	}, []string{"db"})

	shipErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ship_errors_total",
		Help:      "Counter of failed attempts to ship (connect, check the table, insert); each is retried.",
	}, []string{"db"})

	shipDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ship_dropped_total",
		Help:      "Counter of rows deleted from SQLite before they were shipped, by reason.",
	}, []string{"db", "reason"})

	descShipLagRows    = newDesc("ship_lag_rows", "Rows in SQLite after the ship cursor (difference of seq).", "db")
	descShipLagSeconds = newDesc("ship_lag_seconds", "Age of the oldest row not yet shipped; 0 when caught up.", "db")
)

func init() { prometheus.MustRegister(shipCollector{}) }

type shipCollector struct{}

func (shipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descShipLagRows
	ch <- descShipLagSeconds
}

func (shipCollector) Collect(ch chan<- prometheus.Metric) {
	live, _ := writersForMetrics()
	now := time.Now()
	for _, w := range live {
		if s := w.ship.Load(); s != nil {
			rows, seconds := s.lag(now)
			ch <- prometheus.MustNewConstMetric(descShipLagRows, prometheus.GaugeValue, float64(rows), w.path)
			ch <- prometheus.MustNewConstMetric(descShipLagSeconds, prometheus.GaugeValue, seconds, w.path)
		}
	}
}

// The buffer's accounting is exported by bufferCollector from one locked snapshot per database,
// so that enqueued = written + dropped + buffered holds exactly at every scrape.
var (
	descBufferSize = newDesc("buffer_size", "Entries waiting in memory to be written.", "db")
	descCapacity   = newDesc("buffer_capacity", "Capacity of the buffer in entries.", "db")
	descPeak       = newDesc("buffer_peak_size", "Highest buffer fill since start.", "db")
	descEnqueued   = newDesc("enqueued_total", "Responses handed to querylog, accepted or dropped.", "server", "db")
	descWritten    = newDesc("written_total", "Rows committed to SQLite.", "server", "db")
	descDropped    = newDesc("dropped_total", "Entries lost, by reason.", "server", "db", "reason")
	descInterval   = newDesc("flush_interval_seconds", "Current adaptive flush interval.", "db")
	descDBSize     = newDesc("db_size_bytes", "Size of the database and its WAL on disk.", "db")
	descLastFlush  = newDesc("last_flush_timestamp_seconds", "Unix time of the last successful flush.", "db")
	descDiskLow    = newDesc("disk_low", "1 while writing is paused because the filesystem is low on space.", "db")
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(plugin.Namespace, subsystem, name), help, labels, nil)
}

func init() { prometheus.MustRegister(bufferCollector{}) }

type bufferCollector struct{}

func (bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBufferSize, descCapacity, descPeak, descEnqueued,
		descWritten, descDropped, descInterval, descDBSize, descLastFlush, descDiskLow} {
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
		ch <- prometheus.MustNewConstMetric(descPeak, prometheus.GaugeValue, float64(s.peak), w.path)
		ch <- prometheus.MustNewConstMetric(descInterval, prometheus.GaugeValue, g.interval.Seconds(), w.path)
		ch <- prometheus.MustNewConstMetric(descDBSize, prometheus.GaugeValue, float64(g.dbSize), w.path)
		ch <- prometheus.MustNewConstMetric(descLastFlush, prometheus.GaugeValue, g.lastFlush, w.path)
		ch <- prometheus.MustNewConstMetric(descDiskLow, prometheus.GaugeValue, b2f(g.diskLow), w.path)
	}

	// Counters are summed over every buffer a database has had (a path can be closed and
	// reopened by reloads), so they never go backwards.
	type key struct{ server, db string }
	sums := map[key]*counts{}
	var order []key
	for _, w := range all {
		for _, c := range snaps[w].stats {
			k := key{c.server, w.path}
			t, ok := sums[k]
			if !ok {
				t = &counts{}
				sums[k] = t
				order = append(order, k)
			}
			t.enqueued += c.enqueued
			t.written += c.written
			for r := range c.dropped {
				t.dropped[r] += c.dropped[r]
			}
		}
	}
	for _, k := range order {
		t := sums[k]
		ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.CounterValue, float64(t.enqueued), k.server, k.db)
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(t.written), k.server, k.db)
		for r, n := range t.dropped {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), k.server, k.db, reasonNames[r])
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricNames lists the full names of every metric querylog exports; deploy/ checks its alert
// rules and dashboard against it.
func MetricNames() []string {
	names := []string{}
	for _, n := range []string{"buffer_size", "buffer_capacity", "buffer_peak_size", "enqueued_total",
		"written_total", "dropped_total", "flush_errors_total", "flush_interval_seconds",
		"batch_flush_duration_seconds", "batch_flush_size", "db_size_bytes", "pruned_total",
		"last_flush_timestamp_seconds", "disk_low", "ignored_total",
		"shipped_total", "ship_errors_total", "ship_dropped_total", "ship_lag_rows", "ship_lag_seconds"} {
		names = append(names, prometheus.BuildFQName(plugin.Namespace, subsystem, n))
	}
	return names
}
