package testutil

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// prefix is the start of every querylog metric's name.
const prefix = "coredns_querylog_"

// Metrics is one scrape or gathering: every metric family by name.
type Metrics map[string]*dto.MetricFamily

// Scrape reads the Prometheus text exposition at url (a /metrics endpoint). It gives up after
// 30s, well within Patience, so that a wait can try again; a race-checked CoreDNS on busy
// cores can take seconds to answer.
func Scrape(url string) (Metrics, error) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// Gather collects the metrics of this process (prometheus.DefaultGatherer, where CoreDNS's
// plugins register theirs).
func Gather(t testing.TB) Metrics {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := Metrics{}
	for _, f := range families {
		m[f.GetName()] = f
	}
	return m
}

// Get sums coredns_querylog_<name> over the series for database db whose labels include the
// given name, value pairs. An absent series counts 0.
func (m Metrics) Get(db, name string, kv ...string) float64 {
	var v float64
	for _, s := range m[prefix+name].GetMetric() {
		if label(s, "db") != db {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			match = match && label(s, kv[i]) == kv[i+1]
		}
		if match {
			v += s.GetCounter().GetValue() + s.GetGauge().GetValue() + s.GetUntyped().GetValue()
		}
	}
	return v
}

// Has reports whether coredns_querylog_<name> has a series whose labels include the given
// name, value pairs, whatever its value.
func (m Metrics) Has(name string, kv ...string) bool {
	for _, s := range m[prefix+name].GetMetric() {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			match = match && label(s, kv[i]) == kv[i+1]
		}
		if match {
			return true
		}
	}
	return false
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Account is querylog's accounting of one database, summed over servers: every entry
// enqueued is written, dropped or still buffered.
type Account struct{ Enqueued, Written, Dropped, Buffered float64 }

// Account returns the accounting of db.
func (m Metrics) Account(db string) Account {
	return Account{m.Get(db, "enqueued_total"), m.Get(db, "written_total"), m.Get(db, "dropped_total"), m.Get(db, "buffer_size")}
}

// String is querylog's metrics in the text format, for failure messages.
func (m Metrics) String() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if strings.HasPrefix(name, prefix) {
			expfmt.MetricFamilyToText(&b, m[name])
		}
	}
	return b.String()
}
