package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/fakek8s"
	"github.com/querylog/querylog/internal/testutil"
)

// clusterBlock is what the cluster tests' server block adds: the metadata plugin, the
// kubernetes plugin on the fake API at url (pods verified, so that it names client pods) and a
// cache.
func clusterBlock(url string) string {
	return fmt.Sprintf("metadata\n    kubernetes cluster.local {\n        endpoint %s\n        pods verified\n    }\n    cache 30", url)
}

// skipKubernetesUnderRace skips a test that runs CoreDNS with the kubernetes plugin in this
// process under the race detector, and `make unit` runs this package again without it: the
// plugin's setup sets klog's global logger (klog.SetLogger), which the informers of an earlier
// instance in the process read without a lock, so a second instance is a data race in
// CoreDNS's plugin, reported whatever querylog does (CI failed TestClusterNamespaces and
// TestPodFilters on it). test/ runs the built binary, one process per server.
func skipKubernetesUnderRace(t *testing.T) {
	t.Helper()
	if testutil.Race {
		t.Skip("CoreDNS's kubernetes plugin races on klog's global logger between instances in one process; make unit runs this test without -race")
	}
}

// startClusterServer is startServer with the kubernetes plugin (pods verified) on a fake API
// server, the metadata plugin and cache 30: a query from 127.0.0.2 is logged as pod web-1 of
// team-a, from 127.0.0.3 as web-1 of team-b (the same name in another namespace), from
// 127.0.0.5 as db-0 of team-b, from any other address with no pod; each reply is a cache hit or
// miss. It returns once the kubernetes plugin names the pods.
func startClusterServer(t *testing.T, db string) *server {
	t.Helper()
	skipKubernetesUnderRace(t)
	api := fakek8s.Start(t, fakek8s.Namespace("team-a"), fakek8s.Namespace("team-b"),
		fakek8s.Pod("team-a", "web-1", "127.0.0.2"), fakek8s.Pod("team-b", "web-1", "127.0.0.3"), fakek8s.Pod("team-b", "db-0", "127.0.0.5"))
	s := startServerBlock(t, db, "", clusterBlock(api.URL))
	// The kubernetes plugin may serve before it has listed the pods: ask, each time a new name
	// (a cached reply would tell nothing new), until the row names the pod.
	asked := int64(0)
	testutil.WaitFor(t, 5*time.Second, "the kubernetes plugin to name the pods", func() bool {
		asked++
		name := fmt.Sprintf("sync%d.example.org.", asked)
		s.exchange(t, []query{{name, dns.TypeA, "127.0.0.2", false}})
		testutil.WaitFor(t, 5*time.Second, "the row of "+name, func() bool { return rowCount(t, db) == asked })
		return strs(t, db, `SELECT coalesce(namespace, '-') FROM queries_readable WHERE qname = ?`, name)[0][0] == "team-a"
	})
	return s
}

// clusterMix is what the cluster tests send: from each pod and from no pod, names asked again
// (cache hits), NXDOMAINs the cache does not keep (the template gives no SOA), udp and tcp.
var clusterMix = func() []query {
	var qs []query
	add := func(n int, q query) {
		for range n {
			qs = append(qs, q)
		}
	}
	add(4, query{"www.example.org.", dns.TypeA, "127.0.0.2", false})
	add(1, query{"a.b.example.org.", dns.TypeA, "127.0.0.2", false})
	add(2, query{"x.example.net.", dns.TypeTXT, "127.0.0.2", false})
	add(2, query{"www.example.org.", dns.TypeA, "127.0.0.3", false})
	add(1, query{"example.org.", dns.TypeA, "127.0.0.3", true})
	add(3, query{"notexample.org.", dns.TypeA, "127.0.0.5", false})
	add(1, query{"db.example.org.", dns.TypeA, "127.0.0.5", false})
	add(2, query{"www.example.org.", dns.TypeA, "127.0.0.4", false})
	add(1, query{"www.example.org.", dns.TypeAAAA, "127.0.0.4", true})
	return qs
}()

// podFilters are --namespace and --pod, alone and with other filters, and the rows of
// queries_readable each selects.
var podFilters = []struct {
	args  []string
	where string
}{
	{[]string{"--namespace", "team-a"}, `namespace = 'team-a'`},
	{[]string{"--namespace", "team-b"}, `namespace = 'team-b'`},
	{[]string{"--pod", "web-1"}, `pod = 'web-1'`}, // of both namespaces
	{[]string{"--namespace", "team-b", "--pod", "web-1"}, `namespace = 'team-b' AND pod = 'web-1'`},
	{[]string{"--namespace", "team-a", "--name", "www.example.org", "--type", "A"}, `namespace = 'team-a' AND qname = 'www.example.org.' AND qtype = 'A'`},
	{[]string{"--namespace", "team-b", "--client", "127.0.0.5"}, `namespace = 'team-b' AND client_ip = '127.0.0.5'`},
	{[]string{"--namespace", "nope"}, `0`},
	{[]string{"--pod", "db-0", "--namespace", "team-a"}, `0`}, // db-0 is of team-b
}

// TestPodFilters: --namespace and --pod select the rows whose client the kubernetes plugin named
// so, in search (newest first, a page at a time), export and tail, as SQL on the view does; the
// rows show their namespace, pod and cache status in JSON, CSV and the tables; tail -f
// --namespace follows the namespace's new rows only.
func TestPodFilters(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startClusterServer(t, db)
	s.send(t, clusterMix)
	if got := strs(t, db, `SELECT count(DISTINCT namespace || pod), sum(cache = 'hit'), sum(cache = 'miss') FROM queries_readable`)[0]; got[0] != "3" || got[1] == "0" || got[2] == "0" {
		t.Fatalf("pods, hits, misses in the file: %q; want 3 pods, some hits and misses", got)
	}
	for _, c := range podFilters {
		what := strings.Join(c.args, " ")
		want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE `+c.where+` ORDER BY id`)
		newest := make([][]string, len(want))
		for i := range want {
			newest[len(want)-1-i] = want[i]
		}
		got, _ := searchPages(t, 3, append([]string{"--db", db}, c.args...)...)
		checkSame(t, "search "+what, got, newest)
		checkSame(t, "export "+what, csvRecords(t, mustRun(t, append([]string{"export", "--db", db}, c.args...)...))[1:], nullsAs(want, ""))
		checkSame(t, "export --json "+what, jsonRecords(t, mustRun(t, append([]string{"export", "--json", "--db", db}, c.args...)...)), want)
		checkSame(t, "tail "+what, jsonRecords(t, mustRun(t, append([]string{"tail", "--json", "-n", "100", "--db", db}, c.args...)...)), want)
	}

	// The tables: CACHE after PLUGIN, POD (namespace/pod) before the name.
	out := mustRun(t, "search", "--db", db, "--namespace", "team-a", "--name", "www.example.org", "-n", "1")
	lines := strings.Split(out, "\n")
	if head, row := lines[0], lines[1]; strings.Join(strings.Fields(head), " ") != strings.Join(tableColumns, " ") ||
		!strings.Contains(row, "  hit  ") || !strings.HasSuffix(row, "  team-a/web-1  www.example.org.") {
		t.Errorf("search table:\n%s", out)
	}
	// Its AAAA, a cache miss (by type: rows of one millisecond are in the order the writer got
	// them, and the A before it may come after it).
	out = mustRun(t, "tail", "--db", db, "-n", "1", "--client", "127.0.0.4", "--type", "AAAA")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "  miss  ") || !strings.Contains(lines[1], "  -  ") || !strings.HasSuffix(lines[1], "  www.example.org.") {
		t.Errorf("tail table of a client that is no pod:\n%s", out)
	}

	// tail -f --namespace team-b: the rows of team-b written while it follows, and no other.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf, errBuf := testutil.NewLogBuffer(), testutil.NewLogBuffer()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"tail", "-f", "-n", "0", "--json", "--interval", "50ms", "--db", db, "--namespace", "team-b"}, buf, errBuf)
	}()
	first := strs(t, db, `SELECT max(id) FROM queries`)[0][0]
	s.send(t, clusterMix)
	want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id > ? AND namespace = 'team-b' ORDER BY id`, first)
	testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("tail -f --namespace team-b to print %d rows", len(want)), func() bool {
		return strings.Count(buf.String(), "\n") >= len(want)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("tail -f exited %d: %s", code, errBuf)
	}
	checkSame(t, "tail -f --namespace team-b", jsonRecords(t, buf.String()), want)
}

// TestPodFiltersWithoutPods: a file of schema 1 or 2 cannot say a row's pod: --namespace and
// --pod are refused (exit 2), naming the option and the schema, as top namespaces and pods are.
// A file of schema 3 whose server never saw a pod or a cache (no pod column yet) has no
// matching row so far: no rows, and top counts none.
func TestPodFiltersWithoutPods(t *testing.T) {
	t.Parallel()
	v1 := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, v1, 20, time.Now().Add(-time.Hour).UnixMilli())
	for _, args := range [][]string{
		{"search", "--namespace", "team-a"},
		{"export", "--pod", "web-1"},
		{"tail", "--namespace", "team-a", "--pod", "web-1"},
		{"top", "domains", "--namespace", "team-a"},
		{"top", "namespaces"},
		{"top", "pods"},
	} {
		_, errOut, code := querylogCmd(t, append(args, "--db", v1)...)
		if code != exitUsage || !strings.Contains(errOut, "is of schema 1, whose rows do not say their client's namespace and pod") {
			t.Errorf("querylog %s on a file of schema 1: exit %d, %q", strings.Join(args, " "), code, errOut)
		}
	}

	db := loggedFile(t)
	if got := strs(t, db, `SELECT count(*) FROM pragma_table_info('log') WHERE name = 'pod'`)[0][0]; got != "0" {
		t.Fatalf("the file of a server without pods has a pod column")
	}
	if out := mustRun(t, "search", "--db", db, "--namespace", "team-a"); out != "no rows match\n" {
		t.Errorf("search --namespace on a file without pods: %q", out)
	}
	if out := mustRun(t, "export", "--db", db, "--pod", "web-1"); out != strings.Join(exportColumns, ",")+"\n" {
		t.Errorf("export --pod on a file without pods: %q", out)
	}
	for _, kind := range []string{"namespaces", "pods"} {
		got := runTopJSON(t, kind, "--db", db)
		if got.Total != 0 || len(got.Rows) != 0 || got.Cache.HitRatio != nil {
			t.Errorf("top %s on a file without pods: %+v", kind, got)
		}
	}
	out := mustRun(t, "top", "domains", "--db", db, "--namespace", "team-a")
	if !strings.Contains(out, "no queries in the window of namespace team-a\n") || !strings.Contains(out, "no row of this file has a namespace or pod yet") ||
		!strings.Contains(out, "cache hits: not known") {
		t.Errorf("top domains --namespace on a file without pods:\n%s", out)
	}
}

// hitCounts are the cache hits and replies with a cache status of the rows of queries_readable
// by col where.
func hitCounts(t *testing.T, db, col, where string) map[string][2]int64 {
	t.Helper()
	m := map[string][2]int64{}
	for _, r := range strs(t, db, `SELECT `+col+`, coalesce(sum(cache = 'hit'), 0), count(cache) FROM queries_readable WHERE `+where+` GROUP BY 1`) {
		m[r[0]] = [2]int64{atoi(t, r[1]), atoi(t, r[2])}
	}
	return m
}

// checkHits checks top's cache hit ratio, of the window and of each row if rows, against want
// (key → hits, replies with a cache status; "" the window).
func checkHits(t *testing.T, what string, got topJSON, want map[string][2]int64, rows bool) {
	t.Helper()
	check := func(key string, c topCache) {
		w := want[key]
		if c.Hits != w[0] || c.Replies != w[1] || (c.HitRatio == nil) != (w[1] == 0) ||
			(c.HitRatio != nil && *c.HitRatio != float64(w[0])/float64(w[1])) {
			t.Errorf("%s: cache of %q: %+v, want %d hits of %d", what, key, c, w[0], w[1])
		}
	}
	check("", got.Cache)
	if rows {
		for _, r := range got.Rows {
			check(r.Key, r.topCache)
		}
	}
}

// TestTopNamespacesPods: top namespaces and pods (rollups and rows), top domains and clients
// narrowed by --namespace (the rollups count within each namespace), and anything
// narrowed by --pod or rcodes by --namespace (rows only) count what SQL counts on the view,
// while the server runs (rows after the rollups) and after it stopped (from the rollups); every
// top gives the window's cache hit ratio, namespaces and pods each row's.
func TestTopNamespacesPods(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startClusterServer(t, db)
	s.send(t, clusterMix)
	podKey := `namespace || '/' || pod`
	check := func(stage string) {
		for _, c := range []struct {
			args       []string
			col, where string
			rows       bool // each row has its hit ratio
			rowsOnly   bool // no rollup counts it
		}{
			{[]string{"namespaces"}, "namespace", `namespace IS NOT NULL`, true, false},
			{[]string{"namespaces", "--namespace", "team-b"}, "namespace", `namespace = 'team-b'`, true, false},
			{[]string{"pods"}, podKey, `namespace IS NOT NULL`, true, false},
			{[]string{"pods", "--namespace", "team-b"}, podKey, `namespace = 'team-b'`, true, false},
			{[]string{"domains", "--namespace", "team-a"}, "qname", `namespace = 'team-a'`, false, false},
			{[]string{"clients", "--namespace", "team-b"}, "client_ip", `namespace = 'team-b'`, false, false},
			{[]string{"clients", "--pod", "web-1"}, "client_ip", `pod = 'web-1'`, false, true},
			{[]string{"rcodes", "--namespace", "team-b"}, "rcode", `namespace = 'team-b'`, false, true},
			{[]string{"rcodes", "--namespace", "team-b", "--pod", "db-0"}, "rcode", `namespace = 'team-b' AND pod = 'db-0'`, false, true},
			{[]string{"domains"}, "qname", `1`, false, false},
			{[]string{"types"}, "qtype", `1`, false, false},
		} {
			what := stage + ": top " + strings.Join(c.args, " ")
			want, total := sqlCounts(t, db, c.col, c.where)
			got := runTopJSON(t, append(c.args, "--db", db, "--since", "1h")...)
			checkTop(t, what, got, want, total)
			hits := hitCounts(t, db, c.col, c.where)
			all := hitCounts(t, db, "1", c.where)["1"]
			hits[""] = all
			checkHits(t, what, got, hits, c.rows)
			if got.Sources.RowsOnly != c.rowsOnly || (c.rowsOnly && got.Sources.RawRows != total) {
				t.Errorf("%s: sources %+v, want rows only: %v", what, got.Sources, c.rowsOnly)
			}
			if stage == "server stopped" && !c.rowsOnly && got.Sources.RollupQueries != total {
				t.Errorf("%s: sources %+v, want every query from the rollups", what, got.Sources)
			}
		}
	}
	check("server running")
	s.stop()
	check("server stopped")

	out := mustRun(t, "top", "namespaces", "--db", db)
	lines := strings.Split(out, "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "NAMESPACE QUERIES SHARE CACHE HITS" || !strings.HasPrefix(lines[1], "team-a ") ||
		!strings.Contains(out, "\ncache hits: ") {
		t.Errorf("top namespaces for people:\n%s", out)
	}
	out = mustRun(t, "top", "domains", "--db", db, "--namespace", "team-b", "--pod", "web-1")
	if !strings.Contains(out, "queries of pod team-b/web-1\n") || !strings.Contains(out, "from raw rows only (3 rows): the rollups do not count domains by namespace or pod") {
		t.Errorf("top domains --namespace --pod for people:\n%s", out)
	}
	if _, errOut, code := querylogCmd(t, "top", "upstreams", "--db", db, "--namespace", "team-a"); code != exitUsage || !strings.Contains(errOut, `--namespace "team-a"`) {
		t.Errorf("top upstreams --namespace: exit %d, %q", code, errOut)
	}
	// A file of schema 3 written before the rollups counted pods: top pods reads the rows.
	testutil.Exec(t, db, `DROP TABLE rollup_namespace_pods`)
	want, total := sqlCounts(t, db, podKey, `namespace IS NOT NULL`)
	got := runTopJSON(t, "pods", "--db", db, "--since", "1h")
	checkTop(t, "top pods without rollup_namespace_pods", got, want, total)
	if !got.Sources.RowsOnly {
		t.Errorf("top pods without rollup_namespace_pods: sources %+v, want rows only", got.Sources)
	}
}

// TestTopNamespaceByHours: an hour's sum keeps a namespace's names and clients by the hour only,
// so top domains and clients --namespace take a window that begins inside a summed hour from
// the hour's start, and say so.
func TestTopNamespaceByHours(t *testing.T) {
	t.Parallel()
	db := loggedFile(t)
	hour := time.Now().Unix()/3600*3600 - 3*3600
	testutil.SQLite3(t, db, fmt.Sprintf(`
		INSERT INTO rollup_namespace_names VALUES (3600, %[1]d, 'team-a', 'old.example.', 0, 7, 7, 0, 7),
			(3600, %[1]d, 'team-b', 'other.example.', 0, 5, 5, 0, 5);
		INSERT INTO rollup_namespace_clients VALUES (3600, %[1]d, 'team-a', '10.9.9.9', 7);
		INSERT INTO rollup_namespaces VALUES (3600, %[1]d, 'team-a', 7, 0, 0, 0, 0), (3600, %[1]d, 'team-b', 5, 0, 0, 0, 0);
		INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us) VALUES (3600, %[1]d, 0, 1, 'udp', 'cache', 12, 1200);`, hour))
	since := time.Unix(hour+1800, 0).UTC().Format(time.RFC3339)
	for kind, want := range map[string]map[string]int64{"domains": {"old.example.": 7}, "clients": {"10.9.9.9": 7}} {
		got := runTopJSON(t, kind, "--db", db, "--namespace", "team-a", "--since", since)
		checkTop(t, "top "+kind+" --namespace team-a --since "+since, got, want, 7)
		out := mustRun(t, "top", kind, "--db", db, "--namespace", "team-a", "--since", since)
		if !strings.Contains(out, "window: "+rfc3339(hour)+" to now (rounded to whole hours, as rollups keep a namespace's names and clients once the hour is over)") {
			t.Errorf("top %s --namespace team-a --since %s:\n%s", kind, since, out)
		}
	}
	// top domains without --namespace still begins at the minute.
	if out := mustRun(t, "top", "domains", "--db", db, "--since", since); !strings.Contains(out, "window: "+since+" to now (rounded to whole minutes") {
		t.Errorf("top domains --since %s:\n%s", since, out)
	}
}
