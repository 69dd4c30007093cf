package querylog

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
	ot "github.com/opentracing/opentracing-go"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// memSink is a fake sink that keeps the entries it is given.
type memSink struct {
	mu       sync.Mutex
	entries  []entry
	notReady bool
	onLog    func(entry) // called for every entry, if set
	labels   labels
}

func (s *memSink) labelTable() *labels { return &s.labels }

// logged is an entry with its labels resolved, as tests compare it.
type logged struct {
	server, qname, plugin, upstream string
	client                          netip.Addr
	key                             int // hash key index
	proto                           proto
	qtype, qclass, rcode, answers   uint16
	ede                             uint16 // INFO-CODE + 1
	size                            uint32
	flags                           flags // without flagV4
	do                              bool
}

// readable resolves e's labels.
func (s *memSink) readable(e entry) logged {
	l := &s.labels
	return logged{server: l.text(labelServer, uint16(e.server)), qname: e.qname, plugin: l.text(labelPlugin, uint16(e.plugin)),
		upstream: l.text(labelUpstream, e.upstream), client: e.addr(), key: e.keyIndex(), proto: e.proto(),
		qtype: e.qtype, qclass: e.qclass, rcode: e.rcode, answers: e.answers, ede: e.ede, size: e.size,
		flags: e.flags &^ (flagV4 | flagDO), do: e.flags&flagDO != 0}
}

func (s *memSink) log(e entry) {
	if s.onLog != nil {
		s.onLog(e)
	}
	s.mu.Lock()
	s.entries = append(s.entries, e)
	s.mu.Unlock()
}

func (s *memSink) ready() bool { return !s.notReady }

func (s *memSink) got() []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]entry(nil), s.entries...)
}

// named is a handler with a name, as a real plugin has.
type named struct {
	name string
	fn   test.HandlerFunc
}

func (h named) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return h.fn(ctx, w, r)
}
func (h named) Name() string { return h.name }

// replyWith returns a handler that replies with rcode and n A records and keeps the reply.
func replyWith(rcode, n int, sent **dns.Msg) test.HandlerFunc {
	return func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		for i := range n {
			m.Answer = append(m.Answer, test.A(fmt.Sprintf("%s 60 IN A 198.51.%d.%d", r.Question[0].Name, i/250, i%250+1)))
		}
		if sent != nil {
			*sent = m
		}
		return rcode, w.WriteMsg(m)
	}
}

// query is a query with one question.
func query(name string, qtype, qclass uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Question[0].Qclass = qclass
	return m
}

// withDO sets the DNSSEC OK bit on m.
func withDO(m *dns.Msg) *dns.Msg {
	m.SetEdns0(1232, true)
	return m
}

func serverCtx(addr string) context.Context {
	if addr == "" {
		return context.Background()
	}
	return context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: addr})
}

// serve runs one query through a querylog handler in front of next and returns the single
// entry logged, checking its timing fields.
func serve(t *testing.T, ctx context.Context, w dns.ResponseWriter, r *dns.Msg, next plugin.Handler) (logged, int, error) {
	t.Helper()
	s := &memSink{}
	q := &QueryLog{Next: next, sink: s}
	before := time.Now()
	rc, err := q.ServeDNS(ctx, w, r)
	after := time.Now()
	got := s.got()
	if len(got) != 1 {
		t.Fatalf("logged %d entries, want 1", len(got))
	}
	e := got[0]
	if e.start < before.UnixNano() || e.start > after.UnixNano() {
		t.Errorf("start %d outside the call [%d, %d]", e.start, before.UnixNano(), after.UnixNano())
	}
	if int64(e.duration) > after.Sub(before).Microseconds() {
		t.Errorf("duration %d µs longer than the call, %s", e.duration, after.Sub(before))
	}
	return s.readable(e), rc, err
}

func TestServeDNSReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		w       dns.ResponseWriter
		server  string
		qname   string
		qtype   uint16
		qclass  uint16
		do      bool
		edns    bool // EDNS without DO
		rcode   int
		answers int
		// expected
		wantQname  string
		wantClient string
		wantProto  proto
	}{
		{name: "udp", w: &test.ResponseWriter{}, qname: "WwW.Example.ORG.", qtype: dns.TypeA, qclass: dns.ClassINET, answers: 2,
			wantQname: "www.example.org.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "tcp", w: &test.ResponseWriter{TCP: true}, qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET, answers: 1,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoTCP},
		{name: "ipv6 udp", w: &test.ResponseWriter6{}, qname: "example.org.", qtype: dns.TypeAAAA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "fe80::42:ff:feca:4c65", wantProto: protoUDP},
		{name: "ipv6 tcp", w: &test.ResponseWriter6{ResponseWriter: test.ResponseWriter{TCP: true}}, qname: "example.org.", qtype: dns.TypeAAAA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "fe80::42:ff:feca:4c65", wantProto: protoTCP},
		{name: "IPv4-mapped client", w: &test.ResponseWriter{RemoteIP: "::ffff:192.0.2.7"}, qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "192.0.2.7", wantProto: protoUDP},
		{name: "DO bit, NXDOMAIN", w: &test.ResponseWriter{}, qname: "Nope.Example.ORG.", qtype: dns.TypeMX, qclass: dns.ClassINET, do: true, rcode: dns.RcodeNameError,
			wantQname: "nope.example.org.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "EDNS without DO", w: &test.ResponseWriter{}, qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET, edns: true, answers: 1,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "chaos class", w: &test.ResponseWriter{}, qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused,
			wantQname: "version.bind.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "escaped name keeps its escapes", w: &test.ResponseWriter{}, qname: `MiXeD\000\.Case.Example.`, qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: `mixed\000\.case.example.`, wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "many answers", w: &test.ResponseWriter{}, qname: "many.example.", qtype: dns.TypeA, qclass: dns.ClassINET, answers: 300,
			wantQname: "many.example.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "dns:// server, udp", w: &test.ResponseWriter{}, server: "dns://.:53", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoUDP},
		{name: "dns:// server, tcp", w: &test.ResponseWriter{TCP: true}, server: "dns://.:53", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoTCP},
		{name: "tls:// server", w: &test.ResponseWriter{TCP: true}, server: "tls://.:853", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoDoT},
		{name: "https:// server", w: &test.ResponseWriter{TCP: true}, server: "https://.:443", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoDoH},
		{name: "https3:// server", w: &test.ResponseWriter{}, server: "https3://.:443", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoDoH3},
		{name: "quic:// server", w: &test.ResponseWriter{}, server: "quic://.:853", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoDoQ},
		{name: "grpc:// server", w: &test.ResponseWriter{TCP: true}, server: "grpc://.:443", qname: "example.org.", qtype: dns.TypeA, qclass: dns.ClassINET,
			wantQname: "example.org.", wantClient: "10.240.0.1", wantProto: protoGRPC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := dnstest.NewRecorder(tc.w)
			var sent *dns.Msg
			r := query(tc.qname, tc.qtype, tc.qclass)
			if tc.do {
				withDO(r)
			}
			if tc.edns {
				r.SetEdns0(4096, false)
			}
			got, rc, err := serve(t, serverCtx(tc.server), client, r, replyWith(tc.rcode, tc.answers, &sent))
			if rc != tc.rcode || err != nil {
				t.Errorf("ServeDNS = %d, %v; want %d, nil", rc, err, tc.rcode)
			}
			if client.Msg != sent || client.Rcode != tc.rcode {
				t.Errorf("the reply did not reach the client")
			}
			want := logged{
				server:  tc.server,
				qname:   tc.wantQname,
				plugin:  "handlerfunc",
				client:  netip.MustParseAddr(tc.wantClient),
				size:    uint32(sent.Len()),
				qtype:   tc.qtype,
				qclass:  tc.qclass,
				rcode:   uint16(tc.rcode),
				answers: uint16(tc.answers),
				proto:   tc.wantProto,
				flags:   flagRD, // SetRcode copies it from the query, which asked for recursion
				do:      tc.do,
			}
			if got != want {
				t.Errorf("entry\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// The reply goes to the client before the entry is handed to the sink.
func TestServeDNSReplyFirst(t *testing.T) {
	t.Parallel()
	client := dnstest.NewRecorder(&test.ResponseWriter{})
	replied := false
	s := &memSink{onLog: func(entry) { replied = client.Msg != nil }}
	q := &QueryLog{Next: replyWith(dns.RcodeSuccess, 1, nil), sink: s}
	q.ServeDNS(context.Background(), client, query("example.org.", dns.TypeA, dns.ClassINET))
	if len(s.got()) != 1 || !replied {
		t.Errorf("entries %d, reply sent before logging: %v", len(s.got()), replied)
	}
}

// A plugin that writes the packed reply with Write instead of WriteMsg.
func TestServeDNSWriteBytes(t *testing.T) {
	t.Parallel()
	var packed []byte
	next := test.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		for i := range 3 {
			m.Answer = append(m.Answer, test.A(fmt.Sprintf("example.org. 60 IN A 192.0.2.%d", i+1)))
		}
		var err error
		if packed, err = m.Pack(); err != nil {
			return dns.RcodeServerFailure, err
		}
		_, err = w.Write(packed)
		return dns.RcodeNameError, err
	})
	got, _, _ := serve(t, context.Background(), dnstest.NewRecorder(&test.ResponseWriter{TCP: true}),
		query("example.org.", dns.TypeA, dns.ClassINET), next)
	if got.rcode != dns.RcodeNameError || got.answers != 3 || got.size != uint32(len(packed)) || got.proto != protoTCP || got.flags != flagRD {
		t.Errorf("entry %+v, want rcode 3, 3 answers, size %d, tcp", got, len(packed))
	}
}

// Several messages for one query (a zone transfer): sizes add up, the last one's rcode and
// answer count are kept.
func TestServeDNSSeveralMessages(t *testing.T) {
	t.Parallel()
	var sizes []int
	next := test.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		for _, n := range []int{5, 2} {
			m := new(dns.Msg)
			m.SetReply(r)
			for i := range n {
				m.Answer = append(m.Answer, test.A(fmt.Sprintf("example.org. 60 IN A 192.0.2.%d", i+1)))
			}
			if err := w.WriteMsg(m); err != nil {
				return dns.RcodeServerFailure, err
			}
			sizes = append(sizes, m.Len())
		}
		return dns.RcodeSuccess, nil
	})
	got, _, _ := serve(t, context.Background(), dnstest.NewRecorder(&test.ResponseWriter{TCP: true}),
		query("example.org.", dns.TypeAXFR, dns.ClassINET), next)
	if got.size != uint32(sizes[0]+sizes[1]) || got.answers != 2 || got.rcode != 0 {
		t.Errorf("entry %+v, want size %d, 2 answers", got, sizes[0]+sizes[1])
	}
}

// errorReply is the reply dnsserver's errorFunc writes when the chain returns rc without
// writing.
func errorReply(r *dns.Msg, rc int) *dns.Msg {
	reply := new(dns.Msg)
	reply.SetRcode(r, rc)
	if o := r.IsEdns0(); o != nil {
		opt := new(dns.OPT)
		opt.Hdr.Name = "."
		opt.Hdr.Rrtype = dns.TypeOPT
		opt.SetUDPSize(o.UDPSize())
		opt.SetDo(o.Do())
		reply.Extra = append(reply.Extra, opt)
	}
	return reply
}

func TestServeDNSSynthesized(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		rc  int
		err error
		do  bool
	}{
		{dns.RcodeServerFailure, nil, false},
		{dns.RcodeServerFailure, nil, true},
		{dns.RcodeServerFailure, boom, false},
		{dns.RcodeRefused, nil, false},
		{dns.RcodeRefused, nil, true},
		{dns.RcodeFormatError, nil, false},
		{dns.RcodeNotImplemented, boom, true},
	} {
		t.Run(fmt.Sprintf("%s,err=%v,do=%v", dns.RcodeToString[tc.rc], tc.err, tc.do), func(t *testing.T) {
			client := dnstest.NewRecorder(&test.ResponseWriter{})
			r := query("Fail.Example.ORG.", dns.TypeA, dns.ClassINET)
			if tc.do {
				withDO(r)
			}
			want := errorReply(r.Copy(), tc.rc)
			got, rc, err := serve(t, context.Background(), client, r, test.NextHandler(tc.rc, tc.err))
			if rc != tc.rc || !errors.Is(err, tc.err) {
				t.Errorf("ServeDNS = %d, %v; want %d, %v passed through", rc, err, tc.rc, tc.err)
			}
			if got.rcode != uint16(tc.rc) || got.answers != 0 || got.size != uint32(want.Len()) || got.do != tc.do || got.qname != "fail.example.org." {
				t.Errorf("entry %+v, want rcode %d, size %d, do %v", got, tc.rc, want.Len(), tc.do)
			}
			if client.Msg != nil {
				t.Errorf("querylog wrote the error reply itself; the server does")
			}
		})
	}
}

// Without a next plugin NextOrFailure answers SERVFAIL, which the server then writes.
func TestServeDNSNoNext(t *testing.T) {
	t.Parallel()
	got, rc, err := serve(t, context.Background(), &test.ResponseWriter{}, query("example.org.", dns.TypeA, dns.ClassINET), nil)
	if rc != dns.RcodeServerFailure || err == nil || got.rcode != dns.RcodeServerFailure {
		t.Errorf("ServeDNS = %d, %v, entry rcode %d; want SERVFAIL with an error, logged", rc, err, got.rcode)
	}
}

// When the chain returns an rcode that means "already answered" without writing anything (an
// acl drop), the client got nothing and nothing is logged.
func TestServeDNSNothingWritten(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rc  int
		err error
	}{
		{dns.RcodeSuccess, nil},
		{dns.RcodeSuccess, errors.New("dropped")},
		{dns.RcodeNameError, nil},
		{dns.RcodeYXDomain, nil},
	} {
		s := &memSink{}
		q := &QueryLog{Next: test.NextHandler(tc.rc, tc.err), sink: s}
		rc, err := q.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), query("example.org.", dns.TypeA, dns.ClassINET))
		if rc != tc.rc || err != tc.err {
			t.Errorf("rc %d: ServeDNS = %d, %v", tc.rc, rc, err)
		}
		if n := len(s.got()); n != 0 {
			t.Errorf("rc %d without a write: %d entries logged, want none", tc.rc, n)
		}
	}
}

// A reply written although the plugin returns SERVFAIL (test.ErrorHandler) is logged once, as
// written.
func TestServeDNSWrittenServfail(t *testing.T) {
	t.Parallel()
	client := dnstest.NewRecorder(&test.ResponseWriter{})
	got, rc, _ := serve(t, context.Background(), client, query("example.org.", dns.TypeA, dns.ClassINET), test.ErrorHandler())
	if rc != dns.RcodeServerFailure || got.rcode != dns.RcodeServerFailure || got.size != uint32(client.Len) {
		t.Errorf("entry %+v, rc %d; want SERVFAIL of %d bytes", got, rc, client.Len)
	}
}

func TestServeDNSPluginTracker(t *testing.T) {
	t.Parallel()
	inner := named{"inner", replyWith(dns.RcodeSuccess, 1, nil)}
	tests := []struct {
		name    string
		tracing bool
		next    plugin.Handler
		want    string
	}{
		{"next plugin writes", false, named{"myplugin", replyWith(dns.RcodeSuccess, 1, nil)}, "myplugin"},
		{"next plugin writes, tracing on", true, named{"myplugin", replyWith(dns.RcodeSuccess, 1, nil)}, "myplugin"},
		{"a plugin further down writes", false, named{"myplugin", func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			return plugin.NextOrFailure("myplugin", inner, ctx, w, r)
		}}, "inner"},
		{"a plugin writes with Write", false, named{"rawplugin", func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			m := new(dns.Msg)
			m.SetReply(r)
			b, _ := m.Pack()
			_, err := w.Write(b)
			return 0, err
		}}, "rawplugin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tracker := metrics.NewRecorder(&test.ResponseWriter{})
			s := &memSink{}
			q := &QueryLog{Next: tc.next, sink: s}
			ctx := context.Background()
			if tc.tracing {
				ctx = ot.ContextWithSpan(ctx, ot.NoopTracer{}.StartSpan("test"))
			}
			q.ServeDNS(ctx, tracker, query("example.org.", dns.TypeA, dns.ClassINET))
			if tracker.Plugin != tc.want {
				t.Errorf("the tracker below querylog was told %q, want %q", tracker.Plugin, tc.want)
			}
			if len(s.got()) != 1 {
				t.Errorf("%d entries logged", len(s.got()))
			}
		})
	}
}

func TestRecorderSetPlugin(t *testing.T) {
	t.Parallel()
	tracker := metrics.NewRecorder(&test.ResponseWriter{})
	r := &recorder{ResponseWriter: tracker}
	var _ plugin.PluginTracker = r
	r.SetPlugin("cache")
	if r.GetPlugin() != "cache" || tracker.GetPlugin() != "cache" {
		t.Errorf("recorder %q, tracker below %q; want cache", r.GetPlugin(), tracker.GetPlugin())
	}
	// Nothing below to tell: no panic.
	plain := &recorder{ResponseWriter: &test.ResponseWriter{}}
	plain.SetPlugin("cache")
	if plain.GetPlugin() != "cache" {
		t.Errorf("GetPlugin = %q", plain.GetPlugin())
	}
	if err := plain.WriteMsg(new(dns.Msg)); err != nil {
		t.Error(err)
	}
}

func TestServeDNSNilSink(t *testing.T) {
	t.Parallel()
	for _, next := range []plugin.Handler{
		replyWith(dns.RcodeSuccess, 1, nil),
		test.NextHandler(dns.RcodeServerFailure, nil),
		test.NextHandler(dns.RcodeSuccess, nil),
		nil,
	} {
		q := &QueryLog{Next: next}
		client := dnstest.NewRecorder(&test.ResponseWriter{})
		rc, _ := q.ServeDNS(context.Background(), client, withDO(query("example.org.", dns.TypeA, dns.ClassINET)))
		if next != nil {
			if want, _ := next.ServeDNS(context.Background(), &test.ResponseWriter{}, withDO(query("example.org.", dns.TypeA, dns.ClassINET))); rc != want {
				t.Errorf("rc %d, want %d", rc, want)
			}
		}
		if q.Ready() {
			t.Error("ready without a sink")
		}
	}
}

// A query without a question (FORMERR material) is logged without crashing.
func TestServeDNSNoQuestion(t *testing.T) {
	t.Parallel()
	r := new(dns.Msg)
	r.Id = 7
	got, _, _ := serve(t, context.Background(), &test.ResponseWriter{}, r, test.NextHandler(dns.RcodeFormatError, nil))
	if got.qname != "" || got.rcode != dns.RcodeFormatError {
		t.Errorf("entry %+v", got)
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sink sink
		want bool
	}{
		{nil, false},
		{&memSink{notReady: true}, false},
		{&memSink{}, true},
	} {
		q := &QueryLog{sink: tc.sink}
		if got := q.Ready(); got != tc.want {
			t.Errorf("Ready with %#v = %v, want %v", tc.sink, got, tc.want)
		}
	}
	if (&QueryLog{}).Name() != "querylog" {
		t.Error("Name")
	}
}

func TestTransport(t *testing.T) {
	for _, tc := range []struct {
		server string
		want   proto
		plain  bool
	}{
		{"", protoUDP, true},
		{"dns://.:53", protoUDP, true},
		{"dns://example.org.:1053", protoUDP, true},
		{"tls://.:853", protoDoT, false},
		{"https://.:443", protoDoH, false},
		{"https3://.:443", protoDoH3, false},
		{"quic://.:853", protoDoQ, false},
		{"grpc://.:443", protoGRPC, false},
		{"unix:///run/coredns.sock", protoUnix, false},
		{"unknown://.:1", protoUDP, true},
		{".:53", protoUDP, true},
	} {
		p, plain := transport(tc.server)
		if p != tc.want || plain != tc.plain {
			t.Errorf("transport(%q) = %s, %v; want %s, %v", tc.server, p, plain, tc.want, tc.plain)
		}
	}
	for p, name := range []string{"udp", "tcp", "dot", "doh", "doh3", "doq", "grpc", "unix"} {
		if got := proto(p).String(); got != name {
			t.Errorf("proto(%d) = %q, want %q", p, got, name)
		}
	}
}

// The per-server-block filter: ignored names and clients are not logged but counted;
// anonymize truncates the client address.
func TestServeDNSFilter(t *testing.T) {
	key := &[32]byte{1}
	tests := []struct {
		name       string
		f          filter
		w          dns.ResponseWriter
		qname      string
		logged     bool
		wantClient string
		wantKey    int
	}{
		{"no filter", filter{}, &test.ResponseWriter{}, "a.example.org.", true, "10.240.0.1", 0},
		{"ignored name", filter{ignoreNames: plugin.Zones{"example.org."}}, &test.ResponseWriter{}, "A.Example.ORG.", false, "", 0},
		{"ignored zone apex", filter{ignoreNames: plugin.Zones{"example.org."}}, &test.ResponseWriter{}, "example.org.", false, "", 0},
		{"other name", filter{ignoreNames: plugin.Zones{"example.org."}}, &test.ResponseWriter{}, "example.net.", true, "10.240.0.1", 0},
		{"ignored client", filter{ignoreClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, &test.ResponseWriter{}, "example.org.", false, "", 0},
		{"other client", filter{ignoreClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}, &test.ResponseWriter{}, "example.org.", true, "10.240.0.1", 0},
		{"anonymize v4", filter{anonV4: 24, anonV6: 56}, &test.ResponseWriter{}, "example.org.", true, "10.240.0.0", 0},
		{"anonymize v6", filter{anonV4: 24, anonV6: 56}, &test.ResponseWriter6{}, "example.org.", true, "fe80::", 0},
		{"anonymize v4 /16", filter{anonV4: 16, anonV6: 48}, &test.ResponseWriter{}, "example.org.", true, "10.240.0.0", 0},
		{"hash", filter{hash: true, key: key, keyIndex: 1}, &test.ResponseWriter{}, "example.org.", true, "10.240.0.1", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := "dns://.:5301"
			ignored := ignoredTotal.WithLabelValues(server)
			before := promtest.ToFloat64(ignored)
			s := &memSink{}
			q := &QueryLog{Next: replyWith(dns.RcodeSuccess, 1, nil), sink: s, filter: tc.f}
			q.ServeDNS(serverCtx(server), tc.w, query(tc.qname, dns.TypeA, dns.ClassINET))
			got := s.got()
			if !tc.logged {
				if len(got) != 0 {
					t.Fatalf("logged %d entries, want none", len(got))
				}
				if d := promtest.ToFloat64(ignored) - before; d != 1 {
					t.Errorf("ignored_total rose by %v, want 1", d)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("logged %d entries, want 1", len(got))
			}
			if e := s.readable(got[0]); e.client != netip.MustParseAddr(tc.wantClient) || e.key != tc.wantKey {
				t.Errorf("client %s, key %d; want %s, %d", e.client, e.key, tc.wantClient, tc.wantKey)
			}
			if d := promtest.ToFloat64(ignored) - before; d != 0 {
				t.Errorf("ignored_total rose by %v for a logged query", d)
			}
		})
	}
}

// answerData keeps A and AAAA addresses and CNAME targets, in order; extendedError the first
// EDE code of a reply, plus one.
func TestAnswerDataAndEDE(t *testing.T) {
	t.Parallel()
	m := new(dns.Msg)
	m.Answer = []dns.RR{test.CNAME("www.example. 60 IN CNAME web.example."), test.A("web.example. 60 IN A 192.0.2.1"),
		test.MX("web.example. 60 IN MX 10 mx.example."), test.AAAA("web.example. 60 IN AAAA 2001:db8::1")}
	if got, cut := answerData(m, defaultAnswersMax); got != "web.example. 192.0.2.1 2001:db8::1" || cut {
		t.Errorf("answerData = %q", got)
	}
	if got := extendedError(m); got != 0 {
		t.Errorf("extendedError without OPT = %d, want 0", got)
	}
	m.SetEdns0(1232, false)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus}, &dns.EDNS0_EDE{InfoCode: 15})
	if got := extendedError(m); got != dns.ExtendedErrorCodeDNSBogus+1 {
		t.Errorf("extendedError = %d, want %d", got, dns.ExtendedErrorCodeDNSBogus+1)
	}
}

// TestAnswerDataCut: answerData stays within its cap, cuts at a record boundary, and says how
// many records it left out with a final " +N" (or "+N" when not even the first fits).
func TestAnswerDataCut(t *testing.T) {
	t.Parallel()
	a := func(i int) dns.RR { return test.A(fmt.Sprintf("x. 60 IN A 192.0.2.%d", i)) }
	msg := func(rrs ...dns.RR) *dns.Msg { return &dns.Msg{Answer: rrs} }
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example." // 130 bytes
	tests := []struct {
		name  string
		m     *dns.Msg
		limit int
		want  string
		cut   bool
	}{
		{"fits exactly", msg(a(1), a(2)), len("192.0.2.1 192.0.2.2"), "192.0.2.1 192.0.2.2", false},
		{"last record one byte over", msg(a(1), a(2)), len("192.0.2.1 192.0.2.2") - 1, "192.0.2.1 +1", true},
		{"room kept for the marker", msg(a(1), a(2), a(3)), len("192.0.2.1 192.0.2.2 +1") - 1, "192.0.2.1 +2", true},
		{"marker after two", msg(a(1), a(2), a(3)), len("192.0.2.1 192.0.2.2 +1"), "192.0.2.1 192.0.2.2 +1", true},
		{"other types are neither kept nor counted", msg(a(1), test.MX("x. 60 IN MX 10 mx.example."), a(2), a(3)), 21, "192.0.2.1 +2", true},
		{"first record does not fit", msg(test.CNAME("x. 60 IN CNAME "+long), a(1)), 64, "+2", true},
		{"nothing kept", msg(test.MX("x. 60 IN MX 10 mx.example.")), 64, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := answerData(tc.m, tc.limit)
			if got != tc.want || cut != tc.cut {
				t.Errorf("answerData(limit %d) = %q, %v; want %q, %v", tc.limit, got, cut, tc.want, tc.cut)
			}
			if len(got) > tc.limit {
				t.Errorf("%d bytes, over the cap of %d", len(got), tc.limit)
			}
		})
	}

	// Marker widths: with 4,060 A records (the reply) the cut is within the cap for
	// every cap, each kept token is a whole address, and the marker counts the rest.
	var rrs []dns.RR
	for i := range 4060 {
		rrs = append(rrs, test.A(fmt.Sprintf("x. 60 IN A 198.51.%d.%d", i/250, i%250+1)))
	}
	for limit := minAnswersMax; limit <= 2000; limit += 7 {
		got, cut := answerData(msg(rrs...), limit)
		tokens := strings.Split(got, " ")
		kept := tokens[:len(tokens)-1]
		if !cut || len(got) > limit || len(got) < limit-len(" 198.51.100.100 +4060") {
			t.Fatalf("limit %d: %d bytes, cut %v: %q", limit, len(got), cut, got)
		}
		for i, tok := range kept {
			if want := rrs[i].(*dns.A).A.String(); tok != want {
				t.Fatalf("limit %d: token %d is %q, want %q (not a record boundary)", limit, i, tok, want)
			}
		}
		if marker := tokens[len(tokens)-1]; marker != fmt.Sprintf("+%d", 4060-len(kept)) {
			t.Fatalf("limit %d: marker %q after %d records", limit, marker, len(kept))
		}
	}
}

// TestAnswerDataNeverBuildsTheWholeText: a 65 KB reply of compressed CNAMEs to a 255-octet
// name, each target 1,004 bytes as text, is 4.6 MB of answer data in full; answerData formats
// only up to its cap, so it allocates a few KB, not megabytes.
func TestAnswerDataNeverBuildsTheWholeText(t *testing.T) {
	m := cnameFlood(t, "big.example.")
	full := 0
	for _, rr := range m.Answer {
		full += len(rr.(*dns.CNAME).Target) + 1
	}
	if full < 4_000_000 {
		t.Fatalf("the test reply has %d bytes of answer data, want over 4 MB", full)
	}
	for _, limit := range []int{defaultAnswersMax, 4096, maxAnswersMax} {
		var got string
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			got, _ = answerData(m, limit)
		}
		runtime.ReadMemStats(&after)
		allocated := (after.TotalAlloc - before.TotalAlloc) / 10
		kept := len(strings.Fields(got)) - 1
		if len(got) > limit || !strings.HasSuffix(got, fmt.Sprintf("+%d", len(m.Answer)-kept)) {
			t.Errorf("cap %d: answer data of %d bytes, ending %q: over the cap or without its marker", limit, len(got), got[max(0, len(got)-10):])
		}
		// The text, and at most the scratch buffer's growth to the cap.
		if allocated > uint64(4*limit) {
			t.Errorf("cap %d: answerData allocated %d bytes per call for a %d-byte text; want at most %d", limit, allocated, full, 4*limit)
		}
	}
}

// cnameFlood is a reply to qname as a hostile upstream sends it: as many CNAME records as fit
// in 65,535 bytes, each owned by qname and pointing at one 255-octet name of escaped bytes,
// both compressed.
func cnameFlood(t testing.TB, qname string) *dns.Msg {
	t.Helper()
	label := strings.Repeat(`\000`, 63)
	target := label + "." + label + "." + label + "." + strings.Repeat(`\000`, 61) + "."
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeA)
	m.Response, m.Compress = true, true
	for m.Len() < 65535-20 {
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
	}
	m.Answer = m.Answer[:len(m.Answer)-1]
	if l := m.Len(); l > 65535 || l < 60000 {
		t.Fatalf("flood is %d bytes", l)
	}
	return m
}

// TestServeDNSAnswersCapped: with answers on, the client gets the whole reply while the entry
// keeps at most answers MAXBYTES of it, cut at a record boundary with its marker, and
// truncated_total{field="answer_data"} counts the cut.
func TestServeDNSAnswersCapped(t *testing.T) {
	server := "dns://.:5302"
	tests := []struct {
		name    string
		records int
		limit   int
		cut     bool
	}{
		{"small reply", 3, defaultAnswersMax, false},
		{"4,060 A records, default cap", 4060, defaultAnswersMax, true},
		{"4,060 A records, cap 64", 4060, 64, true},
		{"4,060 A records, largest cap", 4060, maxAnswersMax, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cutTotal := truncatedTotal.WithLabelValues(server, "answer_data")
			before := promtest.ToFloat64(cutTotal)
			var sent *dns.Msg
			s := &memSink{}
			q := &QueryLog{Next: replyWith(dns.RcodeSuccess, tc.records, &sent), sink: s, filter: filter{answers: true}, opts: options{answersMax: tc.limit}}
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := q.ServeDNS(serverCtx(server), rec, query("a.example.", dns.TypeA, dns.ClassINET)); err != nil {
				t.Fatal(err)
			}
			if rec.Msg == nil || len(rec.Msg.Answer) != tc.records {
				t.Fatalf("the client got %v, want %d answers", rec.Msg, tc.records)
			}
			got := s.got()
			if len(got) != 1 || got[0].extra == nil {
				t.Fatalf("logged %d entries (%+v), want 1 with answer data", len(got), got)
			}
			data := got[0].extra.answers
			want, wantCut := answerData(sent, tc.limit)
			if data != want || wantCut != tc.cut || len(data) > tc.limit {
				t.Errorf("answer data %q (%d bytes, cut %v), want %q within %d", data, len(data), wantCut, want, tc.limit)
			}
			tokens := strings.Fields(data)
			if tc.cut && tokens[len(tokens)-1] != fmt.Sprintf("+%d", tc.records-len(tokens)+1) {
				t.Errorf("answer data ends %q, want the count of the %d records left out", tokens[len(tokens)-1], tc.records-len(tokens)+1)
			}
			if d := promtest.ToFloat64(cutTotal) - before; d != b2f(tc.cut) {
				t.Errorf("truncated_total{field=answer_data} rose by %v, want %v", d, b2f(tc.cut))
			}
		})
	}
}

// TestServeDNSMetadataCapped: a metadata value over 256 bytes is stored cut, at a UTF-8
// boundary, ending "...+N" (N bytes left out), and counted as truncated_total{field=metadata};
// a short value is stored as it is.
func TestServeDNSMetadataCapped(t *testing.T) {
	server := "dns://.:5303"
	long := strings.Repeat("é", 1000) // 2,000 bytes
	cutTotal := truncatedTotal.WithLabelValues(server, "metadata")
	before := promtest.ToFloat64(cutTotal)
	s := &memSink{}
	q := &QueryLog{Next: replyWith(dns.RcodeSuccess, 1, nil), sink: s, filter: filter{metadata: []string{"test/long", "test/short"}}, opts: defaults()}
	ctx := metadata.ContextWithMetadata(serverCtx(server))
	metadata.SetValueFunc(ctx, "test/long", func() string { return long })
	metadata.SetValueFunc(ctx, "test/short", func() string { return "default" })
	q.ServeDNS(ctx, dnstest.NewRecorder(&test.ResponseWriter{}), query("a.example.", dns.TypeA, dns.ClassINET))
	got := s.got()
	if len(got) != 1 || got[0].extra == nil {
		t.Fatalf("logged %+v, want one entry with metadata", got)
	}
	values := got[0].extra.metadata
	kept, marker, ok := strings.Cut(values[0], "...+")
	if !ok || len(values[0]) > metadataValueMax || !utf8.ValidString(kept) || !strings.HasPrefix(long, kept) ||
		marker != strconv.Itoa(len(long)-len(kept)) {
		t.Errorf("long value stored as %q (%d bytes), want a prefix of whole runes, then ...+bytes left out, within %d", values[0], len(values[0]), metadataValueMax)
	}
	if values[1] != "default" {
		t.Errorf("short value stored as %q", values[1])
	}
	if d := promtest.ToFloat64(cutTotal) - before; d != 1 {
		t.Errorf("truncated_total{field=metadata} rose by %v, want 1", d)
	}
}
