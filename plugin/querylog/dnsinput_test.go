package querylog

// Unusual DNS input against an in-process CoreDNS with a real SQLite file: each query that
// reaches the plugin chain is logged faithfully (name, type, class, rcode, the bytes and answers
// that went on the wire, DO, transport); queries the server answers itself are documented here.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/coredns/coredns/plugin/chaos" // lets non-IN classes through to the plugins
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// dnsCorefile answers big.example.org with 40 A records (too many for 512 bytes), every
// other A under example.org with one, and everything else, of any class and type, NXDOMAIN.
func dnsCorefile(db string, chaos bool) string {
	var big strings.Builder
	for i := range 40 {
		fmt.Fprintf(&big, "        answer \"{{ .Name }} 60 IN A 192.0.2.%d\"\n", i)
	}
	c := ""
	if chaos {
		c = "chaos CoreDNS-test ftest@example.org"
	}
	return fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    querylog %s {
        flush_interval 200ms
    }
    %s
    template IN A big.example.org {
%s        fallthrough
    }
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
        fallthrough
    }
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`, db, c, big.String())
}

// rawUDP sends one datagram and returns the reply datagram.
func rawUDP(t *testing.T, addr string, wire []byte) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// sentQuery is one query sent and what came back.
type sentQuery struct {
	what  string
	req   *dns.Msg
	proto string
	reply []byte // the reply's bytes on the wire (without TCP's length prefix)
}

// want is the row a query must have produced, less what the client cannot know (time, server
// and duration).
func (q sentQuery) want(t *testing.T) queryRow {
	t.Helper()
	// The name as the server sees it: unpacked from the wire, in presentation format.
	wire, err := q.req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	seen := new(dns.Msg)
	if err := seen.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(q.reply); err != nil {
		t.Fatalf("%s: unpacking the reply: %v", q.what, err)
	}
	qq := seen.Question[0]
	do := false
	if opt := seen.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	return queryRow{client: "127.0.0.1", proto: q.proto, qname: strings.ToLower(qq.Name),
		qtype: int64(qq.Qtype), qclass: int64(qq.Qclass), rcode: int64(reply.Rcode), size: int64(len(q.reply)),
		answers: int64(len(reply.Answer)), do: do}
}

// rowFor reads the rows for qname: their number, and the first without time, server and
// duration.
func rowFor(t *testing.T, db, qname string) (queryRow, int) {
	t.Helper()
	rows := readRows(t, testutil.OpenRO(t, db), "WHERE qname = ?", qname)
	if len(rows) == 0 {
		return queryRow{}, 0
	}
	r := rows[0]
	r.ts, r.server, r.us = 0, "", 0
	return r, len(rows)
}

// maxName is a 255-octet name (the maximum) whose labels hold every byte value.
func maxName(tag byte) string {
	var b strings.Builder
	for l, n := range []int{63, 63, 63, 61} {
		for i := range n {
			c := byte((l*63 + i) * 7 % 256)
			if i == 0 {
				c = tag
			}
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-':
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, `\%03d`, c)
			}
		}
		b.WriteByte('.')
	}
	return b.String()
}

// TestDNSInputLoggedFaithfully sends unusual but valid queries over UDP and TCP and checks
// each one's row field by field against the request and the reply bytes the client received.
func TestDNSInputLoggedFaithfully(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, dnsCorefile(db, true))
	udp, tcp := udpAddr(inst, 0), tcpAddr(inst, 0)

	var queries []sentQuery
	add := func(what string, m *dns.Msg) { queries = append(queries, sentQuery{what: what, req: m}) }
	add("plain", query("plain.example.org.", dns.TypeA, dns.ClassINET))
	add("mixed case", query("MiXeD.CaSe.Example.ORG.", dns.TypeA, dns.ClassINET))
	add("binary bytes", query(`\000\001\127\128\255.bin.example.net.`, dns.TypeA, dns.ClassINET))
	add("escaped dot, space, quote, backslash", query(`a\.b\ c\"d\\e\;f\(g\)h\@i.example.net.`, dns.TypeTXT, dns.ClassINET))
	add("maximum length, binary", query(maxName('m'), dns.TypeA, dns.ClassINET))
	add("maximum length label", query(strings.Repeat("z", 63)+".example.net.", dns.TypeA, dns.ClassINET))
	add("root", query(".", dns.TypeNS, dns.ClassINET))
	for _, qt := range []uint16{0, 65280, 65535, 4000, dns.TypeANY, dns.TypeHTTPS, dns.TypeSVCB} {
		add(fmt.Sprintf("type %d", qt), query(fmt.Sprintf("type%d.example.net.", qt), qt, dns.ClassINET))
	}
	for _, qc := range []uint16{dns.ClassCHAOS, dns.ClassHESIOD, dns.ClassNONE, dns.ClassANY, 1000, 65535} {
		add(fmt.Sprintf("class %d", qc), query(fmt.Sprintf("class%d.example.net.", qc), dns.TypeA, qc))
	}
	add("chaos version.bind", query("version.bind.", dns.TypeTXT, dns.ClassCHAOS))
	for _, size := range []uint16{0, 1, 511, 512, 513, 1232, 4096, 65535} {
		for _, do := range []bool{false, true} {
			m := query(fmt.Sprintf("edns%d-%v.example.org.", size, do), dns.TypeA, dns.ClassINET)
			m.SetEdns0(size, do)
			add(fmt.Sprintf("EDNS %d DO %v", size, do), m)
			b := query(fmt.Sprintf("big-edns%d-%v.big.example.org.", size, do), dns.TypeA, dns.ClassINET)
			b.SetEdns0(size, do)
			add(fmt.Sprintf("big reply, EDNS %d DO %v", size, do), b)
		}
	}
	add("truncated reply", query("trunc.big.example.org.", dns.TypeA, dns.ClassINET))

	// Over UDP, each query and its reply datagram.
	n := len(queries)
	for i := range n {
		q := &queries[i]
		q.proto = "udp"
		wire, err := q.req.Pack()
		if err != nil {
			t.Fatalf("%s: %v", q.what, err)
		}
		if q.reply, err = rawUDP(t, udp, wire); err != nil {
			t.Fatalf("%s over UDP: %v", q.what, err)
		}
	}
	// Over TCP, every query again under another name, all pipelined on one connection before
	// any reply is read.
	conn, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	usedIDs := map[uint16]bool{}
	for i := range n {
		m := queries[i].req.Copy()
		// Replies are matched by id: two queries with one id would leave one without a reply.
		m.Id = dns.Id()
		for usedIDs[m.Id] {
			m.Id = dns.Id()
		}
		usedIDs[m.Id] = true
		if m.Question[0].Name == "." || m.Question[0].Name == "version.bind." {
			continue
		}
		if m.Question[0].Name == maxName('m') {
			m.Question[0].Name = maxName('t')
		} else {
			m.Question[0].Name = "tcp." + m.Question[0].Name
		}
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("%s: %v", queries[i].what, err)
		}
		if _, err := conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(wire)))); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(wire); err != nil {
			t.Fatal(err)
		}
		queries = append(queries, sentQuery{what: "TCP " + queries[i].what, req: m, proto: "tcp"})
	}
	byID := map[uint16]*sentQuery{}
	for i := n; i < len(queries); i++ {
		byID[queries[i].req.Id] = &queries[i]
	}
	for range len(queries) - n {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			t.Fatalf("reading pipelined replies: %v", err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatal(err)
		}
		q := byID[binary.BigEndian.Uint16(b)]
		if q == nil {
			t.Fatalf("reply with unknown id")
		}
		q.reply = b
	}
	testutil.StopCoreDNS(t, inst)

	truncated := 0
	for _, q := range queries {
		want := q.want(t)
		got, rows := rowFor(t, db, want.qname)
		if rows != 1 {
			t.Errorf("%s: %d rows for %q, want 1", q.what, rows, want.qname)
			continue
		}
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", q.what, got, want)
		}
		if r := new(dns.Msg); r.Unpack(q.reply) == nil && r.Truncated {
			truncated++
		}
	}
	t.Logf("%d queries (%d over UDP, %d pipelined over TCP), %d replies truncated", len(queries), n, len(queries)-n, truncated)
	if truncated == 0 {
		t.Errorf("no reply was truncated; the test wants some")
	}
	if rows := testutil.CountRows(t, db, ""); rows != int64(len(queries)) {
		t.Errorf("%d rows, want %d", rows, len(queries))
	}
	checkAccounting(t, db, int64(len(queries)), 0)
}

// TestDNSInputAnsweredByServer sends queries that CoreDNS's server (or miekg/dns below it)
// answers itself, before any plugin runs: they get a reply but no row, and querylog counts
// nothing for them. docs/guarantees.md (row 30) lists them: no question or several questions,
// two answer or three additional records, a message that does not unpack (FORMERR from
// miekg/dns), opcodes UPDATE and STATUS (NOTIMP from miekg/dns), EDNS version 1 (BADVERS), a
// non-IN class when no plugin enables other classes (REFUSED), and a name under no zone of the
// server (REFUSED). A message with the QR bit set is ignored without a reply.
func TestDNSInputAnsweredByServer(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, dnsCorefile(db, false))
	udp := udpAddr(inst, 0)

	noQuestion := new(dns.Msg)
	noQuestion.Id = dns.Id()
	two := query("one.example.org.", dns.TypeA, dns.ClassINET)
	two.Question = append(two.Question, dns.Question{Name: "two.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	badvers := query("badvers.example.org.", dns.TypeA, dns.ClassINET)
	badvers.SetEdns0(1232, false)
	badvers.Extra[0].(*dns.OPT).SetVersion(1)
	chaos := query("chaos.example.org.", dns.TypeTXT, dns.ClassCHAOS)
	status := query("status.example.org.", dns.TypeA, dns.ClassINET)
	status.Opcode = dns.OpcodeStatus
	update := new(dns.Msg)
	update.SetUpdate("example.org.")
	update.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "new.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 9)}})
	response := query("response.example.org.", dns.TypeA, dns.ClassINET)
	response.Response = true
	twoAnswers := query("answers.example.org.", dns.TypeA, dns.ClassINET)
	for i := range 2 {
		twoAnswers.Answer = append(twoAnswers.Answer, &dns.A{Hdr: dns.RR_Header{Name: "answers.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))})
	}
	threeExtra := query("extra.example.org.", dns.TypeA, dns.ClassINET)
	for i := range 3 {
		threeExtra.Extra = append(threeExtra.Extra, &dns.A{Hdr: dns.RR_Header{Name: "extra.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))})
	}

	cases := []struct {
		what  string
		m     *dns.Msg
		rcode int // -1: no reply
	}{
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", two, dns.RcodeFormatError},
		{"EDNS version 1", badvers, dns.RcodeBadVers},
		{"CH class without chaos", chaos, dns.RcodeRefused},
		{"opcode STATUS", status, dns.RcodeNotImplemented},
		{"opcode UPDATE", update, dns.RcodeNotImplemented},
		{"two answer records", twoAnswers, dns.RcodeFormatError},
		{"three additional records", threeExtra, dns.RcodeFormatError},
		{"a name that does not unpack", nil, dns.RcodeFormatError},
		{"QR bit set", response, -1},
	}
	for _, c := range cases {
		// nil: one question whose name is a compression pointer to itself, a loop.
		wire := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}
		if c.m != nil {
			var err error
			if wire, err = c.m.Pack(); err != nil {
				t.Fatalf("%s: %v", c.what, err)
			}
		}
		reply, err := rawUDP(t, udp, wire)
		if c.rcode < 0 {
			if err == nil {
				t.Errorf("%s: got a reply", c.what)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(reply); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if r.Rcode != c.rcode {
			t.Errorf("%s: rcode %s, want %s", c.what, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
		}
	}
	// A normal query still works and is the only row.
	if r, err := dns.Exchange(query("normal.example.org.", dns.TypeA, dns.ClassINET), udp); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("normal query: %v %v", r, err)
	}
	testutil.StopCoreDNS(t, inst)
	if n := testutil.CountRows(t, db, ""); n != 1 {
		t.Errorf("%d rows, want only the normal query's", n)
	}
	checkAccounting(t, db, 1, 0)

	// A server with no root zone refuses a name under none of its zones.
	db = filepath.Join(t.TempDir(), "z.db")
	inst = startCoreDNS(t, fmt.Sprintf(`example.org:0 {
    bind 127.0.0.1
    querylog %s {
        flush_interval 200ms
    }
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}`, db))
	udp = udpAddr(inst, 0)
	for _, c := range []struct {
		name  string
		rcode int
	}{{"other.example.net.", dns.RcodeRefused}, {"normal.example.org.", dns.RcodeSuccess}} {
		if r, err := dns.Exchange(query(c.name, dns.TypeA, dns.ClassINET), udp); err != nil || r.Rcode != c.rcode {
			t.Fatalf("%s: %v %v, want rcode %s", c.name, r, err, dns.RcodeToString[c.rcode])
		}
	}
	testutil.StopCoreDNS(t, inst)
	if names := testutil.Names(t, db); len(names) != 1 || names["normal.example.org."] != 1 {
		t.Errorf("rows %v, want only normal.example.org.", names)
	}
	checkAccounting(t, db, 1, 0)
}

// TestDNSInputSQLInjection logs names built to break SQL quoting and reads them back: each row
// holds the name exactly as the server saw it (presentation format, lower case), the name's
// wire form is unchanged by the trip, and the schema is intact.
func TestDNSInputSQLInjection(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	inst := startCoreDNS(t, dnsCorefile(db, false))
	names := []string{
		`a'); DROP TABLE queries;--.example.`,
		`x' OR '1'='1.example.`,
		`"; DELETE FROM queries; --.example.`,
		`robert'); DROP TABLE students;--.example.`,
		`'.example.`, `''.example.`, `\\'.example.`, `%.example.`, `_.example.`, `*.example.`,
		`$1.example.`, `?.example.`, `:name.example.`, `@p.example.`, "\\000'\\255.example.",
		`x'||(SELECT name FROM sqlite_master)||'.example.`,
		`1;ATTACH DATABASE '/tmp/pwn.db' AS pwn;--.example.`,
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	var sent []*dns.Msg
	for _, n := range names {
		m := query(n, dns.TypeA, dns.ClassINET)
		if _, _, err := c.Exchange(m, udpAddr(inst, 0)); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		sent = append(sent, m)
	}
	testutil.StopCoreDNS(t, inst)

	schema := testutil.SQLite3(t, db, "SELECT type || ' ' || name FROM sqlite_schema ORDER BY name")
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	st, err := openStore(fresh)
	if err != nil {
		t.Fatal(err)
	}
	st.close()
	if want := testutil.SQLite3(t, fresh, "SELECT type || ' ' || name FROM sqlite_schema ORDER BY name"); schema != want {
		t.Errorf("schema changed:\n%s\nwant\n%s", schema, want)
	}
	for _, m := range sent {
		q := sentQuery{what: m.Question[0].Name, req: m}
		wire, _ := m.Pack()
		seen := new(dns.Msg)
		seen.Unpack(wire)
		want := strings.ToLower(seen.Question[0].Name)
		if _, rows := rowFor(t, db, want); rows != 1 {
			t.Errorf("%s: %d rows for %q", q.what, rows, want)
			continue
		}
		// The stored text turns back into the same wire name (up to case).
		buf := make([]byte, 256)
		n1, err1 := dns.PackDomainName(want, buf, 0, nil, false)
		orig := make([]byte, 256)
		n2, err2 := dns.PackDomainName(m.Question[0].Name, orig, 0, nil, false)
		if err1 != nil || err2 != nil || !strings.EqualFold(string(buf[:n1]), string(orig[:n2])) {
			t.Errorf("%s: stored %q does not pack to the name sent (%v, %v)", q.what, want, err1, err2)
		}
	}
	if n := testutil.CountRows(t, db, ""); n != int64(len(names)) {
		t.Errorf("%d rows, want %d", n, len(names))
	}
}
