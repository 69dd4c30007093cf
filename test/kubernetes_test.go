package test

import (
	"database/sql"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/querylog/querylog/internal/fakek8s"
	"github.com/querylog/querylog/internal/testutil"
)

// stockCorefile is the kube-system Corefile of the coredns/deployment project plus one querylog
// line, changed only where a test must: loopback ports (bind, health, ready, prometheus), the
// API server given by api (`endpoint URL` or `kubeconfig FILE`), the pod mode, forward to the
// test's own upstream, and extra lines (metadata) at the top of the block.
func stockCorefile(s *server, hport, rport int, api, pods, upstream, extra, querylog string) string {
	return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    %s
    errors
    health 127.0.0.1:%d {
       lameduck 5s
    }
    ready 127.0.0.1:%d
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       %s
       pods %s
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus 127.0.0.1:%d
    forward . %s {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
    %s
}
`, s.port, extra, hport, rport, api, pods, s.mport, upstream, querylog)
}

// namespace and pod declare the objects the tests' clusters have (fakek8s).
var namespace, pod = fakek8s.Namespace, fakek8s.Pod

func service(ns, name, clusterIP string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

// endpointSlice is the slice of service name in ns with ready endpoints at ips.
func endpointSlice(ns, name string, ips ...string) *discoveryv1.EndpointSlice {
	ready, port, proto, pname := true, int32(8080), corev1.ProtocolTCP, "http"
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-abc12", Namespace: ns,
		Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

// cluster is what the fake API declares in both tests: two namespaces, a ClusterIP service, a
// headless one with endpoints, and client pods at 127.0.0.2 and 127.0.0.3.
func cluster() []runtime.Object {
	headless := service("team-a", "db", "None")
	return []runtime.Object{
		fakek8s.Namespace("default"), fakek8s.Namespace("team-a"), fakek8s.Namespace("team-b"),
		service("default", "web", "10.96.0.10"), endpointSlice("default", "web", "10.244.1.5"),
		headless, endpointSlice("team-a", "db", "10.244.2.7"),
		fakek8s.Pod("team-a", "client-a", "127.0.0.2"), fakek8s.Pod("team-b", "client-b", "127.0.0.3"),
	}
}

// ask sends one query for name and type from the client address from (127.0.0.x, "" for any).
func ask(t *testing.T, server, from, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	if from != "" {
		c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var r *dns.Msg
	var err error
	// tried again: on a busy machine one UDP exchange can time out
	if !testutil.Poll(testutil.Patience, 50*time.Millisecond, func() bool { r, _, err = c.Exchange(m, server); return err == nil }) {
		t.Fatalf("%s %s from %s: %v", name, dns.TypeToString[qtype], from, err)
	}
	return r
}

// expect checks the rcode of a reply and, if want is given, its answer data in order.
func expect(t *testing.T, r *dns.Msg, name string, rcode int, want ...string) {
	t.Helper()
	var got []string
	for _, rr := range r.Answer {
		got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	if r.Rcode != rcode || (want != nil && strings.Join(got, " ") != strings.Join(want, " ")) {
		t.Errorf("%s: got %s %v, want %s %v", name, dns.RcodeToString[r.Rcode], got, dns.RcodeToString[rcode], want)
	}
}

// TestStockKubernetesCorefile runs the custom build on the stock kube-system Corefile (pods
// insecure, API via kubeconfig) plus a bare querylog line, against the fake API and the test's
// own upstream: cluster names, reverse names, pod names and forwarded names answer as in a
// cluster, expansions of the search path get NXDOMAIN, loop finds no loop, and every reply is
// logged.
func TestStockKubernetesCorefile(t *testing.T) {
	t.Parallel()
	api := fakek8s.Start(t, cluster()...)
	up := testutil.StartUpstream(t)
	s := newServer(t)
	ports := testutil.Ports(t, 2)
	s.write(stockCorefile(s, ports[0], ports[1], "kubeconfig "+api.Kubeconfig, "insecure", up.Target, "", "querylog "+s.db))
	s.start()

	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"web.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"10.96.0.10"}},
		{"db.team-a.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"10.244.2.7"}},
		{"_http._tcp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{"0 100 80 web.default.svc.cluster.local."}},
		{"10-244-9-9.default.pod.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"10.244.9.9"}}, // insecure: any IP
		{"10.0.96.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, []string{"web.default.svc.cluster.local."}},
		{"web.default.svc.cluster.local.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"web.default.svc.cluster.local.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"nope.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"www.example.org", dns.TypeA, dns.RcodeSuccess, []string{testutil.UpstreamIP}},
		{"nothing.example.net", dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, c := range cases {
		expect(t, ask(t, s.dns, "", c.name, c.qtype), c.name, c.rcode, c.answer...)
	}
	if r := ask(t, s.dns, "", "web.default.svc.cluster.local", dns.TypeA); len(r.Answer) == 1 && r.Answer[0].Header().Ttl > 30 {
		t.Errorf("TTL %d, want at most 30 (ttl 30)", r.Answer[0].Header().Ttl)
	}
	if up.Queries() == 0 {
		t.Error("the upstream got no query: forward did not use the test's resolv.conf")
	}
	for _, c := range cases {
		name := dns.Fqdn(c.name)
		testutil.WaitFor(t, 5*time.Second, "a row for "+name, func() bool {
			return testutil.CountRows(t, s.db, "WHERE qname = ? AND rcode = ?", name, c.rcode) > 0
		})
	}
	s.checkLog("Loop (", "[ERROR]", "[FATAL]")
}

// TestKubernetesClientMetadata runs the stock Corefile with `pods verified`, the metadata
// plugin and querylog's metadata option, against the fake API: queries sent from the pod IPs
// the API declares (127.0.0.2, 127.0.0.3) are logged with that pod's namespace and name, a
// query from an address no pod has with none, a query from a node's address with the name of
// a hostNetwork pod of that node (what NodeLocal DNSCache and SNAT lead to, docs/kubernetes.md),
// and a service added while CoreDNS runs answers.
func TestKubernetesClientMetadata(t *testing.T) {
	t.Parallel()
	api := fakek8s.Start(t, cluster()...)
	up := testutil.StartUpstream(t)
	s := newServer(t)
	ports := testutil.Ports(t, 2)
	// No metadata option: the namespace and pod are logged whenever the kubernetes plugin gives them.
	ql := fmt.Sprintf("querylog %s {\n        flush_interval 100ms\n    }", s.db)
	// A node's address: every hostNetwork pod of the node has it as its pod IP, so the plugin
	// names one of them, here NodeLocal DNSCache's, for a query that came from the node.
	nodeLocal := fakek8s.Pod("kube-system", "node-local-dns-x7k2p", "127.0.0.4")
	nodeLocal.Spec.HostNetwork = true
	api.Apply(fakek8s.Namespace("kube-system"))
	api.Apply(nodeLocal)
	s.write(stockCorefile(s, ports[0], ports[1], "endpoint "+api.URL, "verified", up.Target, "metadata", ql))
	s.start()

	// The rows are compared in the order asked: each query from a client waits for its row.
	const clientRows = "WHERE client_ip LIKE '127.0.0.%' AND client_ip <> '127.0.0.1'"
	logged := int64(0)
	askLogged := func(from, name string) *dns.Msg {
		t.Helper()
		r := ask(t, s.dns, from, name, dns.TypeA)
		logged++
		testutil.WaitRows(t, s.db, logged, clientRows)
		return r
	}
	expect(t, askLogged("127.0.0.2", "web.default.svc.cluster.local"), "web from client-a", dns.RcodeSuccess, "10.96.0.10")
	expect(t, askLogged("127.0.0.2", "web.default.svc.cluster.local"), "web from client-a again", dns.RcodeSuccess, "10.96.0.10")
	expect(t, askLogged("127.0.0.3", "web.default.svc.cluster.local"), "web from client-b", dns.RcodeSuccess, "10.96.0.10")
	expect(t, askLogged("127.0.0.3", "missing.team-b.svc.cluster.local"), "missing from client-b", dns.RcodeNameError)
	expect(t, askLogged("127.0.0.9", "www.example.org"), "www from no pod", dns.RcodeSuccess, testutil.UpstreamIP)
	expect(t, askLogged("127.0.0.4", "www.example.org"), "www from the node", dns.RcodeSuccess, testutil.UpstreamIP)
	// verified: a pod name answers only for an IP a pod has
	expect(t, ask(t, s.dns, "", "127-0-0-2.team-a.pod.cluster.local", dns.TypeA), "client-a's pod name", dns.RcodeSuccess, "127.0.0.2")
	expect(t, ask(t, s.dns, "", "10-244-9-9.default.pod.cluster.local", dns.TypeA), "a pod name no pod has", dns.RcodeNameError)

	// A change while running reaches CoreDNS through the watch. Asking for the new name before
	// it arrives would get an NXDOMAIN that cache keeps for 30s, so wait without asking DNS: the
	// plugin records dns_programming_duration for an EndpointSlice (with the endpoints
	// controller's trigger-time annotation) only once it knows the slice's service, so the slice
	// is applied again until the count rises.
	api.Apply(service("team-b", "cache", "10.96.0.20"))
	var applied time.Time
	testutil.WaitFor(t, 2*time.Second, "the kubernetes plugin to see service cache.team-b", func() bool {
		if time.Since(applied) > 200*time.Millisecond {
			es := endpointSlice("team-b", "cache", "10.244.3.3")
			es.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}
			api.Apply(es)
			applied = time.Now()
		}
		m, err := s.scrape()
		return err == nil && histogramCount(m, "coredns_kubernetes_dns_programming_duration_seconds", "service_kind", "cluster_ip") > 0
	})
	expect(t, askLogged("127.0.0.3", "cache.team-b.svc.cluster.local"), "new service", dns.RcodeSuccess, "10.96.0.20")

	// Each row in the order asked: who asked, and which plugin answered, from cache or not
	// (the cache probe sits behind the stock Corefile's cache 30).
	want := []struct{ client, qname, namespace, pod, plugin, cache string }{
		{"127.0.0.2", "web.default.svc.cluster.local", "team-a", "client-a", "kubernetes", "miss"},
		{"127.0.0.2", "web.default.svc.cluster.local", "team-a", "client-a", "cache", "hit"},
		{"127.0.0.3", "web.default.svc.cluster.local", "team-b", "client-b", "cache", "hit"},
		{"127.0.0.3", "missing.team-b.svc.cluster.local", "team-b", "client-b", "kubernetes", "miss"},
		{"127.0.0.9", "www.example.org", "", "", "forward", "miss"},
		{"127.0.0.4", "www.example.org", "kube-system", "node-local-dns-x7k2p", "cache", "hit"},
		{"127.0.0.3", "cache.team-b.svc.cluster.local", "team-b", "client-b", "kubernetes", "miss"},
	}
	db := testutil.OpenRO(t, s.db)
	rows, err := db.Query(`SELECT client_ip, qname, coalesce(namespace, ''), coalesce(pod, ''), plugin, coalesce(cache, ''), metadata FROM queries
		` + clientRows + ` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var got struct{ client, qname, namespace, pod, plugin, cache string }
		var md sql.NullString
		if err := rows.Scan(&got.client, &got.qname, &got.namespace, &got.pod, &got.plugin, &got.cache, &md); err != nil {
			t.Fatal(err)
		}
		if md.Valid {
			t.Errorf("row %d: metadata %q, want none (the namespace and pod have their own columns)", i, md.String)
		}
		if w := want[min(i, len(want)-1)]; i >= len(want) || got.client != w.client || got.qname != dns.Fqdn(w.qname) ||
			got.namespace != w.namespace || got.pod != w.pod || got.plugin != w.plugin || got.cache != w.cache {
			t.Errorf("row %d: %+v, want %+v", i, got, w)
		}
	}
	if i != len(want) {
		t.Errorf("%d rows, want %d", i, len(want))
	}
	s.checkLog("Loop (", "[ERROR]", "[FATAL]")
}

// histogramCount is the sample count of the histogram name's series with the label value.
func histogramCount(m testutil.Metrics, name, label, value string) uint64 {
	for _, s := range m[name].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return s.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
