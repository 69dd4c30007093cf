package querylog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
	ot "github.com/opentracing/opentracing-go"
)

// benchEntries makes n realistic entries: a Zipf-like popular head of names and clients.
func benchEntries(n int) []entry {
	r := rand.New(rand.NewPCG(1, 2))
	names := rand.NewZipf(r, 1.1, 1, 50000)
	clients := rand.NewZipf(r, 1.2, 1, 2000)
	now := time.Now().UnixNano()
	out := make([]entry, n)
	for i := range out {
		c := clients.Uint64()
		out[i] = entry{
			start:    now + int64(i)*100_000,
			server:   "dns://:53",
			qname:    fmt.Sprintf("host%d.example%d.com.", names.Uint64(), i%7),
			client:   netip.AddrFrom4([4]byte{10, byte(c >> 16), byte(c >> 8), byte(c)}),
			duration: 150_000,
			size:     uint32(60 + i%200),
			qtype:    []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeA}[i%4],
			qclass:   dns.ClassINET,
			answers:  uint16(i % 3),
			proto:    protoUDP,
		}
	}
	return out
}

// benchStore opens a store with its checkpointer running, as a writer has them.
func benchStore(b *testing.B, name string) (*store, *checkpointer) {
	path := filepath.Join(b.TempDir(), name)
	s, err := openStore(path)
	if err != nil {
		b.Fatal(err)
	}
	ckpt, err := startCheckpointer(path)
	if err != nil {
		b.Fatal(err)
	}
	return s, ckpt
}

// BenchmarkStoreWrite measures the writer's ingest through the real store: rows/s per batch
// size, with the shipped schema (ts index only) and with extra random-key indexes for contrast.
//
//	go test -run '^$' -bench StoreWrite -benchtime 200000x ./plugin/querylog/
func BenchmarkStoreWrite(b *testing.B) {
	entries := benchEntries(100_000)
	for _, extra := range []string{"", "qname", "client_ip"} {
		for _, batch := range []int{100, 500, 1000, 2000, 5000} {
			name := fmt.Sprintf("index=ts%s/batch=%d", map[bool]string{true: "+" + extra}[extra != ""], batch)
			if extra != "" && batch != 2000 {
				continue
			}
			b.Run(name, func(b *testing.B) {
				s, ckpt := benchStore(b, "bench.db")
				defer s.close()
				defer ckpt.close()
				if extra != "" {
					if _, err := s.db.Exec(fmt.Sprintf("CREATE INDEX extra ON queries(%s)", extra)); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for done := 0; done < b.N; {
					n := min(batch, b.N-done)
					off := done % (len(entries) - batch)
					if err := s.write(entries[off : off+n]); err != nil {
						b.Fatal(err)
					}
					done += n
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}

// BenchmarkServeDNS compares the handler cost of querylog against calling the next plugin
// directly, with a sink that only counts, so it measures the DNS path alone.
//
//	go test -run '^$' -bench ServeDNS -benchmem ./plugin/querylog/
func BenchmarkServeDNS(b *testing.B) {
	answer := test.A("example.org. 60 IN A 192.0.2.1")
	reply := func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Compress = true
		m.Answer = []dns.RR{answer}
		return dns.RcodeSuccess, w.WriteMsg(m)
	}
	next := test.HandlerFunc(reply)
	req := new(dns.Msg)
	req.SetQuestion("example.org.", dns.TypeA)
	ctx := context.Background()

	b.Run("none", func(b *testing.B) {
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			plugin.NextOrFailure("x", next, ctx, w, req)
		}
	})
	b.Run("querylog", func(b *testing.B) {
		q := &QueryLog{Next: next, sink: &discardSink{}}
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			q.ServeDNS(ctx, w, req)
		}
	})
	b.Run("querylog+buffer", func(b *testing.B) {
		buf := newBuffer(options{bufferSize: 1 << 20, batchSize: 1 << 30, watermark: 99})
		q := &QueryLog{Next: next, sink: bufferSink{buf}}
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			q.ServeDNS(ctx, w, req)
			if size, _ := buf.fill(); size == 1<<20 {
				buf.remove(size, true, 0)
			}
		}
	})
	b.Run("log-plugin-recorder", func(b *testing.B) {
		// What plugin/log pays for its recorder, for reference.
		w := newBenchWriter()
		b.ReportAllocs()
		for b.Loop() {
			rrw := dnstest.NewRecorder(w)
			plugin.NextOrFailure("log", next, ctx, rrw, req)
		}
	})
}

// BenchmarkNextCall isolates how ServeDNS calls the next plugin, with the same recorder and the
// prometheus plugin's recorder (a PluginTracker, as in production) beneath it: through
// plugin.NextOrFailure, which wraps the recorder once more, or directly as ServeDNS does when
// there is no tracing span.
//
//	go test -run '^$' -bench NextCall -benchmem -count 6 ./plugin/querylog/
func BenchmarkNextCall(b *testing.B) {
	req := new(dns.Msg)
	req.SetQuestion("example.org.", dns.TypeA)
	reply := new(dns.Msg).SetReply(req)
	reply.Answer = []dns.RR{test.A("example.org. 60 IN A 192.0.2.1")}
	next := test.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		return dns.RcodeSuccess, w.WriteMsg(reply)
	})
	ctx := context.Background()
	w := metrics.NewRecorder(newBenchWriter())

	b.Run("NextOrFailure", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec := &recorder{ResponseWriter: w}
			plugin.NextOrFailure("querylog", next, ctx, rec, req)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec := &recorder{ResponseWriter: w}
			if ot.SpanFromContext(ctx) != nil {
				b.Fatal("unexpected span")
			}
			rec.next = next.Name()
			next.ServeDNS(ctx, rec, req)
		}
	})
	if w.Plugin != "handlerfunc" {
		b.Fatalf("tracker below saw plugin %q, want handlerfunc", w.Plugin)
	}
}

// benchWriter returns fixed addresses, as miekg/dns's writers do (test.ResponseWriter parses
// a new one on every call, which would dominate the measurement).
type benchWriter struct {
	test.ResponseWriter
	remote, local net.Addr
}

func newBenchWriter() *benchWriter {
	return &benchWriter{
		remote: &net.UDPAddr{IP: net.IPv4(10, 240, 0, 1), Port: 40212},
		local:  &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
	}
}

func (w *benchWriter) RemoteAddr() net.Addr { return w.remote }
func (w *benchWriter) LocalAddr() net.Addr  { return w.local }

type discardSink struct{ n int }

func (d *discardSink) log(entry)   { d.n++ }
func (d *discardSink) ready() bool { return true }

type bufferSink struct{ b *buffer }

func (s bufferSink) log(e entry) { s.b.enqueue(e) }
func (bufferSink) ready() bool   { return true }

// BenchmarkBufferMemory fills a default-sized buffer and reports the heap it holds per entry,
// query name strings included.
//
//	go test -run '^$' -bench BufferMemory -benchtime 1x ./plugin/querylog/
func BenchmarkBufferMemory(b *testing.B) {
	const capacity = 50000
	for b.Loop() {
		entries := benchEntries(capacity)
		wire := make([][]byte, capacity)
		for i := range entries {
			wire[i] = []byte(entries[i].qname)
			entries[i].qname = ""
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		buf := newBuffer(options{bufferSize: capacity, batchSize: capacity, watermark: 99})
		for i, e := range entries {
			e.qname = string(wire[i]) // as off the wire: each query owns its name string
			buf.enqueue(e)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(held/capacity, "B/entry")
		b.ReportMetric(held/(1<<20), "MiB/50k")
		runtime.KeepAlive(buf)
		runtime.KeepAlive(wire)
		runtime.KeepAlive(entries)
	}
}

// BenchmarkPrune deletes a million expired rows the way retention does and reports the longest
// single chunk: the most a flush can be delayed while pruning runs.
//
//	go test -run '^$' -bench Prune -benchtime 1x ./plugin/querylog/
func BenchmarkPrune(b *testing.B) {
	const rows = 1_000_000
	entries := benchEntries(100_000)
	old := time.Now().Add(-30 * 24 * time.Hour).UnixNano()
	for _, chunk := range []int{500, 1000, 2000} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) { benchPrune(b, chunk, rows, entries, old) })
	}
}

func benchPrune(b *testing.B, chunk, rows int, entries []entry, old int64) {
	for b.Loop() {
		b.StopTimer()
		s, ckpt := benchStore(b, "prune.db")
		for i := 0; i < rows; i += len(entries) {
			for j := range entries {
				entries[j].start = old + int64(i+j)*1e6
			}
			if err := s.write(entries); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		var worst, total time.Duration
		chunks := 0
		cutoff := time.Now().Add(-7 * 24 * time.Hour).UnixMilli()
		for {
			start := time.Now()
			n, err := s.pruneOlder(cutoff, chunk)
			took := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			worst, total, chunks = max(worst, took), total+took, chunks+1
			if n < int64(chunk) {
				break
			}
		}
		b.ReportMetric(float64(worst.Microseconds())/1000, "worst-chunk-ms")
		b.ReportMetric(float64(total.Microseconds())/1000/float64(chunks), "mean-chunk-ms")
		b.ReportMetric(float64(total.Milliseconds()), "total-ms")
		ckpt.close()
		s.close()
	}
}
