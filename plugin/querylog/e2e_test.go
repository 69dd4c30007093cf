package querylog

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

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
	stopCoreDNS(t, inst)

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
