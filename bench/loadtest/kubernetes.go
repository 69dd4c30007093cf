package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/querylog/querylog/internal/fakek8s"
)

// The -corefile choices: the harness's own template zone, or the kube-system Corefile of the
// manifests (deploy/kubernetes) against a fake API server and a loopback upstream.
const (
	corefileTemplate   = "template"
	corefileKubernetes = "kubernetes"
)

// benchNamespace holds the pods the fake API declares at dnsperf's client addresses (127.0.0.1,
// or those of -client-addrs; not hostNetwork), so that every row names the client's namespace
// and pod as in a cluster; the run fails otherwise (db_rows_with_pod).
const benchNamespace = "bench"

// cluster is what the kubernetes Corefile needs around CoreDNS: a fake Kubernetes API and the
// upstream that forward sends every name outside cluster.local to.
type cluster struct {
	api      *fakek8s.Server
	upstream string // IP:PORT
	udp, tcp *dns.Server
}

// startCluster starts the fake API, with one pod at each of dnsperf's client addresses, and an
// upstream on 127.0.0.1 that answers the query mixes as the template Corefile does, with
// records A records for each A query (-upstream-records).
func startCluster(c *config) (*cluster, error) {
	objs := []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}}
	addrs := []string{"127.0.0.1"}
	if c.clientAddrs > 1 {
		addrs = addrs[:0]
		for i := range c.clientAddrs {
			addrs = append(addrs, clientAddr(i))
		}
	}
	for i, ip := range addrs {
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("dnsperf-%d", i), Namespace: benchNamespace},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		})
	}
	api, err := fakek8s.New(objs...)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		api.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		api.Close()
		return nil, err
	}
	h := upstreamHandler(c.upstreamRR)
	k := &cluster{api: api, upstream: pc.LocalAddr().String(),
		udp: &dns.Server{PacketConn: pc, Handler: h}, tcp: &dns.Server{Listener: ln, Handler: h}}
	go k.udp.ActivateAndServe()
	go k.tcp.ActivateAndServe()
	return k, nil
}

func (k *cluster) close() {
	k.udp.Shutdown()
	k.tcp.Shutdown()
	k.api.Close()
}

// upstreamHandler answers like the template Corefile: NXDOMAIN under nx.bench.test. and outside
// bench.test. (the loop plugin's probe among them); under bench.test. records A records for A
// (192.0.2.1, 192.0.2.2, ...), one AAAA for AAAA, and no data for other types. Replies that do not
// fit the client's UDP size are truncated, as a real server's would be.
func upstreamHandler(records int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if len(r.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case dns.IsSubDomain(nxZone, name) || !dns.IsSubDomain(zone, name):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			for i := range records {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(192, 0, byte(2+i/254), byte(1+i%254)),
				})
			}
		case q.Qtype == dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{
				Hdr:  dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60},
				AAAA: net.ParseIP("2001:db8::1"),
			})
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	}
}

// manifestQuerylogOptions are the querylog block's lines in deploy/kubernetes's Corefile but
// its ship lines, which need a ClickHouse (TestKubernetesCorefileMatchesManifest).
const manifestQuerylogOptions = "max_size 384MiB; shutdown_timeout 5s; buffer_bytes 16MiB"

// kubernetesCorefile is the Corefile of deploy/kubernetes/components/querylog (the stock
// kube-system Corefile with metadata, pods verified and querylog) with what a loopback run must
// change: ports on 127.0.0.1, the fake API's kubeconfig, forward to the harness's upstream
// instead of /etc/resolv.conf, and no ship line unless the options give one. The none variant
// is the same Corefile without the querylog block, so that the two differ by querylog alone.
func kubernetesCorefile(k *cluster, v variant, db string, dnsPort, metricsPort, readyPort, healthPort int) string {
	return kubernetesCorefileWith(k, k.api.Kubeconfig, v, db, dnsPort, metricsPort, readyPort, healthPort)
}

func kubernetesCorefileWith(k *cluster, kubeconfig string, v variant, db string, dnsPort, metricsPort, readyPort, healthPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `.:%d {
    bind 127.0.0.1
    errors
    health 127.0.0.1:%d {
        lameduck 5s
    }
    ready 127.0.0.1:%d
    metadata
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods verified
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus 127.0.0.1:%d
`, dnsPort, healthPort, readyPort, kubeconfig, metricsPort)
	if v.Querylog {
		querylogBlock(&b, db, manifestQuerylogOptions+"; "+v.Options)
	}
	fmt.Fprintf(&b, `    forward . %s {
        max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`, k.upstream)
	return b.String()
}
