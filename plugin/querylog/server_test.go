package querylog

import (
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/root"
	_ "github.com/coredns/coredns/plugin/template"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// In-process CoreDNS for end-to-end tests, as CoreDNS's own test/server.go does.

func init() {
	if err := dnsserver.SetDirectives(WithDirective(dnsserver.Directives)); err != nil {
		panic(err)
	}
	caddy.Quiet = true
	dnsserver.Quiet = true
}

type corefileInput string

func (c corefileInput) Body() []byte       { return []byte(c) }
func (c corefileInput) Path() string       { return "Corefile" }
func (c corefileInput) ServerType() string { return "dns" }

func startCoreDNS(t *testing.T, corefile string) *caddy.Instance {
	t.Helper()
	inst, err := caddy.Start(corefileInput(corefile))
	if err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	return inst
}

// stopCoreDNS shuts an instance down the way SIGTERM does: callbacks, then servers.
func stopCoreDNS(t *testing.T, inst *caddy.Instance) {
	t.Helper()
	for _, err := range inst.ShutdownCallbacks() {
		t.Errorf("shutdown callback: %v", err)
	}
	inst.Stop()
}

func udpAddr(inst *caddy.Instance, k int) string { return inst.Servers()[k].LocalAddr().String() }
func tcpAddr(inst *caddy.Instance, k int) string { return inst.Servers()[k].Addr().String() }

// load sends n queries for name%d.suffix over network to addr from workers goroutines and
// returns how many were answered.
func load(t *testing.T, network, addr, suffix string, n, workers int) int64 {
	t.Helper()
	var answered atomic.Int64
	var wg sync.WaitGroup
	per := n / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: network, Timeout: 2 * time.Second}
			for i := range per {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("name%d-%d.%s", w, i, suffix), dns.TypeA)
				if r, _, err := c.Exchange(m, addr); err == nil && r != nil {
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return answered.Load()
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func countRows(t *testing.T, path, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := openDB(t, path).QueryRow("SELECT count(*) FROM queries "+where, args...).Scan(&n); err != nil {
		t.Fatalf("counting rows in %s: %v", path, err)
	}
	return n
}

// account sums querylog's counters for one database across servers.
type accountTotals struct{ enqueued, written, buffered, dropped float64 }

func accountFor(t *testing.T, db string) accountTotals {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var a accountTotals
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if label(m, "db") != db {
				continue
			}
			switch f.GetName() {
			case "coredns_querylog_enqueued_total":
				a.enqueued += m.GetCounter().GetValue()
			case "coredns_querylog_written_total":
				a.written += m.GetCounter().GetValue()
			case "coredns_querylog_dropped_total":
				a.dropped += m.GetCounter().GetValue()
			case "coredns_querylog_buffer_size":
				a.buffered += m.GetGauge().GetValue()
			}
		}
	}
	return a
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
