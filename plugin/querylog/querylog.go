// Package querylog records every DNS response into a SQLite database, through a bounded
// buffer and an adaptive batch writer, without blocking the DNS path.
package querylog

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/metrics"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
	ot "github.com/opentracing/opentracing-go"
)

var log = clog.NewWithPlugin("querylog")

// sink receives entries; the writer is the real one, tests use fakes.
type sink interface {
	log(entry)
	ready() bool
	labelTable() *labels // what the entries' label numbers refer to
}

// QueryLog is the plugin handler.
type QueryLog struct {
	Next   plugin.Handler
	opts   options
	filter filter
	sink   sink    // set in OnStartup, before any query is served
	writer *writer // the writer behind sink, which the generation releases (lifecycle.go)

	servers, plugins labelMemo // the label numbers this handler uses
	pods             podExtras // the entries' extras of client pods (cluster.go)
	cacheNames       []string  // with a cache probe, who answers from cache (cluster.go); set in OnStartup
	noMetadata       bool      // the server block has no metadata plugin (see valueFunc); set in OnStartup
}

// Name implements plugin.Handler.
func (q *QueryLog) Name() string { return "querylog" }

// Ready implements the ready plugin's Readiness: ready once the database is open for writing.
func (q *QueryLog) Ready() bool { return q.sink != nil && q.sink.ready() }

// ServeDNS implements plugin.Handler. The reply goes to the client first; the entry is queued
// afterwards and never waits (unless on_full block).
func (q *QueryLog) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, keepData: q.filter.answers, dataMax: q.opts.answersMax}
	below := ctx // the context the chain below gets
	if q.cacheNames != nil {
		// In the recorder: no allocation of its own. Only the chain below needs it: querylog's
		// own lookups (metadata, server) find the same values one layer sooner in ctx.
		rec.pc.Context = ctx
		below, rec.probe = &rec.pc, &rec.pc
	}
	if q.sink != nil {
		// A panic below: CoreDNS's server recovers it and answers SERVFAIL (unless the debug
		// plugin is on, and the process dies). Log that answer, or the reply written before the
		// panic, so answered = rows + dropped still holds, and let the panic go on. Here the
		// entry is queued just before the server writes, not after.
		defer func() {
			if p := recover(); p != nil {
				q.record(ctx, w, r, rec, start, dns.RcodeServerFailure)
				panic(p)
			}
		}()
	}
	var rc int
	var err error
	if q.Next == nil || ot.SpanFromContext(ctx) != nil {
		rc, err = plugin.NextOrFailure(q.Name(), q.Next, below, rec, r)
	} else {
		// What NextOrFailure does without tracing, minus its writer wrapper: the recorder tells
		// a PluginTracker below who answered, keeping a name reported from further down, which
		// the wrapper would overwrite. BenchmarkNextCall -count 6: 1 alloc (32 B), ~37 ns less.
		rec.next = q.Next.Name()
		rc, err = q.Next.ServeDNS(below, rec, r)
	}
	if q.sink != nil {
		q.record(ctx, w, r, rec, start, rc)
	}
	return rc, err
}

// record logs the reply to r: the one the chain wrote, or else the error reply the server
// writes for rc (see dnsserver's errorFunc).
func (q *QueryLog) record(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, rec *recorder, start time.Time, rc int) {
	if !rec.written {
		if plugin.ClientWrite(rc) {
			return // nothing was sent to the client (an acl drop, for example)
		}
		rec.recordSynthesized(w, r, rc)
	}
	server := metrics.WithServer(ctx)
	e := newEntry(server, w, r, rec, start)
	if q.filter.ignored(&e) {
		ignoredTotal.WithLabelValues(server).Inc()
		return
	}
	q.filter.anonymize(&e)
	q.label(ctx, &e, server, rec)
	q.sink.log(e)
}

// upstreamLabel is the metadata forward sets to the upstream it used (needs the metadata
// plugin).
const upstreamLabel = "forward/upstream"

// label fills in the entry's labels and opt-in fields from the request's context and what the
// recorder saw.
func (q *QueryLog) label(ctx context.Context, e *entry, server string, rec *recorder) {
	l := q.sink.labelTable()
	e.server = uint8(q.servers.id(l, labelServer, server))
	answered := cmp.Or(rec.plugin, rec.next)
	if f := q.valueFunc(ctx, upstreamLabel); f != nil {
		if up := f(); up != "" {
			// Only forward sets it, and only when it was asked, so it answered (under a cache,
			// the recorder would say cache for a miss too: only PluginTrackers pass names up).
			e.upstream = l.id(labelUpstream, up)
			answered = "forward"
		}
	}
	switch e.cache = rec.cacheStatus(answered, q.cacheNames); {
	case e.cache == cacheHit:
		answered = "cache" // a plugin in front of it may have hidden the name (loadbalance)
	case e.cache == cacheMiss && rec.below != "" && e.upstream == 0:
		answered = rec.below
	}
	e.plugin = uint8(q.plugins.id(l, labelPlugin, answered))
	namespace, pod := q.podOf(ctx)
	if len(q.filter.metadata) == 0 && !q.filter.answers {
		if namespace != "" || pod != "" {
			e.extra = q.pods.get(namespace, pod)
		}
		return
	}
	x := &extra{answers: rec.answerData, namespace: namespace, pod: pod}
	if rec.dataCut {
		truncatedTotal.WithLabelValues(server, "answer_data").Inc()
	}
	if len(q.filter.metadata) > 0 {
		x.metadataLabels = q.filter.metadata
		x.metadata = make([]string, len(q.filter.metadata))
		for i, label := range q.filter.metadata {
			if f := q.valueFunc(ctx, label); f != nil {
				v, cut := cutValue(f(), metadataValueMax)
				if cut {
					truncatedTotal.WithLabelValues(server, "metadata").Inc()
				}
				x.metadata[i] = v
			}
		}
	}
	e.extra = x
}

// valueFunc is metadata.ValueFunc(ctx, label), skipped in a block without the metadata plugin:
// its queries carry no metadata, and finding that out walks the whole context.
func (q *QueryLog) valueFunc(ctx context.Context, label string) metadata.Func {
	if q.noMetadata {
		return nil
	}
	return metadata.ValueFunc(ctx, label)
}

func newEntry(server string, w dns.ResponseWriter, r *dns.Msg, rec *recorder, start time.Time) entry {
	remote := w.RemoteAddr()
	e := entry{
		start:    start.UnixNano(),
		duration: micros(int64(time.Since(start))),
		size:     rec.size,
		rcode:    rec.rcode,
		answers:  rec.answers,
		ede:      rec.ede,
		flags:    rec.flags,
	}
	e.setAddr(clientAddr(remote))
	e.port = clientPort(remote)
	e.id = r.Id
	p, plain := transport(server)
	if plain {
		if _, tcp := remote.(*net.TCPAddr); tcp {
			p = protoTCP
		}
	}
	e.setProto(p)
	if len(r.Question) > 0 {
		q := r.Question[0]
		e.qname = strings.ToLower(q.Name)
		e.qtype, e.qclass = q.Qtype, q.Qclass
	}
	if opt := r.IsEdns0(); opt != nil && opt.Do() {
		e.flags |= flagDO
	}
	return e
}

// clientAddr converts the remote address without going through text where possible. It is
// the client as ignore_clients, anonymize and the hash see it, and as stored: an IPv4 client
// on a dual-stack socket (::ffff:192.0.2.1) is 192.0.2.1, and a link-local client has no zone
// (fe80::1%eth0 is fe80::1), since the zone names the interface, not the client, and would
// keep fe80::/10 from matching and change the pseudonym.
func clientAddr(a net.Addr) netip.Addr {
	var addr netip.Addr
	switch a := a.(type) {
	case *net.UDPAddr:
		addr = a.AddrPort().Addr()
	case *net.TCPAddr:
		addr = a.AddrPort().Addr()
	case nil:
		return netip.Addr{}
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			addr = ap.Addr()
		} else {
			addr, _ = netip.ParseAddr(a.String())
		}
	}
	return addr // entry.setAddr unmaps it and drops its zone
}

// recorder wraps the ResponseWriter to capture what was sent. Like CoreDNS's own writer
// wrapper it keeps coredns_dns_responses_total{plugin} right: it tells a PluginTracker below
// which plugin wrote the reply (the next plugin, or a more precise name reported from further
// down the chain).
type recorder struct {
	dns.ResponseWriter
	written    bool
	rcode      uint16
	answers    uint16
	ede        uint16 // Extended DNS Error INFO-CODE + 1; 0: none
	flags      flags  // the reply's header bits
	size       uint32
	next       string // name of the next plugin; empty when NextOrFailure wrapped it
	plugin     string // name reported through SetPlugin from below
	keepData   bool   // record answerData (the answers option)
	dataMax    int    // its cap in bytes (answers MAXBYTES)
	answerData string
	dataCut    bool // answerData was cut to dataMax

	pc        probeContext  // the context below querylog when a cache is probed
	probe     *probeContext // &pc when a cache is probed, nil otherwise (cluster.go)
	cacheMiss bool          // the reply came up through the probe
	below     string        // the plugin below the cache that wrote it, if said
}

// probed notes, as a reply is written, whether it is coming up through the cache probe.
func (r *recorder) probed() {
	if miss, below := r.probe.passing(); miss {
		r.cacheMiss, r.below = true, below
	}
}

// track passes the answering plugin's name to a tracker below, as plugin.NextOrFailure's
// wrapper would have.
func (r *recorder) track() {
	if r.next == "" {
		return
	}
	if t, ok := r.ResponseWriter.(plugin.PluginTracker); ok {
		t.SetPlugin(cmp.Or(r.plugin, r.next))
	}
}

func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.track()
	r.probed()
	err := r.ResponseWriter.WriteMsg(m)
	// Measured after the write: the server's ScrubWriter below has by then added the OPT
	// record and truncated m in place, so this is the size that went on the wire.
	r.written = true
	r.rcode = uint16(m.Rcode)
	r.answers = uint16(min(len(m.Answer), 0xffff))
	r.size += uint32(wireLen(m)) // a sum: AXFR writes several messages
	r.flags = headerFlags(m.Authoritative, m.Truncated, m.RecursionDesired, m.RecursionAvailable, m.AuthenticatedData, m.CheckingDisabled)
	r.ede = extendedError(m)
	if r.keepData {
		r.answerData, r.dataCut = answerData(m, r.dataMax)
	}
	return err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.track()
	r.probed()
	n, err := r.ResponseWriter.Write(b)
	if err == nil && len(b) >= 12 {
		r.written = true
		r.rcode = uint16(b[3] & 0x0f)
		r.answers = uint16(b[6])<<8 | uint16(b[7])
		r.size += uint32(n)
		r.flags = headerFlags(b[2]&0x04 != 0, b[2]&0x02 != 0, b[2]&0x01 != 0, b[3]&0x80 != 0, b[3]&0x20 != 0, b[3]&0x10 != 0)
	}
	return n, err
}

// SetPlugin implements plugin.PluginTracker.
func (r *recorder) SetPlugin(name string) {
	r.plugin = name
	if t, ok := r.ResponseWriter.(plugin.PluginTracker); ok {
		t.SetPlugin(name)
	}
}

// GetPlugin implements plugin.PluginTracker.
func (r *recorder) GetPlugin() string { return r.plugin }

// headerFlags packs a reply's header bits in the order of flags.
func headerFlags(aa, tc, rd, ra, ad, cd bool) flags {
	var f flags
	for i, set := range [...]bool{aa, tc, rd, ra, ad, cd} {
		if set {
			f |= 1 << i
		}
	}
	return f
}

// extendedError returns the first Extended DNS Error INFO-CODE of a reply, plus one; 0 if it
// has none.
func extendedError(m *dns.Msg) uint16 {
	opt := m.IsEdns0()
	if opt == nil {
		return 0
	}
	for _, o := range opt.Option {
		if ede, ok := o.(*dns.EDNS0_EDE); ok {
			return min(ede.InfoCode, 0xfffe) + 1
		}
	}
	return 0
}

// answerData is the answers option's field: the addresses of A and AAAA records and the
// targets of CNAME records in the answer section, space separated, in order, in at most max
// bytes. When they do not all fit, the text is cut at a record boundary and ends with the
// marker " +N" (N: records left out; "+N" alone if not even the first fits), and cut is true.
// Records past the cut are never formatted, so a reply of thousands of long CNAME targets costs
// no more than max bytes here. No record text can be mistaken for the marker: addresses hold no
// '+', and targets are fully qualified names, which end in a dot.
func answerData(m *dns.Msg, limit int) (data string, cut bool) {
	total := 0
	for _, rr := range m.Answer {
		if answerRecord(rr) {
			total++
		}
	}
	if total == 0 {
		return "", false
	}
	var scratch [defaultAnswersMax]byte // the default cap needs no allocation but the string's
	b := scratch[:0]
	done := 0
	for _, rr := range m.Answer {
		if !answerRecord(rr) {
			continue
		}
		var s string
		switch rr := rr.(type) {
		case *dns.A:
			s = rr.A.String()
		case *dns.AAAA:
			s = rr.AAAA.String()
		case *dns.CNAME:
			s = rr.Target
		}
		need := len(s)
		if len(b) > 0 {
			need++
		}
		// After a record that is not the last there must be room for the marker of the rest.
		if left := total - done - 1; left > 0 {
			need += markerLen(left)
		}
		if len(b)+need > limit {
			return string(appendMarker(b, total-done)), true
		}
		if len(b)+need > cap(b) {
			// Past the scratch buffer: grow once to the cap rather than by doubling.
			b = append(make([]byte, 0, limit), b...)
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
		done++
	}
	return string(b), false
}

// answerRecord reports whether answerData keeps rr.
func answerRecord(rr dns.RR) bool {
	switch rr.(type) {
	case *dns.A, *dns.AAAA, *dns.CNAME:
		return true
	}
	return false
}

// markerLen is the length of the marker for n records left out, with its leading space.
func markerLen(n int) int { return len(" +") + len(strconv.Itoa(n)) }

func appendMarker(b []byte, n int) []byte {
	if len(b) > 0 {
		b = append(b, ' ')
	}
	b = append(b, '+')
	return strconv.AppendInt(b, int64(n), 10)
}

// cutValue bounds a metadata value to max bytes: a longer one is cut at a UTF-8 boundary and
// ends with "...+N" (N: bytes left out). The result is a copy, so that the entry does not keep
// the whole of a long value alive.
func cutValue(v string, limit int) (string, bool) {
	if len(v) <= limit {
		return v, false
	}
	// The marker for at most len(v) bytes left out fits in what is not kept.
	keep := max(limit-len("...+")-len(strconv.Itoa(len(v))), 0)
	for keep > 0 && !utf8.RuneStart(v[keep]) {
		keep--
	}
	return v[:keep] + "...+" + strconv.Itoa(len(v)-keep), true
}

// recordSynthesized records the error reply the server itself sends when the chain returns an
// rcode without writing (see dnsserver's errorFunc).
func (r *recorder) recordSynthesized(w dns.ResponseWriter, req *dns.Msg, rc int) {
	m := new(dns.Msg)
	m.SetRcode(req, rc)
	state := request.Request{W: w, Req: req}
	state.SizeAndDo(m)
	r.rcode = uint16(rc)
	r.size = uint32(m.Len())
	r.flags = headerFlags(false, false, m.RecursionDesired, false, false, m.CheckingDisabled)
}

// start loads the handler's hash key, if any, and acquires its writer.
func (q *QueryLog) start() error {
	if q.filter.hash {
		key, err := loadKey(q.filter.keyFile)
		if err != nil {
			return err
		}
		q.filter.key = key
	}
	w, err := acquire(q.opts, tuning{})
	if err != nil {
		return err
	}
	if q.filter.keyIndex, err = w.keys.index(q.filter.key); err != nil {
		w.release(q.opts, false)
		return err
	}
	q.writer, q.sink = w, w
	return nil
}
