package test

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/fakek8s"
	"github.com/querylog/querylog/internal/testutil"
)

// TestRetransmissionsRealResolvers: a "pod" (a network namespace, as in
// TestSearchpathRealResolvers) with `options timeout:1 attempts:2` looks up a name whose
// upstream never answers: glibc's stub resolver waits a second and sends the same query again,
// with the same id from the same socket. The log marks each second sending as a retransmission
// of the first (retry_of), in the pod's namespace, and counts them in the namespace's rollup;
// the names that were answered at once are not marked.
func TestRetransmissionsRealResolvers(t *testing.T) {
	net0 := newPodNet(t)
	pod0 := net0.pod("search team-c.svc.cluster.local", "options ndots:1 timeout:1 attempts:2")
	api := fakek8s.Start(t, namespace("team-c"), pod("team-c", "client-c", pod0.ip))
	up := testutil.StartUpstream(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads queries, never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := silent.ReadFrom(buf); err != nil {
				return
			}
		}
	}()

	s := newServer(t)
	s.port, s.dns = 53, net0.gateway+":53" // resolv.conf has no port
	ports := testutil.Ports(t, 2)
	ql := fmt.Sprintf("querylog %s {\n        flush_interval 100ms\n    }", s.db)
	corefile := stockCorefile(s, ports[0], ports[1], "endpoint "+api.URL, "verified", up.Target, "metadata", ql)
	corefile = strings.Replace(corefile, "bind 127.0.0.1\n", "bind "+net0.gateway+"\n", 1)
	// The zone whose upstream is silent, in a block of its own on the same port.
	corefile += fmt.Sprintf(`silent.example:53 {
    bind %s
    metadata
    kubernetes cluster.local {
       endpoint %s
       pods verified
    }
    %s
    forward . %s
}
`, net0.gateway, api.URL, ql, silent.LocalAddr())
	s.write(corefile)
	s.start()
	name := strings.ReplaceAll(pod0.ip, ".", "-") + ".team-c.pod.cluster.local."
	testutil.WaitFor(t, 5*time.Second, "the kubernetes plugin to know "+name, func() bool {
		return ask(t, s.dns, "", name, dns.TypeA).Rcode == dns.RcodeSuccess
	})

	if !pod0.getent(t, "www.example.org") {
		t.Fatal("www.example.org did not resolve")
	}
	if pod0.getent(t, "www.silent.example") {
		t.Fatal("www.silent.example resolved, but its upstream never answers")
	}

	// glibc sent each of its questions (A, and AAAA with IPv6) twice; CoreDNS answers each
	// sending (SERVFAIL once forward gives up), and the writer marks the second.
	types := int64(1)
	if net0.ipv6 {
		types = 2
	}
	silentRows := "WHERE qname = 'www.silent.example.' AND client_ip = ?"
	testutil.WaitFor(t, 3*testutil.Patience, "the silent name's rows", func() bool {
		return testutil.CountRows(t, s.db, silentRows, pod0.ip) >= 2*types
	})
	if n := testutil.CountRows(t, s.db, silentRows+" AND retry_of IS NOT NULL", pod0.ip); n != types {
		t.Errorf("%d retransmissions of www.silent.example., want %d (one per question)", n, types)
	}
	pairs := testutil.CountRows(t, s.db, `q JOIN queries f ON f.id = q.retry_of
		WHERE q.qname = f.qname AND q.qtype = f.qtype AND q.client_ip = f.client_ip AND q.ts - f.ts BETWEEN 900 AND 5500
		AND q.namespace = 'team-c' AND q.pod = 'client-c'`)
	if pairs != types {
		t.Errorf("%d pairs of the same question, the second 0.9 to 5.5 s after the first, from client-c, want %d", pairs, types)
	}
	if n := testutil.CountRows(t, s.db, "WHERE retry_of IS NOT NULL AND qname <> 'www.silent.example.'"); n != 0 {
		t.Errorf("%d rows of answered names marked as retransmissions, want none", n)
	}
	var report struct {
		Retransmissions int64 `json:"retransmissions"`
	}
	if err := json.Unmarshal([]byte(querylogRun(t, "retries", "--db", s.db, "--since", "1h", "--json")), &report); err != nil {
		t.Fatal(err)
	}
	if report.Retransmissions != types {
		t.Errorf("querylog retries: %d retransmissions, want %d", report.Retransmissions, types)
	}
	t.Logf("querylog retries --since 1h (README shows this output):\n%s", querylogRun(t, "retries", "--db", s.db, "--since", "1h"))
	t.Logf("querylog top upstreams --since 1h (README shows this output):\n%s", querylogRun(t, "top", "upstreams", "--db", s.db, "--since", "1h"))
	s.stop()
	if got := testutil.SQLite3(t, s.db, `SELECT sum(retries) FROM rollup_namespaces WHERE span = 60 AND namespace = 'team-c'`); got != fmt.Sprint(types) {
		t.Errorf("rollup_namespaces counts %s retransmissions in team-c, want %d", got, types)
	}
	s.checkLog("[FATAL]")
}
