package ship

import (
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
)

// The shipper's collectors. The plugin registers them (Collectors), with its own, so that its
// MetricNames lists them; panics_total, which the shipper shares with the plugin's goroutines,
// is internal/retry's.
var (
	shippedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "shipped_total",
		Help:      "Counter of rows ClickHouse has acknowledged.",
	}, []string{"db"})

	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ship_errors_total",
		Help:      "Counter of failed attempts to ship (connect, check the table, insert); each is retried.",
	}, []string{"db"})

	droppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      "ship_dropped_total",
		Help:      "Counter of rows deleted from SQLite before they were shipped, by reason.",
	}, []string{"db", "reason"})

	descLagRows    = newDesc("ship_lag_rows", "Rows in SQLite after the ship cursor (difference of seq).")
	descLagSeconds = newDesc("ship_lag_seconds", "Age of the oldest row not yet shipped; 0 when caught up.")
)

const subsystem = "querylog"

func newDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(plugin.Namespace, subsystem, name), help, []string{"db"}, nil)
}

// Collectors returns the shipper's collectors for the plugin to register: its counters, and
// the lag gauges, read at scrape time from each shipper that running returns.
func Collectors(running func() []*Shipper) []prometheus.Collector {
	return []prometheus.Collector{shippedTotal, errorsTotal, droppedTotal, lagCollector{running}}
}

type lagCollector struct{ running func() []*Shipper }

func (lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLagRows
	ch <- descLagSeconds
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, s := range c.running() {
		rows, seconds := s.Lag(now)
		ch <- prometheus.MustNewConstMetric(descLagRows, prometheus.GaugeValue, float64(rows), s.db)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, seconds, s.db)
	}
}
