package querylog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// testmeta is a test-only plugin that provides the metadata label testmeta/client, the
// client's address, to any plugin that asks (querylog's metadata option, here).
type testmeta struct{ next plugin.Handler }

func init() {
	plugin.Register("testmeta", func(c *caddy.Controller) error {
		for c.Next() {
		}
		dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler { return testmeta{next} })
		return nil
	})
}

func (t testmeta) Name() string { return "testmeta" }
func (t testmeta) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return plugin.NextOrFailure(t.Name(), t.next, ctx, w, r)
}
func (t testmeta) Metadata(ctx context.Context, state request.Request) context.Context {
	metadata.SetValueFunc(ctx, "testmeta/client", state.IP)
	return ctx
}

const e2eBlock = `
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN ANY example.net {
        rcode NXDOMAIN
    }`

// TestEndToEnd serves real UDP and TCP queries from an in-process CoreDNS and checks that the
// SQLite file holds exactly one correct row per answered query and that the metrics agree.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	inst := startCoreDNS(t, fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    querylog %s
%s
}`, db, e2eBlock))

	udpLoad := testutil.StartLoad(t, "udp", udpAddr(inst, 0), "u", 8, 250, 0)
	tcpLoad := testutil.StartLoad(t, "tcp", tcpAddr(inst, 0), "t", 4, 250, 0)
	udpLoad.Wait()
	tcpLoad.Wait()
	udp, tcp := int64(udpLoad.Count()), int64(tcpLoad.Count())

	// A few with odd names, other types, DO, and an NXDOMAIN.
	c := new(dns.Client)
	m := new(dns.Msg)
	m.SetQuestion(`MiXeD\000\.case.example.net.`, dns.TypeMX)
	m.SetEdns0(1232, true)
	r, _, err := c.Exchange(m, udpAddr(inst, 0))
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("NXDOMAIN query: %v %v", r, err)
	}
	testutil.StopCoreDNS(t, inst)

	total := udp + tcp + 1
	if udp != 2000 || tcp != 1000 {
		t.Errorf("answered %d UDP and %d TCP queries, want 2000 and 1000", udp, tcp)
	}
	if n := testutil.CountRows(t, db, ""); n != total {
		t.Errorf("rows = %d, want %d (one per answered query)", n, total)
	}
	if n := testutil.CountRows(t, db, "WHERE proto = 'tcp'"); n != tcp {
		t.Errorf("tcp rows = %d, want %d", n, tcp)
	}
	var qname, client, proto, server string
	var qtype, qclass, rcode, size, answers, do int
	err = testutil.OpenRO(t, db).QueryRow(`SELECT qname, client_ip, proto, server, qtype, qclass, rcode, size, answers, "do"
		FROM queries WHERE rcode = 3`).Scan(&qname, &client, &proto, &server, &qtype, &qclass, &rcode, &size, &answers, &do)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{`mixed\000\.case.example.net.`, "127.0.0.1", "udp", "dns://127.0.0.1:0", dns.TypeMX, 1, 3, r.Len(), 0, 1}
	got := []any{qname, client, proto, server, uint16(qtype), qclass, rcode, size, answers, do}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("NXDOMAIN row = %v, want %v", got, want)
	}

	a := testutil.Gather(t).Account(db)
	if a.Enqueued != float64(total) || a.Written != float64(total) || a.Dropped != 0 || a.Buffered != 0 {
		t.Errorf("metrics: %+v, want enqueued = written = %d, nothing dropped or buffered", a, total)
	}
}

// TestRichFields checks what schema 2 added to a row, end to end: the answering plugin (cache
// for a hit, forward for a miss, with its upstream), the reply's flags and Extended DNS Error
// (from a template in a block of its own: CoreDNS drops an upstream's EDNS options when it
// relays a reply, and under a cache every miss reads as cache), and the opt-in metadata and
// answers.
func TestRichFields(t *testing.T) {
	testutil.CaptureLog(t)
	db := filepath.Join(t.TempDir(), "q.db")
	ports := testutil.Ports(t, 2)
	upstream := fmt.Sprintf("127.0.0.1:%d", ports[1])
	inst := startCoreDNS(t, fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    metadata
    testmeta
    querylog %s {
        metadata testmeta/client
        answers
    }
    cache 30
    forward . %s
}
blocked.example:%d {
    bind 127.0.0.1
    metadata
    testmeta
    querylog %s {
        metadata testmeta/client
        answers
    }
    template IN A blocked.example {
        rcode REFUSED
        ederror 15 "blocked by policy"
    }
}
.:%d {
    bind 127.0.0.1
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
        answer "{{ .Name }} 60 IN A 192.0.2.2"
    }
}`, ports[0], db, upstream, ports[0], db, ports[1]))
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	c := new(dns.Client)
	for i, name := range []string{"www.example.org.", "www.example.org.", "x.blocked.example."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.SetEdns0(1232, true)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		testutil.WaitRows(t, db, int64(i+1), "") // the rows are compared in the order asked
	}
	testutil.StopCoreDNS(t, inst)

	rows, err := testutil.OpenRO(t, db).Query(`SELECT qname, rcode, plugin, upstream, flags, ede, metadata, answer_data, "do"
		FROM queries_readable ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var qname, rcode, flags string
		var plugin, up, meta, answers sql.NullString
		var ede sql.NullInt64
		var do int
		if err := rows.Scan(&qname, &rcode, &plugin, &up, &flags, &ede, &meta, &answers, &do); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s plugin=%s upstream=%s flags=%q ede=%v meta=%s answers=%q do=%d",
			qname, rcode, plugin.String, up.String, flags, ede.Int64, meta.String, answers.String, do))
	}
	meta := `{"testmeta/client":"127.0.0.1"}`
	want := []string{
		fmt.Sprintf(`www.example.org. NOERROR plugin=forward upstream=%s flags="aa rd" ede=0 meta=%s answers="192.0.2.1 192.0.2.2" do=1`, upstream, meta),
		fmt.Sprintf(`www.example.org. NOERROR plugin=cache upstream= flags="aa rd" ede=0 meta=%s answers="192.0.2.1 192.0.2.2" do=1`, meta),
		fmt.Sprintf(`x.blocked.example. REFUSED plugin=template upstream= flags="aa rd" ede=15 meta=%s answers="" do=1`, meta),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows:\n%s\nwant:\n%s", got, want)
	}
}
