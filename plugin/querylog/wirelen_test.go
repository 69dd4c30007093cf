package querylog

import (
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestWireLen compares wireLen with m.Len() on random messages: names sharing suffixes (in
// other cases too, which compression tells apart), every type wireLen follows and some it
// leaves to m.Len(), escaped names, more names than it holds, and messages long enough that
// later names lie past the reach of a compression pointer.
func TestWireLen(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 20_000 {
		m := randomMsg(r)
		if got, want := wireLen(m), m.Len(); got != want {
			t.Fatalf("message %d: wireLen %d, Len %d\n%v", i, got, want, m)
		}
	}
}

// TestWireLenAllocs checks that the replies CoreDNS writes most (an answer, a referral, a
// negative answer, each with an OPT record) are measured without allocating.
func TestWireLenAllocs(t *testing.T) {
	a := new(dns.Msg).SetQuestion("web.team-a.svc.cluster.local.", dns.TypeA)
	a.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "web.team-a.svc.cluster.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(10, 96, 0, 10)}}
	cname := new(dns.Msg).SetQuestion("www.example.org.", dns.TypeAAAA)
	cname.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: "cdn.example.net."},
		&dns.AAAA{Hdr: dns.RR_Header{Name: "cdn.example.net.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, AAAA: net.ParseIP("2001:db8::1")},
	}
	nx := new(dns.Msg).SetQuestion("nope.svc.cluster.local.", dns.TypeA)
	nx.Rcode = dns.RcodeNameError
	nx.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "cluster.local.", Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Ns: "ns.dns.cluster.local.", Mbox: "hostmaster.cluster.local."}}
	for _, m := range []*dns.Msg{a, cname, nx} {
		m.Compress = true
		m.SetEdns0(1232, false)
		if got, want := wireLen(m), m.Len(); got != want {
			t.Fatalf("wireLen %d, Len %d\n%v", got, want, m)
		}
		if n := testing.AllocsPerRun(100, func() { wireLen(m) }); n != 0 {
			t.Errorf("wireLen allocates %v times for\n%v", n, m)
		}
	}
}

// FuzzWireLen compares wireLen with m.Len() on any message that unpacks.
//
//	go test -run '^$' -fuzz FuzzWireLen -fuzztime 60s ./plugin/querylog/
func FuzzWireLen(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 50 {
		m := randomMsg(r)
		for _, section := range []*[]dns.RR{&m.Answer, &m.Ns, &m.Extra} {
			*section = slices.DeleteFunc(*section, func(rr dns.RR) bool { return rr == nil }) // Pack panics on them
		}
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		for _, compress := range []bool{true, false} {
			m.Compress = compress
			if got, want := wireLen(m), m.Len(); got != want {
				t.Fatalf("compress %v: wireLen %d, Len %d\n%v", compress, got, want, m)
			}
		}
	})
}

// randomMsg makes a message for TestWireLen.
func randomMsg(r *rand.Rand) *dns.Msg {
	labels := []string{"example", "Example", "org", "com", "svc", "cluster", "local", "team-a", "kube-dns", "a", "b", "x1"}
	name := func() string {
		switch r.IntN(40) {
		case 0:
			return "."
		case 1:
			return ""
		case 2:
			return `a\.b.example.org.` // escaped: left to m.Len()
		case 3:
			return strings.Repeat("l", 63) + "." + labels[r.IntN(len(labels))] + "."
		}
		var b strings.Builder
		for range 1 + r.IntN(4) {
			b.WriteString(labels[r.IntN(len(labels))])
			b.WriteByte('.')
		}
		return b.String()
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name(), Rrtype: t, Class: dns.ClassINET, Ttl: 30}
	}
	rr := func() dns.RR {
		switch r.IntN(16) {
		case 0:
			return &dns.A{Hdr: hdr(dns.TypeA), A: net.IPv4(192, 0, 2, byte(r.IntN(256)))}
		case 1:
			return &dns.A{Hdr: hdr(dns.TypeA)} // no address: no data
		case 2:
			return &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: net.ParseIP("2001:db8::53")}
		case 3:
			return &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: name()}
		case 4:
			return &dns.NS{Hdr: hdr(dns.TypeNS), Ns: name()}
		case 5:
			return &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: name()}
		case 6:
			return &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: name()}
		case 7:
			return &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 1, Weight: 2, Port: 53, Target: name()}
		case 8:
			return &dns.SOA{Hdr: hdr(dns.TypeSOA), Ns: name(), Mbox: name(), Serial: 1}
		case 9:
			txt := make([]string, r.IntN(4))
			for i := range txt {
				txt[i] = strings.Repeat("t", r.IntN(256))
			}
			return &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: txt}
		case 10:
			// Long enough that the names after it are past a compression pointer's reach.
			txt := make([]string, 70)
			for i := range txt {
				txt[i] = strings.Repeat("T", 255)
			}
			return &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: txt}
		case 11:
			return &dns.DNAME{Hdr: hdr(dns.TypeDNAME), Target: name()} // left to m.Len()
		case 12:
			return &dns.HTTPS{SVCB: dns.SVCB{Hdr: hdr(dns.TypeHTTPS), Priority: 1, Target: name()}}
		case 13:
			return nil
		}
		return &dns.A{Hdr: hdr(dns.TypeA), A: net.IPv4(10, 0, 0, 1)}
	}
	m := new(dns.Msg)
	m.Compress = r.IntN(10) != 0
	for range r.IntN(3) {
		m.Question = append(m.Question, dns.Question{Name: name(), Qtype: dns.TypeA, Qclass: dns.ClassINET})
	}
	for _, section := range []*[]dns.RR{&m.Answer, &m.Ns, &m.Extra} {
		n := r.IntN(4)
		if r.IntN(20) == 0 {
			n = 40 // more names than wireLen holds
		}
		for range n {
			*section = append(*section, rr())
		}
	}
	if r.IntN(2) == 0 {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		if r.IntN(2) == 0 {
			opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "stale"})
		}
		if r.IntN(2) == 0 {
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
		}
		m.Extra = append(m.Extra, opt)
	}
	return m
}
