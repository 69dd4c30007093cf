package querylog

// Fuzz targets: the Corefile parser, and entry construction through SQLite and back.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./plugin/querylog/
//	go test -run '^$' -fuzz FuzzEntry -fuzztime 60s ./plugin/querylog/
//
// Without -fuzz, `go test` runs the seeds below (and any saved in testdata/fuzz/).

import (
	"errors"
	"fmt"
	"github.com/coredns/coredns/plugin/metadata"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

// optionNames are the words an error message may name instead of "querylog".
var optionNames = []string{"buffer_size", "batch_size", "flush_interval", "adaptive", "watermark",
	"on_full", "shutdown_timeout", "retention", "max_size", "min_free", "anonymize", "ignore",
	"ignore_clients", "rollup_retention", "rollup_limit", "metadata", "answers", "buffer_bytes", "unknown property", "PATH"}

// FuzzParse feeds arbitrary text after the directive name to the Corefile parser: it must never
// panic, and every error must say what it is about: "querylog" or an option name. Errors about
// an existing file at PATH may instead name that file (setup prefixes every parse error with
// "plugin/querylog: "), and plugin.ErrOnce is CoreDNS's shared sentinel, prefixed the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "q.db", "q.db extra", "{\n}", "q.db {\n buffer_size 10000\n}",
		"{\n buffer_size 9999\n}", "{\n buffer_size 200001\n}", "{\n buffer_size x\n}", "{\n buffer_size\n}",
		"{\n batch_size 0\n}", "{\n buffer_size 10000\n batch_size 20000\n}",
		"{\n flush_interval 0s\n}", "{\n flush_interval 2h\n}", "{\n flush_interval 10s\n}",
		"{\n adaptive\n}", "{\n adaptive off\n flush_interval 1h\n}", "{\n adaptive 5s 1s\n}", "{\n adaptive 1s\n}",
		"{\n watermark 100%\n}", "{\n watermark 0\n}", "{\n on_full block\n}", "{\n on_full block 6s\n}",
		"{\n on_full drop\n}", "{\n on_full wait 1s\n}", "{\n shutdown_timeout -1s\n}",
		"{\n retention 30d\n}", "{\n retention 1s\n}", "{\n retention 999999999999d\n}", "{\n max_size 1KB\n}",
		"{\n max_size 1EB\n}", "{\n min_free 100%\n}", "{\n min_free -1\n}", "{\n anonymize 33\n}",
		"{\n anonymize hash a b\n}", "{\n anonymize 24 129\n}", "{\n ignore\n}", "{\n ignore_clients 300.1.1.1/8\n}",
		"{\n bogus 1\n}", "{\n{\n}", "{", "}", "{\n buffer_size 10000", "q?.db", "q#.db", "/", ".", "/proc/self",
		"nonexistent-dir/q.db", "q.db\nquerylog other.db", "\"\"", "{\n \"\" \n}", "{\n buffer_size 1e4\n}",
		"{\n flush_interval 9223372036854775807ns\n}", "{\n max_size 18446744073709551615\n}",
		"{\n min_free nan%\n}", "{\n min_free NaN%\n}", "{\n min_free inf%\n}", "{\n min_free -Inf%\n}",
		"{\n min_free 1e-300%\n}", "{\n min_free 0x1p-2%\n}", "{\n min_free 99.999%\n}", "{\n min_free NaN\n}",
		"{\n max_size NaNGB\n}", "{\n max_size +InfMB\n}", "{\n retention 900000h\n}", "{\n retention 36500d\n}",
		"{\n watermark NaN%\n}", "{\n on_full block NaNs\n}", "{\n anonymize 24 -0\n}",
		"{\n rollup_limit 9\n}", "{\n rollup_limit 100001\n}", "{\n rollup_retention 0\n}", "{\n rollup_retention 401 days\n}",
		"{\n metadata\n}", "{\n metadata a/b c\n}", "{\n metadata kubernetes/client-namespace\n answers\n}", "{\n answers x\n}",
		"{\n answers 63\n}", "{\n answers 65537\n}", "{\n buffer_bytes 1,5GB\n}", "{\n buffer_bytes 1KB\n}", "{\n buffer_bytes 2 GB\n}",
		"{\n bufer_size 1\n}", "{\n watermark 50\n watermark 60\n}", "{\n flush_interval 5\n}",
	} {
		f.Add(s)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, input string) {
		// parse probes the database's folder by creating a file there: keep it in root.
		for _, tok := range strings.Fields(input) {
			if strings.HasPrefix(strings.Trim(tok, `"`), "/") || strings.Contains(tok, "..") {
				return
			}
		}
		c := caddy.NewTestController("dns", "querylog "+input)
		dnsserver.GetConfig(c).Root = root
		o, flt, err := parse(c)
		if err == nil {
			if err := checkRanges(o, flt); err != nil {
				t.Errorf("accepted %q with a value out of range: %v\n%+v", input, err, o)
			}
			return
		}
		msg := err.Error()
		if errors.Is(err, plugin.ErrOnce) || strings.Contains(msg, "querylog") {
			return
		}
		for _, name := range optionNames {
			if strings.Contains(msg, name) {
				return
			}
		}
		if strings.Contains(msg, "database ") {
			return // about the file at PATH, which it names
		}
		t.Errorf("error for %q names neither querylog nor an option: %s", input, msg)
	})
}

// checkRanges checks an accepted configuration against the ranges the README documents,
// independently of how parse enforces them; NaN fails every comparison, so it fails here too.
func checkRanges(o options, f filter) error {
	in := func(v, lo, hi float64) bool { return v >= lo && v <= hi }
	dur := func(d, lo, hi time.Duration) bool { return d >= lo && d <= hi }
	switch {
	case !filepath.IsAbs(o.path):
		return fmt.Errorf("path %q is not absolute", o.path)
	case !in(float64(o.bufferSize), minBufferSize, maxBufferSize):
		return fmt.Errorf("buffer_size %d", o.bufferSize)
	case !in(float64(o.batchSize), 1, min(maxBatchSize, float64(o.bufferSize))):
		return fmt.Errorf("batch_size %d (buffer_size %d)", o.batchSize, o.bufferSize)
	case !dur(o.flushInterval, 1, maxDuration), !dur(o.minInterval, 1, maxDuration), !dur(o.maxInterval, o.minInterval, maxDuration):
		return fmt.Errorf("flush_interval %s, adaptive %s %s", o.flushInterval, o.minInterval, o.maxInterval)
	case o.adaptive && !dur(o.flushInterval, o.minInterval, o.maxInterval):
		return fmt.Errorf("flush_interval %s outside adaptive %s %s", o.flushInterval, o.minInterval, o.maxInterval)
	case !in(float64(o.watermark), 1, 99):
		return fmt.Errorf("watermark %d", o.watermark)
	case !dur(o.blockFor, 0, maxBlock):
		return fmt.Errorf("on_full block %s", o.blockFor)
	case !dur(o.shutdownTimeout, 1, maxShutdownWait):
		return fmt.Errorf("shutdown_timeout %s", o.shutdownTimeout)
	case o.retention != 0 && !dur(o.retention, time.Minute, maxRetention):
		return fmt.Errorf("retention %s", o.retention)
	case o.rollupRetention != 0 && !dur(o.rollupRetention, time.Minute, maxRetention):
		return fmt.Errorf("rollup_retention %s", o.rollupRetention)
	case o.rollupLimit != 0 && !in(float64(o.rollupLimit), minRollupLimit, maxRollupLimit):
		return fmt.Errorf("rollup_limit %d", o.rollupLimit)
	case !in(float64(o.bufferBytes), minBufferBytes, maxBufferBytes):
		return fmt.Errorf("buffer_bytes %d", o.bufferBytes)
	case !in(float64(o.answersMax), minAnswersMax, maxAnswersMax):
		return fmt.Errorf("answers %d", o.answersMax)
	case o.maxSize != 0 && !in(float64(o.maxSize), 1<<20, 1<<50):
		return fmt.Errorf("max_size %d", o.maxSize)
	case o.minFreeBytes != 0 && !in(float64(o.minFreeBytes), 1, 1<<50):
		return fmt.Errorf("min_free %d bytes", o.minFreeBytes)
	case o.minFreePercent != 0 && !in(o.minFreePercent, 0.01, 99.99):
		return fmt.Errorf("min_free %v%%", o.minFreePercent)
	case o.minFreeBytes != 0 && o.minFreePercent != 0:
		return fmt.Errorf("min_free both %d bytes and %v%%", o.minFreeBytes, o.minFreePercent)
	case !in(float64(f.anonV4), 0, 32), !in(float64(f.anonV6), 0, 128):
		return fmt.Errorf("anonymize %d %d", f.anonV4, f.anonV6)
	case f.hash && !filepath.IsAbs(f.keyFile):
		return fmt.Errorf("key file %q is not absolute", f.keyFile)
	}
	for _, l := range f.metadata {
		if !metadata.IsLabel(l) {
			return fmt.Errorf("metadata label %q", l)
		}
	}
	return nil
}

// fakeWriter is a ResponseWriter that records nothing and has a given remote address.
type fakeWriter struct{ remote net.Addr }

func (w *fakeWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error   { _, err := m.Pack(); return err }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

// seedMsgs are request messages for FuzzEntry's seeds.
func seedMsgs() [][]byte {
	var out [][]byte
	add := func(m *dns.Msg) {
		if b, err := m.Pack(); err == nil {
			out = append(out, b)
		}
	}
	add(query("example.org.", dns.TypeA, dns.ClassINET))
	add(query(`a'); DROP TABLE queries;--.example.`, dns.TypeA, dns.ClassINET))
	add(query(`"; DELETE FROM queries; --.example.`, dns.TypeTXT, dns.ClassINET))
	add(query(`\000\001\255\.\\.MiXeD.example.`, 65280, 1000))
	add(query(strings.Repeat(`\255`, 63)+"."+strings.Repeat(`\000`, 63)+"."+strings.Repeat("a", 63)+"."+strings.Repeat("b", 61)+".", dns.TypeANY, dns.ClassANY))
	add(query(".", dns.TypeNS, dns.ClassCHAOS))
	e := query("edns.example.", dns.TypeAAAA, dns.ClassINET)
	e.SetEdns0(1, true)
	add(e)
	e = query("edns.example.", dns.TypeAAAA, dns.ClassINET)
	e.SetEdns0(65535, false)
	e.Rcode = 0xfff
	add(e)
	add(new(dns.Msg)) // no question
	m := query("one.example.", dns.TypeA, dns.ClassINET)
	m.Question = append(m.Question, dns.Question{Name: "two.example.", Qtype: dns.TypeMX, Qclass: dns.ClassINET})
	add(m)
	m = query("answers.example.", dns.TypeA, dns.ClassINET)
	for i := range 20 {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "answers.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))})
	}
	add(m)
	return out
}

// FuzzEntry builds an entry the way ServeDNS does, from an arbitrary wire message (as request
// and reply, or with a synthesized error reply), client address, server name and times. It
// must not panic; the entry must describe the message; and every value must come back out of
// SQLite unchanged.
func FuzzEntry(f *testing.F) {
	servers := []string{"dns://:53", "dns://127.0.0.1:1053", "tls://:853", "https://[::1]:443", "quic://:853",
		"grpc://:443", "https3://:443", "", "no-scheme", `dns://'); DROP TABLE queries;--`, "\x00\xff\xfe", "dns://\u00e9t\u00e9:53"}
	clients := [][]byte{{192, 0, 2, 1}, {0, 0, 0, 0}, netip.MustParseAddr("2001:db8::1").AsSlice(),
		netip.MustParseAddr("::ffff:192.0.2.9").AsSlice(), {255, 255, 255, 255}, nil}
	for i, msg := range seedMsgs() {
		f.Add(msg, servers[i%len(servers)], clients[i%len(clients)], uint16(i*1000), i%2 == 0, i%3 != 0, uint16(i*7), time.Now().UnixNano(), int64(i)*1e6)
	}
	f.Add([]byte{}, "", []byte{}, uint16(0), false, false, uint16(0), int64(0), int64(0))
	f.Add(seedMsgs()[0], "dns://:53", []byte{10, 0, 0, 1}, uint16(53), false, true, uint16(0), int64(-1), int64(-1))
	f.Add(seedMsgs()[0], "dns://:53", []byte{10, 0, 0, 1}, uint16(53), true, false, uint16(4095), int64(1<<62), int64(1<<62))

	st, err := openStore(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	st.use(&testLabels, &keyring{})
	f.Cleanup(func() { st.close() })

	f.Fuzz(func(t *testing.T, wire []byte, server string, ip []byte, port uint16, tcp, write bool, rc uint16, startNs, tookNs int64) {
		r := new(dns.Msg)
		if err := r.Unpack(wire); err != nil {
			return // miekg/dns drops what it cannot unpack before any plugin sees it
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			addr = netip.IPv4Unspecified()
		}
		w := &fakeWriter{remote: &net.UDPAddr{IP: addr.AsSlice(), Port: int(port)}}
		if tcp {
			w.remote = &net.TCPAddr{IP: addr.AsSlice(), Port: int(port)}
		}
		rec := &recorder{ResponseWriter: w}
		if write {
			rec.WriteMsg(r)
		} else {
			rec.recordSynthesized(w, r, int(rc))
		}
		e := newEntry(server, w, r, rec, time.Unix(0, startNs))
		e.duration = micros(tookNs) // newEntry measures it from start; any value must be stored faithfully
		e.server = uint8(testLabels.id(labelServer, server))

		// The entry describes the message.
		if e.addr() != addr.Unmap() {
			t.Errorf("client %v, want %v", e.addr(), addr.Unmap())
		}
		if len(r.Question) > 0 {
			q := r.Question[0]
			if e.qname != strings.ToLower(q.Name) || e.qtype != q.Qtype || e.qclass != q.Qclass {
				t.Errorf("question %q %d %d, entry %q %d %d", q.Name, q.Qtype, q.Qclass, e.qname, e.qtype, e.qclass)
			}
		} else if e.qname != "" || e.qtype != 0 || e.qclass != 0 {
			t.Errorf("no question, but the entry has %q %d %d", e.qname, e.qtype, e.qclass)
		}
		if opt := r.IsEdns0(); (e.flags&flagDO != 0) != (opt != nil && opt.Do()) {
			t.Errorf("flags %b, OPT %v", e.flags, opt)
		}
		if write && (e.rcode != uint16(r.Rcode) || int(e.answers) != min(len(r.Answer), 0xffff) || int(e.size) != r.Len()) {
			t.Errorf("reply rcode %d answers %d size %d, entry %d %d %d", r.Rcode, len(r.Answer), r.Len(), e.rcode, e.answers, e.size)
		}
		if !write && e.rcode != rc {
			t.Errorf("synthesized rcode %d, entry %d", rc, e.rcode)
		}
		wantProto := "udp"
		if p, plain := transport(server); !plain {
			wantProto = p.String()
		} else if tcp {
			wantProto = "tcp"
		}
		if e.proto().String() != wantProto {
			t.Errorf("proto %s for %q tcp=%v, want %s", e.proto(), server, tcp, wantProto)
		}

		// It round-trips through SQLite.
		if err := st.write([]entry{e}); err != nil {
			t.Fatalf("writing %+v: %v", e, err)
		}
		got := readRows(t, st.db, "ORDER BY id DESC LIMIT 1")[0]
		if want := rowOf(&testLabels, e); got != want {
			t.Errorf("read back\n%+v\nwant\n%+v", got, want)
		}
	})
}
