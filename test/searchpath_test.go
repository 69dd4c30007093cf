package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/fakek8s"
	"github.com/querylog/querylog/internal/testutil"
)

// podNet is a bridge in the root network namespace with an address of the test's own, and
// network namespaces ("pods") on it, each with an address and its own resolv.conf (ip netns
// exec mounts /etc/netns/NAME/* over /etc). All is removed when the test ends, failed or not.
type podNet struct {
	t       *testing.T
	id      string // unique to this run: in every name the test makes
	bridge  string
	prefix  netip.Prefix
	gateway string // the bridge's address: where the test's CoreDNS listens
	ipv6    bool   // pods get an IPv6 address too, so that getaddrinfo asks AAAA
	pods    int
}

// netPod is one network namespace on a podNet.
type netPod struct {
	name, ip string
}

// newPodNet makes the bridge, or skips the test when it cannot: not root, no `ip netns`, no
// getent.
func newPodNet(t *testing.T) *podNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes network namespaces, a bridge and /etc/netns files")
	}
	for _, tool := range []string{"ip", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("`ip netns` does not work here: %v: %s", err, out)
	}
	n := &podNet{t: t, id: fmt.Sprintf("%06x", rand.Uint32()&0xffffff)}
	n.bridge = "qlsp" + n.id + "br"
	n.prefix = n.freePrefix()
	n.gateway = n.prefix.Addr().Next().String()
	_, err := os.Stat("/proc/sys/net/ipv6")
	n.ipv6 = err == nil
	n.ip("link", "add", n.bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.bridge).Run() })
	n.ip("addr", "add", n.gateway+"/24", "dev", n.bridge)
	n.ip("link", "set", n.bridge, "up")
	return n
}

// freePrefix picks a /24 of 198.18.0.0/15 (set aside for benchmarks, RFC 2544) that no address
// or route of this machine overlaps.
func (n *podNet) freePrefix() netip.Prefix {
	n.t.Helper()
	var used []netip.Prefix
	for _, args := range [][]string{{"-o", "-4", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			n.t.Fatalf("ip %s: %v", strings.Join(args, " "), err)
		}
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p)
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	for range 50 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(rand.IntN(2)), byte(rand.IntN(256)), 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			return p
		}
	}
	n.t.Skip("no free /24 in 198.18.0.0/15 on this machine")
	return netip.Prefix{}
}

// ip runs ip with args and fails the test if it fails.
func (n *podNet) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pod makes a network namespace on the bridge, with the next address and a resolv.conf of the
// given lines (search and options) naming the gateway, and an nsswitch.conf that asks DNS only.
func (n *podNet) pod(resolv ...string) *netPod {
	n.t.Helper()
	n.pods++
	p := &netPod{name: fmt.Sprintf("qlsp%s%c", n.id, 'a'+n.pods-1)}
	addr := n.prefix.Addr().As4()
	addr[3] = byte(10 + n.pods)
	p.ip = netip.AddrFrom4(addr).String()
	etc := filepath.Join("/etc/netns", p.name)
	n.t.Cleanup(func() {
		exec.Command("ip", "netns", "del", p.name).Run() // takes its end of the veth pair along
		exec.Command("ip", "link", "del", p.name+"h").Run()
		os.RemoveAll(etc)
	})
	n.ip("netns", "add", p.name)
	n.ip("link", "add", p.name+"h", "type", "veth", "peer", "name", "eth0", "netns", p.name)
	n.ip("link", "set", p.name+"h", "master", n.bridge, "up")
	n.ip("-n", p.name, "addr", "add", p.ip+"/24", "dev", "eth0")
	if n.ipv6 {
		n.ip("-n", p.name, "addr", "add", fmt.Sprintf("fd51:7a3f:%x::%d/64", addr[2], n.pods), "dev", "eth0", "nodad")
	}
	n.ip("-n", p.name, "link", "set", "eth0", "up")
	n.ip("-n", p.name, "link", "set", "lo", "up")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		n.t.Fatal(err)
	}
	conf := strings.Join(append(resolv, "nameserver "+n.gateway), "\n") + "\n"
	for file, text := range map[string]string{"resolv.conf": conf, "nsswitch.conf": "hosts: dns\n"} {
		if err := os.WriteFile(filepath.Join(etc, file), []byte(text), 0o644); err != nil {
			n.t.Fatal(err)
		}
	}
	return p
}

// getent runs `getent ahosts name` in the pod, as a program calls getaddrinfo, and reports
// whether the name resolved (exit 0; 2 is "not found").
func (p *netPod) getent(t *testing.T, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", p.name, "getent", "ahosts", name).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 2 && ctx.Err() == nil:
		return false
	}
	t.Fatalf("getent ahosts %s in %s: %v: %s", name, p.name, err, out)
	return false
}

var (
	querylogOnce sync.Once
	querylogBin  string
	querylogErr  error
)

// querylogCommand builds ./cmd/querylog once, beside the coredns TestMain built.
func querylogCommand(t *testing.T) string {
	t.Helper()
	querylogOnce.Do(func() {
		querylogBin = filepath.Join(filepath.Dir(coredns), "querylog")
		cmd := exec.Command("go", "build", "-o", querylogBin, "./cmd/querylog")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			querylogErr = fmt.Errorf("building ./cmd/querylog: %v: %s", err, out)
		}
	})
	if querylogErr != nil {
		t.Fatal(querylogErr)
	}
	return querylogBin
}

// querylogRun runs the built querylog command and returns its stdout; it fails the test unless
// it exits 0.
func querylogRun(t *testing.T, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(querylogCommand(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("querylog %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// spJSON is querylog searchpath --json.
type spJSON struct {
	Rows  int64 `json:"rows"`
	Names []struct {
		Name      string   `json:"name"`
		Namespace *string  `json:"namespace"`
		Client    *string  `json:"client"`
		Lookups   int64    `json:"lookups"`
		Queries   int64    `json:"queries"`
		NXDomain  int64    `json:"nxdomain"`
		Ndots     [5]int64 `json:"queries_with_ndots"`
	} `json:"names"`
	Lists []struct {
		Namespace *string  `json:"namespace"`
		Suffixes  []string `json:"suffixes"`
		Learned   bool     `json:"learned"`
	} `json:"search_lists"`
}

// spCase is a name looked up in a pod: what glibc's res_nsearch tries (in order), and what the
// same lookup sends with ndots 1 to 5, A and AAAA for each name tried (a name not tried counts
// as not answering). A name with at least ndots dots is tried as is first, then with each
// suffix; one with fewer dots with each suffix, then as is; the first answer ends the lookup.
type spCase struct {
	pod     *netPod
	ns      string
	name    string
	lookups int
	found   bool
	nx      int      // expansions (names with a suffix) that got NXDOMAIN, per lookup
	tried   []string // the names asked, in order
	ndots   [5]int64 // per lookup
}

// TestSearchpathRealResolvers: two "pods", each a network namespace with its own address and
// resolv.conf, resolve names with glibc (getent ahosts, that is getaddrinfo) against the custom
// CoreDNS, which runs the kubernetes plugin on the fake API (pods verified, metadata) and logs
// with querylog; pod A has the cluster's search list and ndots:5, pod B two suffixes and ndots:2.
// The rows hold what the resolvers really sent, and querylog searchpath folds them back into
// the names asked: lookups, queries, NXDOMAINs of expansions and the counts with ndots 1 to 5
// (worked out by hand below, from glibc's res_nsearch) must match, with the search lists learned
// from the log and given with --search.
func TestSearchpathRealResolvers(t *testing.T) {
	net := newPodNet(t)
	searchA := []string{"team-a.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	searchB := []string{"team-b.svc.cluster.local", "svc.cluster.local"}
	// glibc sends a query again after timeout seconds (5 by default): on a machine busy enough
	// to stall CoreDNS that long, the rows would hold more than the lookups sent once. 30 is
	// glibc's longest; one attempt, so that a stall past it fails as a failed lookup.
	podA := net.pod("search "+strings.Join(searchA, " "), "options ndots:5 timeout:30 attempts:1")
	podB := net.pod("search "+strings.Join(searchB, " "), "options ndots:2 timeout:30 attempts:1")

	api := fakek8s.Start(t, fakek8s.Namespace("team-a"), fakek8s.Namespace("team-b"),
		service("team-a", "web", "10.96.0.10"), endpointSlice("team-a", "web", "10.244.1.5"),
		service("team-b", "db", "10.96.0.20"), endpointSlice("team-b", "db", "10.244.2.7"),
		fakek8s.Pod("team-a", "client-a", podA.ip), fakek8s.Pod("team-b", "client-b", podB.ip))
	up := testutil.StartUpstream(t)
	s := newServer(t)
	s.port, s.dns = 53, net.gateway+":53" // resolv.conf has no port
	ports := testutil.Ports(t, 2)
	ql := fmt.Sprintf("querylog %s {\n        flush_interval 100ms\n    }", s.db)
	corefile := stockCorefile(s, ports[0], ports[1], "endpoint "+api.URL, "verified", up.Target, "metadata", ql)
	s.write(strings.Replace(corefile, "bind 127.0.0.1\n", "bind "+net.gateway+"\n", 1))
	s.start()
	// Rows carry a pod's namespace once the kubernetes plugin knows the pod (it waits for the
	// API at start, but only so long): in verified mode its pod name answers then. An NXDOMAIN
	// is cached for 30 s, so this waits that long at worst.
	for _, p := range []struct{ ns, ip string }{{"team-a", podA.ip}, {"team-b", podB.ip}} {
		name := strings.ReplaceAll(p.ip, ".", "-") + "." + p.ns + ".pod.cluster.local."
		testutil.WaitFor(t, 5*time.Second, "the kubernetes plugin to know "+name, func() bool {
			return ask(t, s.dns, "", name, dns.TypeA).Rcode == dns.RcodeSuccess
		})
	}

	cases := []spCase{
		// pod A, ndots:5: 0 dots, answered by the first suffix
		{podA, "team-a", "web", 2, true, 0, []string{"web.team-a.svc.cluster.local."}, [5]int64{2, 2, 2, 2, 2}},
		// 1 dot: the first suffix NXDOMAIN, the second answers; ndots 1 tries it as is first
		{podA, "team-a", "db.team-b", 1, true, 1, []string{"db.team-b.team-a.svc.cluster.local.", "db.team-b.svc.cluster.local."}, [5]int64{6, 4, 4, 4, 4}},
		// 2 dots, outside the cluster: three NXDOMAIN, then as is
		{podA, "team-a", "www.example.org", 1, true, 3, []string{"www.example.org.team-a.svc.cluster.local.", "www.example.org.svc.cluster.local.",
			"www.example.org.cluster.local.", "www.example.org."}, [5]int64{2, 2, 8, 8, 8}},
		// nowhere: every name NXDOMAIN
		{podA, "team-a", "nothing.example.net", 1, false, 3, []string{"nothing.example.net.team-a.svc.cluster.local.", "nothing.example.net.svc.cluster.local.",
			"nothing.example.net.cluster.local.", "nothing.example.net."}, [5]int64{8, 8, 8, 8, 8}},
		// pod B, ndots:2: 2 dots, as is first, answered
		{podB, "team-b", "www.example.org", 1, true, 0, []string{"www.example.org."}, [5]int64{2, 2, 6, 6, 6}},
		// 1 dot: the search list first
		{podB, "team-b", "web.team-a", 1, true, 1, []string{"web.team-a.team-b.svc.cluster.local.", "web.team-a.svc.cluster.local."}, [5]int64{6, 4, 4, 4, 4}},
		{podB, "team-b", "db", 1, true, 0, []string{"db.team-b.svc.cluster.local."}, [5]int64{2, 2, 2, 2, 2}},
		// as is first, then both suffixes, all NXDOMAIN
		{podB, "team-b", "nothing.example.net", 1, false, 2, []string{"nothing.example.net.", "nothing.example.net.team-b.svc.cluster.local.",
			"nothing.example.net.svc.cluster.local."}, [5]int64{6, 6, 6, 6, 6}},
		// 1 dot, nowhere: both suffixes, then as is
		{podB, "team-b", "missing.nope", 1, false, 2, []string{"missing.nope.team-b.svc.cluster.local.", "missing.nope.svc.cluster.local.", "missing.nope."}, [5]int64{6, 6, 6, 6, 6}},
	}
	for _, c := range cases {
		for range c.lookups {
			if got := c.pod.getent(t, c.name); got != c.found {
				t.Fatalf("getent ahosts %s in %s: resolved %v, want %v", c.name, c.ns, got, c.found)
			}
		}
	}

	// A and AAAA (when the pod has an IPv6 address, which getaddrinfo's AI_ADDRCONFIG looks for)
	// of every name tried, as many times as looked up.
	types := []string{"A"}
	if net.ipv6 {
		types = append(types, "AAAA")
	}
	want := map[string]int64{} // client qname qtype -> rows
	var total int64
	for _, c := range cases {
		for _, name := range c.tried {
			for _, typ := range types {
				want[c.pod.ip+" "+name+" "+typ] += int64(c.lookups)
				total += int64(c.lookups)
			}
		}
	}
	podRows := "WHERE client_ip IN (?, ?) AND qtype IN (1, 28)" // A, AAAA
	// Waited for, then compared one by one: on a timeout the comparison says what is missing.
	if !testutil.Poll(testutil.Patience, 20*time.Millisecond, func() bool {
		return testutil.CountRows(t, s.db, podRows, podA.ip, podB.ip) >= total
	}) {
		t.Errorf("timed out after %s waiting for %d rows of the pods' queries", testutil.Patience, total)
	}
	// What CoreDNS received, from the rows: exactly what res_nsearch sends.
	got := map[string]int64{}
	rows, err := testutil.OpenRO(t, s.db).Query("SELECT client_ip, qname, iif(qtype = 1, 'A', 'AAAA'), count(*) FROM queries "+podRows+" GROUP BY 1, 2, 3", podA.ip, podB.ip)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var client, qname, qtype string
		var n int64
		if err := rows.Scan(&client, &qname, &qtype, &n); err != nil {
			t.Fatal(err)
		}
		got[client+" "+qname+" "+qtype] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok && !yield(k) {
				return
			}
		}
	}) {
		if got[k] != want[k] {
			t.Errorf("rows of %s: %d, want %d", k, got[k], want[k])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	check := func(what string, out spJSON, only string) {
		t.Helper()
		seen := map[string]bool{}
		for _, l := range out.Names {
			if l.Namespace == nil {
				if *l.Client != net.gateway || !(strings.HasPrefix(l.Name, "probe") || strings.HasSuffix(l.Name, ".pod.cluster.local")) {
					t.Errorf("%s: %+v: only the test's own probes come from no pod", what, l)
				}
				continue
			}
			key := *l.Namespace + " " + l.Name
			seen[key] = true
			i := slices.IndexFunc(cases, func(c spCase) bool { return c.ns+" "+c.name == key })
			if i < 0 {
				t.Errorf("%s: a name nobody looked up: %+v", what, l)
				continue
			}
			c := cases[i]
			lookups, nx := int64(c.lookups), int64(c.nx*c.lookups*len(types))
			wantQueries := lookups * int64(len(c.tried)*len(types))
			var ndots [5]int64
			for i, n := range c.ndots {
				ndots[i] = n * lookups
			}
			if l.Lookups != lookups || l.Queries != wantQueries || l.NXDomain != nx || l.Ndots != ndots {
				t.Errorf("%s: %s in %s: %d lookups, %d queries, %d NXDOMAIN, ndots 1-5 %v; want %d, %d, %d, %v",
					what, c.name, c.ns, l.Lookups, l.Queries, l.NXDomain, l.Ndots, lookups, wantQueries, nx, ndots)
			}
		}
		for _, c := range cases {
			if (only == "" || only == c.ns) && !seen[c.ns+" "+c.name] {
				t.Errorf("%s: no line for %s in %s", what, c.name, c.ns)
			}
		}
	}
	fqdn := func(list []string) []string {
		var out []string
		for _, s := range list {
			out = append(out, s+".")
		}
		return out
	}

	db := s.db
	var learned spJSON
	if err := json.Unmarshal([]byte(querylogRun(t, "searchpath", "--db", db, "--json", "-n", "100")), &learned); err != nil {
		t.Fatal(err)
	}
	check("learned", learned, "")
	lists := map[string][]string{}
	for _, l := range learned.Lists {
		if l.Namespace != nil {
			lists[*l.Namespace] = l.Suffixes
		}
	}
	if !slices.Equal(lists["team-a"], fqdn(searchA)) || !slices.Equal(lists["team-b"], fqdn(searchB)) {
		t.Errorf("search lists learned: %v; want team-a %v, team-b %v", lists, searchA, searchB)
	}

	var given spJSON
	out := querylogRun(t, "searchpath", "--db", db, "--json", "--namespace", "team-b", "--search", strings.Join(searchB, ","))
	if err := json.Unmarshal([]byte(out), &given); err != nil {
		t.Fatal(err)
	}
	check("--namespace team-b --search", given, "team-b")
	for _, l := range given.Names {
		if l.Namespace == nil || *l.Namespace != "team-b" {
			t.Errorf("--namespace team-b: a line of another: %+v", l)
		}
	}
	t.Logf("querylog searchpath --db %s:\n%s", db, querylogRun(t, "searchpath", "--db", db))
	t.Logf("querylog searchpath --namespace team-b:\n%s", querylogRun(t, "searchpath", "--db", db, "--namespace", "team-b"))

	// Over more than an hour, from the namespaces' names in the rollups (and the rows after
	// them), by name: the same lines and lists for the pods' lookups.
	var long spJSON
	if err := json.Unmarshal([]byte(querylogRun(t, "searchpath", "--db", db, "--json", "-n", "100", "--since", "2h")), &long); err != nil {
		t.Fatal(err)
	}
	check("from the rollups (--since 2h)", long, "")
	for _, l := range long.Lists {
		if l.Namespace != nil && !slices.Equal(l.Suffixes, lists[*l.Namespace]) {
			t.Errorf("--since 2h: search list of %s %v, want %v (learned from the rows)", *l.Namespace, l.Suffixes, lists[*l.Namespace])
		}
	}
	t.Logf("querylog searchpath --since 2h --namespace team-b:\n%s", querylogRun(t, "searchpath", "--db", db, "--since", "2h", "--namespace", "team-b"))

	// The other cluster answers on the same rows: queries per namespace and per pod, as the
	// views count them, with the cache's share (README shows this output).
	var top struct {
		Rows []struct {
			Key     string `json:"key"`
			Queries int64  `json:"queries"`
		} `json:"rows"`
	}
	for _, kind := range []string{"namespaces", "pods"} {
		if err := json.Unmarshal([]byte(querylogRun(t, "top", kind, "--db", db, "--since", "1h", "--json")), &top); err != nil {
			t.Fatal(err)
		}
		col := map[string]string{"namespaces": "namespace", "pods": "namespace || '/' || pod"}[kind]
		for _, r := range top.Rows {
			if want := testutil.CountRows(t, db, "WHERE "+col+" = ?", r.Key); r.Queries != want {
				t.Errorf("top %s: %s asked %d queries, want %d", kind, r.Key, r.Queries, want)
			}
		}
		if len(top.Rows) != 2 {
			t.Errorf("top %s: %d rows, want the 2 pods' (%+v)", kind, len(top.Rows), top.Rows)
		}
		t.Logf("querylog top %s --since 1h:\n%s", kind, querylogRun(t, "top", kind, "--db", db, "--since", "1h"))
	}
	t.Logf("querylog top domains --namespace team-a -n 5:\n%s", querylogRun(t, "top", "domains", "--db", db, "--since", "1h", "--namespace", "team-a", "-n", "5"))
	t.Logf("querylog new --since 1h --namespace team-b:\n%s", querylogRun(t, "new", "--db", db, "--since", "1h", "--namespace", "team-b"))
	t.Logf("querylog stats:\n%s", querylogRun(t, "stats", "--db", db))
	s.checkLog("[ERROR]", "[FATAL]")
}
