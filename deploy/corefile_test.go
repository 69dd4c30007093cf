package deploy

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/querylog/querylog/internal/fakek8s"
	"github.com/querylog/querylog/internal/testutil"
)

// The manifests' Corefile, as both overlays render it (TestManifests checks that they do).
const corefilePatch = "kubernetes/components/querylog/corefile.yaml"

// manifestCorefile decodes the component's ConfigMap strictly and returns its Corefile.
func manifestCorefile(t *testing.T) string {
	t.Helper()
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(readFile(t, corefilePatch)), &cm); err != nil {
		t.Fatalf("%s: %v", corefilePatch, err)
	}
	if cm.Data["Corefile"] == "" {
		t.Fatalf("%s: no Corefile", corefilePatch)
	}
	return cm.Data["Corefile"]
}

// corefileSetting returns the argument of the first line of corefile starting with name, or def.
func corefileSetting(corefile, name, def string) string {
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s+(\S+)`).FindStringSubmatch(corefile)
	if m == nil {
		return def
	}
	return m[1]
}

// cluster is what a test's CoreDNS talks to, all on loopback: the fake API server with one
// service and the client pod at 127.0.0.1 (the address the test queries from), an upstream for
// forward, and a ClickHouse that only counts connections (the shipper's attempts).
type cluster struct {
	api        *fakek8s.Server
	upstream   string // host:port
	clickhouse *testutil.FakeClickHouse
}

const (
	serviceIP  = "192.0.2.80" // the service's ClusterIP: only an answer, never a destination
	upstreamIP = "192.0.2.53" // what the upstream answers for A queries
	clientPod  = "client"
	clientNS   = "default"
)

// startCluster starts the fake API, the ClickHouse and an upstream listening on upstreamAddr
// (UDP and TCP).
func startCluster(t *testing.T, upstreamAddr string) *cluster {
	t.Helper()
	c := &cluster{upstream: upstreamAddr}
	c.api = fakek8s.Start(t,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clientNS}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: clientNS},
			Spec: corev1.ServiceSpec{ClusterIP: serviceIP, ClusterIPs: []string{serviceIP}, Type: corev1.ServiceTypeClusterIP,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: clientNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: clientPod, Namespace: clientNS},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}},
	)
	c.clickhouse = testutil.StartFakeClickHouse(t, func(int) []byte { return nil })
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: upstreamAddr, Net: network, Handler: dns.HandlerFunc(upstreamAnswer)}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			t.Fatalf("upstream %s %s: %v", network, upstreamAddr, err)
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return c
}

// upstreamAnswer answers A queries with upstreamIP and everything else (the loop plugin's
// probe among them) with NXDOMAIN.
func upstreamAnswer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA {
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + upstreamIP)
		m.Answer = append(m.Answer, rr)
	} else {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

// local is where a test's copy of the Corefile serves and what it talks to.
type local struct {
	dns, health, ready, metrics int    // loopback ports for :53, health, ready, prometheus
	forward                     string // replaces forward's /etc/resolv.conf; "" keeps it
	db                          string // replaces the querylog PATH; "" keeps it
}

func newLocal(t *testing.T) local {
	p := testutil.Ports(t, 4)
	return local{dns: p[0], health: p[1], ready: p[2], metrics: p[3]}
}

// localize rewrites the manifests' Corefile to run here: loopback ports instead of :53, :8080,
// :8181 and :9153, the fake API instead of the in-cluster config, the test's upstream and
// database if l says so, and the test's ClickHouse. Each change must find its line: a
// Corefile that no longer has it fails the test rather than run unchanged.
func localize(t *testing.T, corefile string, l local, c *cluster) string {
	t.Helper()
	replace := func(pattern, repl string) {
		re := regexp.MustCompile(pattern)
		if n := len(re.FindAllStringIndex(corefile, -1)); n != 1 {
			t.Fatalf("the manifests' Corefile has %d matches of %q, want 1:\n%s", n, pattern, corefile)
		}
		corefile = re.ReplaceAllString(corefile, repl)
	}
	replace(`(?m)^\.:53 \{$`, fmt.Sprintf(".:%d {\n    bind 127.0.0.1", l.dns))
	replace(`(?m)^(\s*)health \{$`, fmt.Sprintf("${1}health 127.0.0.1:%d {", l.health))
	replace(`(?m)^(\s*)ready$`, fmt.Sprintf("${1}ready 127.0.0.1:%d", l.ready))
	replace(`(?m)^(\s*)prometheus :9153$`, fmt.Sprintf("${1}prometheus 127.0.0.1:%d", l.metrics))
	replace(`(?m)^(\s*)(kubernetes cluster\.local .*\{)$`, "${1}${2}\n${1}    endpoint "+c.api.URL)
	replace(`clickhouse://([^@/]+@)?[^/]+/`, "clickhouse://${1}"+c.clickhouse.Addr+"/")
	if l.forward != "" {
		replace(`forward \. /etc/resolv\.conf`, "forward . "+l.forward)
	}
	if l.db != "" {
		replace(`querylog /var/lib/querylog/querylog\.db`, "querylog "+l.db)
	}
	return corefile
}

// coreDNSEnv is what the pod's env gives CoreDNS: the node name and the password.
var coreDNSEnv = []string{"QUERYLOG_NODE=coredns-test-pod", "CLICKHOUSE_PASSWORD=not-a-secret"}

// serve starts cmd (a CoreDNS serving a localized Corefile), waits until it is ready, asks it
// a service name, a missing name and an outside name, waits for their rows in db (its path
// here), each with the client pod's metadata, and for the shipper to call ClickHouse; then it
// stops CoreDNS with SIGTERM and returns how long the stop took.
func serve(t *testing.T, cmd *exec.Cmd, l local, c *cluster, db string) time.Duration {
	t.Helper()
	out := testutil.NewLogBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coredns output (seconds since start):\n%s", out.Stamped())
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})

	readyURL := fmt.Sprintf("http://127.0.0.1:%d/ready", l.ready)
	testutil.WaitFor(t, 5*time.Second, "CoreDNS ready (the kubernetes plugin synced, querylog's database open)", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("coredns exited: %v", err)
		default:
		}
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			time.Sleep(50 * time.Millisecond) // each refusal is a log line of ready's
			return false
		}
		return true
	})
	// Ready answers before the DNS servers listen: the first query waits for them.
	server := fmt.Sprintf("127.0.0.1:%d", l.dns)
	testutil.WaitFor(t, time.Second, "CoreDNS to answer DNS", func() bool {
		m := new(dns.Msg)
		m.SetQuestion("ready.example.org.", dns.TypeTXT)
		_, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, server)
		return err == nil
	})

	for _, q := range []struct {
		name  string
		rcode int
		want  string
	}{
		{"web.default.svc.cluster.local.", dns.RcodeSuccess, serviceIP},
		{"nothere.default.svc.cluster.local.", dns.RcodeNameError, ""},
		{"www.example.org.", dns.RcodeSuccess, upstreamIP},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, dns.TypeA)
		r, _, err := new(dns.Client).Exchange(m, server)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if r.Rcode != q.rcode {
			t.Errorf("%s: rcode %s, want %s", q.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[q.rcode])
		}
		if q.want != "" && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != q.want) {
			t.Errorf("%s: answer %v, want %s", q.name, r.Answer, q.want)
		}
	}
	conn := testutil.OpenRO(t, db)
	count := func(where string, args ...any) (n int) {
		conn.QueryRow("SELECT count(*) FROM queries WHERE "+where, args...).Scan(&n)
		return n
	}
	testutil.WaitFor(t, 6*time.Second, "the rows of the queries, with the client pod's namespace and name", func() bool {
		return count("qname IN (?, ?, ?, ?) AND namespace = ? AND pod = ?", "ready.example.org.", "web.default.svc.cluster.local.",
			"nothere.default.svc.cluster.local.", "www.example.org.", clientNS, clientPod) >= 4
	})
	testutil.WaitFor(t, 3*time.Second, "the shipper's call to ClickHouse", func() bool { return c.clickhouse.Conns() > 0 })

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	testutil.WaitFor(t, 20*time.Second, "CoreDNS to exit after SIGTERM", func() bool {
		select {
		case err = <-exited:
			exited <- err
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Errorf("coredns exited with %v after SIGTERM", err)
	}
	return time.Since(start)
}

// freeLoopback53 finds a loopback address whose port 53 is free for UDP and TCP, for an
// upstream a resolv.conf can name (it has no port).
func freeLoopback53(t *testing.T) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		addr := fmt.Sprintf("127.%d.%d.%d:53", 1+time.Now().UnixNano()%250, 1+(time.Now().UnixNano()/7)%250, 2+i)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no loopback address with port 53 free")
	return ""
}

// splitYAML splits a stream of YAML documents.
func splitYAML(s string) []string {
	var docs []string
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(s, -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
