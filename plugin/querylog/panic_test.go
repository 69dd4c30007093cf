package querylog

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// panictest is a plugin for the in-process tests, right below querylog in the directive order
// (server_test.go): it panics on names starting with "panic-", writes a reply and then panics
// on names starting with "wpanic-", and passes everything else on.
func init() {
	plugin.Register("panictest", func(c *caddy.Controller) error {
		for c.Next() {
		}
		dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler { return panicker{next} })
		return nil
	})
}

type panicker struct{ next plugin.Handler }

func (p panicker) Name() string { return "panictest" }

func (p panicker) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	switch name := r.Question[0].Name; {
	case strings.HasPrefix(name, "panic-"):
		panic("panictest: " + name)
	case strings.HasPrefix(name, "wpanic-"):
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
		panic("panictest after writing: " + name)
	}
	return plugin.NextOrFailure(p.Name(), p.next, ctx, w, r)
}

// TestServeDNSPanicBelow: when a plugin below panics, querylog logs the SERVFAIL that the server
// answers after recovering (or the reply written before the panic) and lets the panic go on to
// the server.
func TestServeDNSPanicBelow(t *testing.T) {
	for _, tc := range []struct {
		name, qname string
		do          bool
		wantRcode   int
		wantWritten bool
	}{
		{"panic", "panic-1.example.org.", false, dns.RcodeServerFailure, false},
		{"panic, DO bit", "panic-2.example.org.", true, dns.RcodeServerFailure, false},
		{"panic after writing", "wpanic-3.example.org.", false, dns.RcodeSuccess, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			q := &QueryLog{Next: panicker{replyWith(dns.RcodeSuccess, 1, nil)}, sink: sink}
			client := dnstest.NewRecorder(&test.ResponseWriter{})
			r := query(tc.qname, dns.TypeA, dns.ClassINET)
			if tc.do {
				withDO(r)
			}
			want := errorReply(r.Copy(), dns.RcodeServerFailure)
			func() {
				defer func() {
					if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), tc.qname) {
						t.Errorf("recovered %v, want the plugin's panic passed on", p)
					}
				}()
				q.ServeDNS(context.Background(), client, r)
			}()
			got := sink.got()
			if len(got) != 1 {
				t.Fatalf("%d entries logged, want 1", len(got))
			}
			e := got[0]
			wantSize := want.Len()
			if tc.wantWritten {
				wantSize = client.Len
			}
			if int(e.rcode) != tc.wantRcode || int(e.size) != wantSize || e.qname != tc.qname || (e.flags&flagDO != 0) != tc.do {
				t.Errorf("entry %+v, want rcode %d, size %d", e, tc.wantRcode, wantSize)
			}
		})
	}
}

// TestPanicBelowLogged serves queries through a real in-process server with a plugin below
// querylog that panics on some names: the server recovers and answers SERVFAIL, and every
// answered query, panicking or not, is a row, with answered = rows + dropped.
func TestPanicBelowLogged(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    querylog %s {
        adaptive off
        flush_interval 100ms
    }
    panictest
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}`, db))
	normal := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "n", 2, 50, 0)
	c := &dns.Client{Timeout: 2 * time.Second}
	sizes := map[string]int{}
	for i := range 20 {
		for _, network := range []string{"udp", "tcp"} {
			c.Net = network
			addr := udpAddr(inst, 0)
			if network == "tcp" {
				addr = tcpAddr(inst, 0)
			}
			m := query(fmt.Sprintf("panic-%s-%d.example.org.", network, i), dns.TypeA, dns.ClassINET)
			if i%2 == 0 {
				withDO(m)
			}
			r, _, err := c.Exchange(m, addr)
			if err != nil || r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: %v %v, want SERVFAIL", m.Question[0].Name, r, err)
			}
			sizes[m.Question[0].Name] = r.Len()
		}
	}
	normal.Wait()
	answered, failed := normal.Results()
	testutil.WaitFor(t, 10*time.Second, "every answer to be written", func() bool {
		return testutil.Gather(t).Get(db, "written_total") >= float64(len(answered)+len(sizes))
	})
	testutil.StopCoreDNS(t, inst)

	rows := testutil.OpenRO(t, db)
	for name, size := range sizes {
		var rcode, got int
		if err := rows.QueryRow(`SELECT rcode, size FROM queries WHERE qname = ?`, name).Scan(&rcode, &got); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if rcode != dns.RcodeServerFailure || got != size {
			t.Errorf("%s: rcode %d, size %d; want SERVFAIL, %d bytes as answered", name, rcode, got, size)
		}
	}
	all := testutil.CountRows(t, db, "")
	if want := int64(len(answered) + len(sizes)); all != want || len(failed) != 0 {
		t.Errorf("%d rows for %d answered (%d unanswered)", all, want, len(failed))
	}
	checkAccounting(t, db, all, 0)
}
