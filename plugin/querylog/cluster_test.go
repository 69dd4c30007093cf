package querylog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"weak"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// testpod is a test-only plugin that gives the metadata the kubernetes plugin gives for a
// client that is a pod: 127.0.0.1 is pod web-1 of namespace team-a; other clients are none.
type testpod struct{ next plugin.Handler }

func init() {
	plugin.Register("testpod", func(c *caddy.Controller) error {
		for c.Next() {
		}
		dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler { return testpod{next} })
		return nil
	})
}

func (t testpod) Name() string { return "testpod" }
func (t testpod) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return plugin.NextOrFailure(t.Name(), t.next, ctx, w, r)
}
func (t testpod) Metadata(ctx context.Context, state request.Request) context.Context {
	if state.IP() == "127.0.0.1" {
		metadata.SetValueFunc(ctx, namespaceLabel, func() string { return "team-a" })
		metadata.SetValueFunc(ctx, podLabel, func() string { return "web-1" })
	}
	return ctx
}

// TestClusterColumns: each reply's row says who asked (namespace and pod, whenever the
// metadata gives them, whatever the metadata option lists) and whether the cache answered,
// with the plugin that really did (the cache hides it, and loadbalance in front of the cache
// hides the cache's); a block without a cache says nothing of it. A query sent again from the
// same socket with the same id is marked as a retransmission of the first. The rollups count
// the namespace's queries, NXDOMAINs, hits and retransmissions, and the outcomes' hits.
func TestClusterColumns(t *testing.T) {
	tests := []struct {
		name, plugins string
		want          []string // plugin, cache status of: miss.example.org twice, nx.example.net twice
	}{
		// The template's NXDOMAIN has no SOA, so the cache does not keep it.
		{"cache", "cache 30", []string{"template miss", "cache hit", "template miss", "template miss"}},
		{"loadbalance and cache", "loadbalance\n    cache 30", []string{"template miss", "cache hit", "template miss", "template miss"}},
		{"no cache", "", []string{"template -", "template -", "template -", "template -"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "q.db")
			inst := startCoreDNS(t, fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    metadata
    testpod
    querylog %s {
        metadata testpod/none kubernetes/client-namespace
        flush_interval 100ms
        adaptive off
    }
    %s
%s
}`, db, tc.plugins, e2eBlock))
			conn, err := net.Dial("udp", udpAddr(inst, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			co := &dns.Conn{Conn: conn}
			asked := int64(0)
			ask := func(name string, qtype uint16, id uint16) {
				m := new(dns.Msg)
				m.SetQuestion(name, qtype)
				m.Id = id
				if err := co.WriteMsg(m); err != nil {
					t.Fatal(err)
				}
				if r, err := co.ReadMsg(); err != nil || r.Id != id {
					t.Fatalf("%s: %v, %v", name, r, err)
				}
				asked++
				testutil.WaitRows(t, db, asked, "") // the rows are compared in the order asked
			}
			ask("miss.example.org.", dns.TypeA, 1)
			ask("miss.example.org.", dns.TypeA, 2)
			ask("nx.example.net.", dns.TypeA, 3)
			ask("nx.example.net.", dns.TypeA, 3) // the same id from the same port: a retransmission
			testutil.StopCoreDNS(t, inst)

			ro := testutil.OpenRO(t, db) // waits for the writer's locks, where sqlite3 would fail
			var rows string
			if err := ro.QueryRow(`SELECT group_concat(plugin || ' ' || coalesce(cache, '-') || ' ' || namespace || '/' || pod
				|| ' ' || coalesce(metadata, '-') || ' ' || iif(q.retry_of IS NULL, '-', (SELECT count(*) FROM log WHERE id < q.retry_of)), char(10) ORDER BY id)
				FROM queries q`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(rows, "\n")
			var want []string
			for i, w := range tc.want {
				retry := "-"
				if i == 3 {
					retry = "2" // the third row (two before it) is the first sending
				}
				want = append(want, w+" team-a/web-1 - "+retry)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("rows (plugin, cache, namespace/pod, metadata, rows before the first sending it retransmits):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			// The rollups are written as the database closes, after the final shutdown's grace.
			hits, misses := strings.Count(strings.Join(tc.want, " "), "hit"), strings.Count(strings.Join(tc.want, " "), "miss")
			testutil.WaitFor(t, 3*tailGrace, "the rollups to be written", func() bool {
				return testutil.CountRows(t, db, "WHERE EXISTS (SELECT 1 FROM rollup_namespaces)") > 0
			})
			var ns string
			if err := ro.QueryRow(`SELECT group_concat(namespace || '|' || n || '|' || nxdomain || '|' || hits || '|' || misses || '|' || retries) FROM
				(SELECT namespace, sum(n) AS n, sum(nxdomain) AS nxdomain, sum(hits) AS hits, sum(misses) AS misses, sum(retries) AS retries
				FROM rollup_namespaces WHERE span = 60 GROUP BY namespace)`).Scan(&ns); err != nil { // the queries may span two minutes
				t.Fatal(err)
			}
			if want := fmt.Sprintf("team-a|4|2|%d|%d|1", hits, misses); ns != want {
				t.Errorf("rollup_namespaces: %q, want %q", ns, want)
			}
			var outcomeHits, outcomeMisses int
			err = ro.QueryRow(`SELECT sum(hits), sum(misses) FROM rollup_outcomes WHERE span = 60`).Scan(&outcomeHits, &outcomeMisses)
			if err != nil || outcomeHits != hits || outcomeMisses != misses {
				t.Errorf("rollup_outcomes counts %d hits and %d misses (%v), want %d and %d", outcomeHits, outcomeMisses, err, hits, misses)
			}
		})
	}
}

// TestNoMetadataPlugin: a server block without the metadata plugin does not look metadata up
// (its queries carry none); one with it does, for the pod and the metadata option.
func TestNoMetadataPlugin(t *testing.T) {
	dir := t.TempDir()
	inst := startCoreDNS(t, fmt.Sprintf(`example.org:0 {
    bind 127.0.0.1
    metadata
    querylog %s
}
example.net:0 {
    bind 127.0.0.1
    querylog %s
}`, filepath.Join(dir, "with.db"), filepath.Join(dir, "without.db")))
	defer testutil.StopCoreDNS(t, inst)
	inst.StorageMu.RLock()
	g := inst.Storage[generationKey{}].(*generation)
	inst.StorageMu.RUnlock()
	var got []bool
	for _, q := range g.handlers { // in the order of the blocks
		got = append(got, q.noMetadata)
	}
	if want := []bool{false, true}; !slices.Equal(got, want) {
		t.Errorf("noMetadata of the blocks with and without the metadata plugin: %v, want %v", got, want)
	}
}

// TestPodExtras: a pod's queries share one extra, which always names the pod asked for, even
// with goroutines asking for pods in colliding slots at once (run with -race); however many
// pods ask, at most podSlots extras stay reachable; and with the kube mix's 500 pods asking at
// random, few queries find their pod's slot taken by another (about 7%).
func TestPodExtras(t *testing.T) {
	var p podExtras
	a := p.get("team-a", "web-1")
	if b := p.get("team-a", "web-1"); b != a || b.namespace != "team-a" || b.pod != "web-1" {
		t.Errorf("second query of web-1: %+v (%p), want the first's %+v (%p)", b, b, a, a)
	}
	if b := p.get("team-b", "web-1"); b == a || b.namespace != "team-b" || b.pod != "web-1" {
		t.Errorf("web-1 of team-b: %+v, want its own extra", b)
	}

	// Hostile: every query a new pod, from goroutines at once.
	const goroutines, each = 4, 25_000
	made := make([][]weak.Pointer[extra], goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				ns, pod := fmt.Sprintf("ns-%d", i%7), fmt.Sprintf("pod-%d-%d", g, i)
				x := p.get(ns, pod)
				if x.namespace != ns || x.pod != pod {
					t.Errorf("asked for %s/%s, got %s/%s", ns, pod, x.namespace, x.pod)
					return
				}
				made[g] = append(made[g], weak.Make(x))
			}
		})
	}
	wg.Wait()
	runtime.GC()
	live := 0
	for _, ws := range made {
		for _, w := range ws {
			if w.Value() != nil {
				live++
			}
		}
	}
	if live > podSlots {
		t.Errorf("%d of %d pods' extras still reachable, want at most %d", live, goroutines*each, podSlots)
	}

	r := rand.New(rand.NewPCG(3, 4))
	pods := kubePods(r, 500)
	var q podExtras
	distinct := map[*extra]bool{}
	const queries = 200_000
	for range queries {
		k := pods[r.IntN(len(pods))]
		distinct[q.get(k.namespace, k.pod)] = true
	}
	if share := float64(len(distinct)) / queries; share > 0.12 {
		t.Errorf("%.1f%% of queries made an extra, want few", 100*share)
	}
}
