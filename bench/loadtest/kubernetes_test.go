package main

import (
	"database/sql"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestFillKubernetes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       config
		wantErr string
	}{
		{name: "template", c: config{corefile: corefileTemplate, upstreamRR: 1}},
		{name: "kubernetes", c: config{corefile: corefileKubernetes, upstreamRR: 250, gomemlimit: "150MiB",
			variants: []variant{{Name: "none"}, {Name: "querylog", Querylog: true}}}},
		{name: "unknown", c: config{corefile: "stock", upstreamRR: 1}, wantErr: `unknown -corefile "stock"`},
		{name: "records without upstream", c: config{corefile: corefileTemplate, upstreamRR: 250}, wantErr: "-upstream-records is for -corefile kubernetes"},
		{name: "log variant", c: config{corefile: corefileKubernetes, upstreamRR: 1, variants: []variant{{Name: "log"}}}, wantErr: `variant "log"`},
		{name: "cache", c: config{corefile: corefileKubernetes, upstreamRR: 1, cache: true}, wantErr: "drop -cache"},
		{name: "records", c: config{corefile: corefileKubernetes, upstreamRR: 5000}, wantErr: "-upstream-records 5000"},
		{name: "gomemlimit", c: config{corefile: corefileTemplate, upstreamRR: 1, gomemlimit: "150M"}, wantErr: `-gomemlimit "150M"`},
	} {
		err := tc.c.fillKubernetes()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestKubernetesCorefileDiffersByQuerylogOnly: the none run's Corefile is the querylog run's
// without its querylog block, so what the two runs' memory differs by is querylog's.
func TestKubernetesCorefileDiffersByQuerylogOnly(t *testing.T) {
	k := &cluster{upstream: "127.0.0.1:5300"}
	cf := func(v variant) string {
		return kubernetesCorefileWith(k, "/tmp/kubeconfig", v, "/tmp/q.db", 1053, 9153, 8181, 8080)
	}
	none := cf(variant{Name: "none"})
	ql := cf(variant{Name: "querylog", Querylog: true, Options: "answers"})
	block := "    querylog /tmp/q.db {\n        max_size 384MiB\n        shutdown_timeout 5s\n        buffer_bytes 16MiB\n" +
		"        answers\n    }\n"
	if !strings.Contains(ql, block) {
		t.Fatalf("querylog Corefile lacks the block %q:\n%s", block, ql)
	}
	if strings.Replace(ql, block, "", 1) != none {
		t.Errorf("the Corefiles differ by more than the querylog block:\n%s\n---\n%s", none, ql)
	}
	for _, want := range []string{"kubeconfig /tmp/kubeconfig", "pods verified", "metadata\n", "forward . 127.0.0.1:5300", "cache 30", "loop", "lameduck 5s"} {
		if !strings.Contains(none, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, none)
		}
	}
}

// TestUpstreamAnswers: the upstream answers as the template Corefile does, with the asked
// number of A records, and truncates over UDP to the client's size.
func TestUpstreamAnswers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: upstreamHandler(250), NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	<-started
	ask := func(name string, qtype uint16, size uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if size > 0 {
			m.SetEdns0(size, false)
		}
		r, err := dns.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.Compress = true // so that Len is the size on the wire
		return r
	}
	if r := ask("x."+nxZone, dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("nx name: rcode %d", r.Rcode)
	}
	if r := ask("probe.example.", dns.TypeHINFO, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("outside the zone: rcode %d", r.Rcode)
	}
	if r := ask("a."+zone, dns.TypeA, 4096); len(r.Answer) != 250 || r.Truncated || r.Len() < 4000 {
		t.Errorf("A with 4096: %d records, %d bytes, truncated %v; want 250 in 4 KB", len(r.Answer), r.Len(), r.Truncated)
	}
	if r := ask("a."+zone, dns.TypeA, 0); !r.Truncated || r.Len() > dns.MinMsgSize {
		t.Errorf("A without EDNS: %d bytes, truncated %v; want truncated to 512", r.Len(), r.Truncated)
	}
	if r := ask("a."+zone, dns.TypeAAAA, 0); len(r.Answer) != 1 {
		t.Errorf("AAAA: %d records", len(r.Answer))
	}
}

// TestKubernetesCorefileMatchesManifest: the harness's querylog block is the manifest's, but
// for the lines that ship to ClickHouse.
func TestKubernetesCorefileMatchesManifest(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/components/querylog/corefile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var opts []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "querylog":
			in = true
		case in && len(f) == 1 && f[0] == "}":
			in = false
		case in && len(f) > 0 && !strings.HasPrefix(f[0], "#") && f[0] != "node" && !strings.HasPrefix(f[0], "ship"):
			opts = append(opts, strings.Join(f, " "))
		}
	}
	if got := strings.Join(opts, "; "); got != manifestQuerylogOptions {
		t.Errorf("the manifest's querylog options (without ship lines) are\n  %s\nthe harness's\n  %s", got, manifestQuerylogOptions)
	}
}

// TestRowsNamePods: with -corefile kubernetes every client is a pod of the fake API, so a run
// whose rows (but the loop plugin's probe) do not all name the client's namespace and pod
// fails.
func TestRowsNamePods(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rows      string
		with, all int64
		pass      bool
	}{
		{"all", `(1, 'a.', 'bench', 'dnsperf-0'), (28, 'b.', 'bench', 'dnsperf-0'), (13, 'probe.', 'bench', 'dnsperf-0')`, 2, 2, true},
		{"one without", `(1, 'a.', 'bench', 'dnsperf-0'), (1, 'b.', NULL, NULL), (13, 'probe.', NULL, NULL)`, 1, 2, false},
	} {
		path := filepath.Join(t.TempDir(), "q.db")
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		// The columns of the queries view that countRows reads.
		_, err = db.Exec(`CREATE TABLE queries (qtype, qname, namespace, pod, client_ip DEFAULT '127.0.0.1');
			INSERT INTO queries (qtype, qname, namespace, pod) VALUES ` + tc.rows)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := &runResult{querylog: true, pods: true, DNSPerf: &dnsperfResult{Completed: tc.all}, Querylog: &querylogMetrics{}}
		if err := r.countRows(path, true); err != nil {
			t.Fatal(err)
		}
		r.judge()
		if *r.Rows != tc.all || r.LoopProbes != 1 || r.DBRowsWithPod == nil || *r.DBRowsWithPod != tc.with || *r.DBPods != 1 || r.Pass != tc.pass {
			t.Errorf("%s: rows %d, probes %d, with pod %v, pods %v, pass %v (%v); want %d, 1, %d, 1, %v",
				tc.name, *r.Rows, r.LoopProbes, r.DBRowsWithPod, r.DBPods, r.Pass, r.Problems, tc.all, tc.with, tc.pass)
		}
	}
}
