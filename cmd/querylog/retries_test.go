package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
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

// clusterFile is a database written by a server with the kubernetes plugin on a fake API
// (pods verified: 127.0.0.2 is pod client-a of team-a, 127.0.0.3 client-b of team-b), the
// metadata plugin, and a cache, sent retransmissions from one socket with one id, and the
// same queries as controls from another socket or with another id. The server is stopped.
func clusterFile(t *testing.T) string {
	t.Helper()
	skipKubernetesUnderRace(t)
	api := fakek8s.Start(t, fakek8s.Namespace("team-a"), fakek8s.Namespace("team-b"),
		fakek8s.Pod("team-a", "client-a", "127.0.0.2"), fakek8s.Pod("team-b", "client-b", "127.0.0.3"))
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerBlock(t, db, "", clusterBlock(api.URL))
	// One socket per client; a query is written with id, its reply read after the next write
	// when pipelined (the first of a pair that the server answers after the second arrives).
	socket := func(client string) *dns.Conn {
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(client)}}
		c, err := d.Dial("udp", s.udp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &dns.Conn{Conn: c}
	}
	write := func(co *dns.Conn, name string, id uint16) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Id = id
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	read := func(co *dns.Conn, ids ...uint16) {
		for range ids {
			co.SetReadDeadline(time.Now().Add(5 * time.Second))
			if r, err := co.ReadMsg(); err != nil || !strings.Contains(fmt.Sprint(ids), fmt.Sprint(r.Id)) {
				t.Fatalf("reply %v: %v, %v", ids, r, err)
			}
		}
	}
	// A retransmission arrives a few milliseconds after the first query's reply left (rows
	// say arrivals in milliseconds).
	pair := func(co *dns.Conn, name string, id uint16) {
		write(co, name, id)
		read(co, id)
		time.Sleep(5 * time.Millisecond)
		write(co, name, id)
		read(co, id)
	}
	a, a2, b, c := socket("127.0.0.2"), socket("127.0.0.2"), socket("127.0.0.3"), socket("127.0.0.4")
	pair(a, "www.example.org.", 100)
	write(a, "www.example.org.", 101) // another id: not one
	read(a, 101)
	write(a2, "www.example.org.", 100) // another socket: not one
	read(a2, 100)
	write(a, "slow.example.com.", 102) // forwarded, answered after 150 ms: after the retransmission
	write(a, "slow.example.com.", 102)
	read(a, 102, 102)
	pair(b, "nx.example.net.", 7)
	pair(c, "notexample.org.", 9)
	write(c, "x.example.org.", 10)
	read(c, 10)
	testutil.WaitFor(t, 10*time.Second, "11 rows", func() bool {
		time.Sleep(20 * time.Millisecond)
		return rowCount(t, db) == 11
	})
	s.stop()
	return db
}

// retriesJSON is the JSON output of retries.
type retriesJSON struct {
	Retransmissions int64 `json:"retransmissions"`
	Queries         int64 `json:"queries"`
	After           int64 `json:"first_answered_after_retry"`
	Before          int64 `json:"first_answered_before_retry"`
	Unlogged        int64 `json:"first_not_in_file"`
	Clients         []struct {
		Key       string  `json:"key"`
		Namespace *string `json:"namespace"`
		Pod       *string `json:"pod"`
		Retries   int64   `json:"retries"`
	} `json:"clients"`
	Namespaces, Names, Upstreams []struct {
		Key     string `json:"key"`
		Retries int64  `json:"retries"`
	}
	Sources []string `json:"sources"`
}

func (v retriesJSON) summary() string {
	var parts []string
	for _, c := range v.Clients {
		ns, pod := "-", "-"
		if c.Namespace != nil {
			ns = *c.Namespace
		}
		if c.Pod != nil {
			pod = *c.Pod
		}
		parts = append(parts, fmt.Sprintf("%s %s/%s:%d", c.Key, ns, pod, c.Retries))
	}
	for _, l := range [][]struct {
		Key     string `json:"key"`
		Retries int64  `json:"retries"`
	}{v.Namespaces, v.Names, v.Upstreams} {
		parts = append(parts, "|")
		for _, c := range l {
			parts = append(parts, fmt.Sprintf("%s:%d", c.Key, c.Retries))
		}
	}
	return strings.Join(parts, " ")
}

// TestRetries: retries counts the pairs the writer marked (the same socket and id), not the
// same query from another socket or with another id, by client with its namespace and pod, by
// namespace, name and upstream of the first query; and says whether the first was answered
// before the client asked again. The numbers are the views'.
func TestRetries(t *testing.T) {
	t.Parallel()
	db := clusterFile(t)
	var v retriesJSON
	if err := json.Unmarshal([]byte(mustRun(t, "retries", "--json", "--db", db)), &v); err != nil {
		t.Fatal(err)
	}
	// The views: each retransmission, with its client, namespace and pod, and the first's.
	want := strs(t, db, `SELECT r.client_ip, coalesce(r.namespace, '-'), coalesce(r.pod, '-'), r.qname, coalesce(f.upstream, '-'),
			f.duration_us > (r.ts - f.ts) * 1000
		FROM queries_readable r JOIN queries_readable f ON f.id = r.retry_of ORDER BY r.client_ip, r.qname`)
	var clients, names []string
	after := 0
	for _, w := range want {
		clients = append(clients, w[0]+" "+w[1]+"/"+w[2])
		names = append(names, w[3])
		if w[5] == "1" {
			after++
		}
	}
	if got := strings.Join(clients, ",") + " " + strings.Join(names, ","); got != "127.0.0.2 team-a/client-a,127.0.0.2 team-a/client-a,127.0.0.3 team-b/client-b,127.0.0.4 -/- slow.example.com.,www.example.org.,nx.example.net.,notexample.org." {
		t.Fatalf("the views say the retransmissions are %s", got)
	}
	upstream := want[0][4]
	if wantSum := "127.0.0.2 team-a/client-a:2 127.0.0.3 team-b/client-b:1 127.0.0.4 -/-:1 | team-a:2 team-b:1 | notexample.org.:1 nx.example.net.:1 slow.example.com.:1 www.example.org.:1 | " + upstream + ":1"; v.summary() != wantSum {
		t.Errorf("retries:\n got %s\nwant %s", v.summary(), wantSum)
	}
	if v.Retransmissions != 4 || v.Queries != rowCount(t, db) || v.After != int64(after) || after != 1 || v.Before != 3 || v.Unlogged != 0 {
		t.Errorf("retries: %d of %d queries, first answered after %d, before %d, no row %d; want 4 of %d, 1 (the views: %d), 3, 0",
			v.Retransmissions, v.Queries, v.After, v.Before, v.Unlogged, rowCount(t, db), after)
	}
	// One namespace: its clients' retransmissions, of its queries.
	if err := json.Unmarshal([]byte(mustRun(t, "retries", "--json", "--db", db, "--namespace", "team-b")), &v); err != nil {
		t.Fatal(err)
	}
	if wantQ := testutil.CountRows(t, db, `WHERE namespace = 'team-b'`); v.Retransmissions != 1 || v.Queries != wantQ || v.summary() != "127.0.0.3 team-b/client-b:1 | team-b:1 | nx.example.net.:1 |" {
		t.Errorf("retries --namespace team-b: %s, %d of %d queries; want 1 of %d", v.summary(), v.Retransmissions, v.Queries, wantQ)
	}
	// The retries table is read first, each pair's rows joined by id: the window's other rows
	// are never read (SQLite's own choice was to scan them, seconds for a month of rows).
	d, err := openDatabase(context.Background(), db, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	plan := strings.Split(testutil.QueryPlan(t, testutil.OpenRO(t, db), d.retriesQuery(d.retriesCond("team-b")), 0, math.MaxInt64, 0, math.MaxInt64, "team-b"), ";")
	if len(plan) < 3 || !strings.HasPrefix(plan[0], "SEARCH r USING INTEGER PRIMARY KEY") || !strings.HasPrefix(plan[1], "SEARCH l USING INTEGER PRIMARY KEY (rowid=?)") {
		t.Errorf("retries' query plan:\n%s", strings.Join(plan, "\n"))
	}
	out := mustRun(t, "retries", "--db", db)
	for _, s := range []string{"CLIENT (NAMESPACE/POD)       RETRIES  SHARE\n127.0.0.2 (team-a/client-a)        2  50.0%\n127.0.0.3 (team-b/client-b)        1  25.0%\n127.0.0.4                          1  25.0%\n",
		"\nUPSTREAM", "retransmissions: 4 of 11 queries (36.4%); the first query answered after the retransmission arrived: 1, before: 3, no row of it: 0\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("retries table lacks %q:\n%s", s, out)
		}
	}
}

// TestClusterNamespaces: new and searchpath take a row's namespace from its pod column (the
// kubernetes plugin's metadata, schema 3), as the views show it; stats counts the cache hits
// (here from the rollups: the server stopped), retransmissions, namespaces and pods.
func TestClusterNamespaces(t *testing.T) {
	t.Parallel()
	db := clusterFile(t)
	var st struct {
		Rows       int64    `json:"rows"`
		Hits       *int64   `json:"cache_hits"`
		Cached     *int64   `json:"cache_replies"`
		HitRatio   *float64 `json:"cache_hit_ratio"`
		Retries    *int64   `json:"retransmissions"`
		Namespaces *int64   `json:"namespaces"`
		Pods       *int64   `json:"pods"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "stats", "--json", "--db", db)), &st); err != nil {
		t.Fatal(err)
	}
	hits, retries := testutil.CountRows(t, db, `WHERE cache = 'hit'`), testutil.CountRows(t, db, `WHERE retry_of IS NOT NULL`)
	cached := testutil.CountRows(t, db, `WHERE cache IS NOT NULL`)
	if st.Hits == nil || *st.Hits != hits || hits == 0 || *st.Cached != cached || *st.HitRatio != float64(hits)/float64(cached) ||
		st.Retries == nil || *st.Retries != retries ||
		*st.Namespaces != 2 || *st.Pods != 2 {
		t.Errorf("stats: %+v; want %d hits, %d retransmissions, 2 namespaces, 2 pods", st, hits, retries)
	}
	if out := mustRun(t, "stats", "--db", db); !strings.Contains(out, fmt.Sprintf("\ncache hits          %d (", hits)) || !strings.Contains(out, "\nkubernetes          2 namespaces, 2 pods") {
		t.Errorf("stats:\n%s", out)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		want := testutil.CountRows(t, db, `WHERE namespace = ?`, ns)
		if got := runNewJSON(t, "--db", db, "--namespace", ns); got.WindowQueries != want || want == 0 {
			t.Errorf("new --namespace %s: %d queries, want %d (and some)", ns, got.WindowQueries, want)
		}
		var sp struct {
			Rows  int64 `json:"rows"`
			Names []struct {
				Namespace *string `json:"namespace"`
			} `json:"names"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, "searchpath", "--json", "--db", db, "--namespace", ns)), &sp); err != nil {
			t.Fatal(err)
		}
		if want := testutil.CountRows(t, db, `WHERE namespace = ? AND qtype IN (1, 28)`, ns); sp.Rows != want || len(sp.Names) == 0 || sp.Names[0].Namespace == nil || *sp.Names[0].Namespace != ns {
			t.Errorf("searchpath --namespace %s: %d rows, names %+v; want %d rows of the namespace", ns, sp.Rows, sp.Names, want)
		}
	}
}
