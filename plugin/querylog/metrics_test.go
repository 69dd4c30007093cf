package querylog

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// dbSeries and serverSeries are every series the README lists, by the labels they carry besides
// db: for a database, and for each server (listener) that logs to it.
var (
	dbSeries = []string{"buffer_size", "buffer_capacity", "buffer_peak_size", "flush_errors_total",
		"flush_interval_seconds", "batch_flush_duration_seconds", "batch_flush_size", "db_size_bytes",
		"pruned_total", "last_flush_timestamp_seconds", "disk_low", "wal_size_bytes"}
	serverSeries = []string{"enqueued_total", "written_total"}
)

// TestMetricsExistFromStartup scrapes a server that has answered nothing yet: every documented
// series must already exist, at 0, for its database and for each of its servers (here one
// server block listening on two ports, so two servers), or rate() and increase() would miss
// the first failure, drop or ignored query.
func TestMetricsExistFromStartup(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	ports := testutil.Ports(t, 2)
	servers := []string{fmt.Sprintf("dns://127.0.0.1:%d", ports[0]), fmt.Sprintf("dns://127.0.0.1:%d", ports[1])}
	inst := startCoreDNS(t, serverBlock(fmt.Sprintf(".:%d .:%d", ports[0], ports[1]), db, "        adaptive off\n        flush_interval 100ms", "192.0.2.1"))
	defer testutil.StopCoreDNS(t, inst)

	m := testutil.Gather(t)
	for _, name := range dbSeries {
		if !m.Has(name, "db", db) {
			t.Errorf("no %s{db=%q} before the first query", name, db)
		}
	}
	for _, server := range servers {
		for _, name := range serverSeries {
			if !m.Has(name, "db", db, "server", server) {
				t.Errorf("no %s{server=%q, db=%q} before the first query", name, server, db)
			}
		}
		for _, reason := range reasonNames {
			if !m.Has("dropped_total", "db", db, "server", server, "reason", reason) {
				t.Errorf("no dropped_total{server=%q, db=%q, reason=%q} before the first query", server, db, reason)
			}
		}
		if !m.Has("ignored_total", "server", server) {
			t.Errorf("no ignored_total{server=%q} before the first query", server)
		}
	}
	for _, g := range []string{inFlusher, inCheckpointer} {
		if !m.Has("panics_total", "db", db, "goroutine", g) {
			t.Errorf("no panics_total{db=%q, goroutine=%q} before the first query", db, g)
		}
	}
	if a := m.Account(db); a != (testutil.Account{}) {
		t.Errorf("accounting before the first query: %+v, want all 0", a)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", m)
	}

	// The server labels made at startup are the ones queries are counted under: one query to
	// each port adds no series.
	for i := range servers {
		l := testutil.StartLoad(t, "udp", fmt.Sprintf("127.0.0.1:%d", ports[i]), fmt.Sprintf("p%d", i), 1, 1, 0)
		l.Wait()
	}
	testutil.WaitFor(t, 10*time.Second, "both queries to be written", func() bool { return testutil.Gather(t).Get(db, "written_total") == 2 })
	m = testutil.Gather(t)
	for _, server := range servers {
		if e := m.Get(db, "enqueued_total", "server", server); e != 1 {
			t.Errorf("enqueued_total{server=%q} = %v, want 1", server, e)
		}
	}
	if n := len(m["coredns_querylog_enqueued_total"].GetMetric()); !m.Has("enqueued_total", "db", db) || n < len(servers) {
		t.Errorf("%d enqueued_total series", n)
	}
	for _, s := range m["coredns_querylog_enqueued_total"].GetMetric() {
		var server, sdb string
		for _, l := range s.GetLabel() {
			switch l.GetName() {
			case "server":
				server = l.GetValue()
			case "db":
				sdb = l.GetValue()
			}
		}
		if sdb == db && !slices.Contains(servers, server) {
			t.Errorf("queries counted under server %q, not one of the servers made at startup %q", server, servers)
		}
	}
}

// TestMetricNames checks the names recorded at registration against what is exported: every
// querylog family the registry gathers is listed, once, and so is every documented series.
func TestMetricNames(t *testing.T) {
	declareSeries("metric-names.db", []string{"dns://:53"})
	names := MetricNames()
	listed := map[string]bool{}
	for _, n := range names {
		if listed[n] {
			t.Errorf("%s listed twice", n)
		}
		listed[n] = true
	}
	for name := range testutil.Gather(t) {
		if strings.HasPrefix(name, "coredns_querylog_") && !listed[name] {
			t.Errorf("%s is exported but not in MetricNames", name)
		}
	}
	for _, s := range slices.Concat(dbSeries, serverSeries, []string{"dropped_total", "ignored_total", "truncated_total", "panics_total"}) {
		if !listed["coredns_querylog_"+s] {
			t.Errorf("coredns_querylog_%s is documented but not in MetricNames", s)
		}
	}
}
