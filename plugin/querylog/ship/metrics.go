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
		Name:      nameShipped,
		Help:      "Counter of rows ClickHouse has acknowledged.",
	}, []string{"db"})

	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      nameErrors,
		Help:      "Counter of failed attempts to ship (connect, check the table, insert); each is retried.",
	}, []string{"db"})

	droppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: subsystem,
		Name:      nameDropped,
		Help:      "Counter of rows deleted from SQLite before they were shipped, by reason.",
	}, []string{"db", "reason"})

	descLagRows    = newDesc(nameLagRows, "Rows in SQLite after the ship cursor (difference of seq).")
	descLagSeconds = newDesc(nameLagSeconds, "Age of the oldest row not yet shipped; 0 when caught up.")
)

const subsystem = "querylog"

// The metrics' names, for the collectors and for Names.
const (
	nameShipped    = "shipped_total"
	nameErrors     = "ship_errors_total"
	nameDropped    = "ship_dropped_total"
	nameLagRows    = "ship_lag_rows"
	nameLagSeconds = "ship_lag_seconds"
)

// Names are the full names of the shipper's metrics, for the plugin's MetricNames.
func Names() []string {
	var out []string
	for _, n := range []string{nameShipped, nameErrors, nameDropped, nameLagRows, nameLagSeconds} {
		out = append(out, prometheus.BuildFQName(plugin.Namespace, subsystem, n))
	}
	return out
}

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
