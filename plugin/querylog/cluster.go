package querylog

import (
	"context"
	"hash/maphash"
	"slices"
	"sync/atomic"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"

	"github.com/miekg/dns"
)

// Who asked, and whether the cache answered: what a cluster operator asks of a log that
// CoreDNS's metrics cannot say.
//
// The namespace and pod of a client come from the kubernetes plugin's metadata (the metadata
// plugin on, kubernetes with "pods verified" or "pods insecure"), whenever it gives them,
// whatever the metadata option lists. Rows store them as one number into the pods dictionary
// (a pod is in one namespace), not in the metadata column's JSON.
//
// Whether a reply came from the cache: CoreDNS's plugin tracking stops at the cache's response
// writer (and at loadbalance's, in front of it), so the plugin of a reply reads "cache" or
// "loadbalance", hit or miss. At startup querylog puts a probe behind its server block's cache
// (installCacheProbe): a reply written through it is a miss, and the probe learns which plugin
// below wrote it; a reply that did not pass it and names the cache (or a plugin between
// querylog and the cache) is a hit.
const (
	namespaceLabel = "kubernetes/client-namespace"
	podLabel       = "kubernetes/client-pod-name"
)

// podOf returns the client's namespace and pod name from the request's metadata; "" when the
// kubernetes plugin did not give them.
func (q *QueryLog) podOf(ctx context.Context) (namespace, pod string) {
	if f := q.valueFunc(ctx, namespaceLabel); f != nil {
		namespace, _ = cutValue(f(), metadataValueMax)
	}
	if f := q.valueFunc(ctx, podLabel); f != nil {
		pod, _ = cutValue(f(), metadataValueMax)
	}
	return namespace, pod
}

// podExtras hands out the extra of an entry that has a pod and nothing else of its own (no
// metadata or answers option): one per pod, shared by the entries of its queries, instead of
// an allocation per query. It keeps the extras of the pods seen last, one slot per hash of the
// pod's name; an extra is never changed once made, so queries read them without a lock, and a
// pod whose slot another took gets a new one. The slots are fixed in number, so no number of
// clients, nor forged metadata, can grow it.
type podExtras struct {
	slots [podSlots]atomic.Pointer[extra]
}

// podSlots bounds podExtras: 32 KiB of slots, and what they hold, at most podSlots extras of
// at most 2 x metadataValueMax bytes of text each (about 160 bytes with names as Kubernetes
// makes them). With 500 pods asking at random, about 6% of queries find their slot taken.
const (
	podSlotBits = 12
	podSlots    = 1 << podSlotBits
)

var podSeed = maphash.MakeSeed()

// get returns the extra of namespace and pod.
func (p *podExtras) get(namespace, pod string) *extra {
	slot := &p.slots[maphash.String(podSeed, pod)%podSlots]
	if x := slot.Load(); x != nil && x.pod == pod && x.namespace == namespace {
		return x
	}
	x := &extra{namespace: namespace, pod: pod}
	slot.Store(x)
	return x
}

// cacheStatus says how the cache took part in a reply.
type cacheStatus uint8

const (
	cacheNone cacheStatus = iota // no cache probed in this server block, or no reply came past it
	cacheHit
	cacheMiss
)

// cacheProbe is the handler installed between a cache and its next plugin.
type cacheProbe struct {
	Next plugin.Handler
}

func (p *cacheProbe) Name() string { return "querylog" }

// ServeDNS passes the query on below the cache, watching the reply come back up.
func (p *cacheProbe) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if pc, ok := ctx.Value(probeKey{}).(*probeContext); ok {
		pc.reached.Store(true)
		w = &probeWriter{ResponseWriter: w, pc: pc}
	}
	return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
}

// probeKey finds a query's probeContext.
type probeKey struct{}

// probeContext is the request's context with what the probe saw, held in the query's recorder.
// A cache prefetch runs below the cache on its own goroutine with this context, so it is read
// and written atomically.
type probeContext struct {
	context.Context
	reached  atomic.Bool            // the query went below the cache
	inFlight atomic.Int32           // replies passing up through the probe right now
	below    atomic.Pointer[string] // the plugin below the cache that wrote the last of them
}

func (pc *probeContext) Value(key any) any {
	if _, ok := key.(probeKey); ok { // a type comparison; == on an interface calls efaceeq
		return pc
	}
	return pc.Context.Value(key)
}

// probeWriter is the writer the plugins below the cache write to.
type probeWriter struct {
	dns.ResponseWriter
	pc *probeContext
}

// SetPlugin implements plugin.PluginTracker: NextOrFailure's wrapper names the plugin below.
func (w *probeWriter) SetPlugin(name string) {
	w.pc.below.Store(&name)
	if t, ok := w.ResponseWriter.(plugin.PluginTracker); ok {
		t.SetPlugin(name)
	}
}

// GetPlugin implements plugin.PluginTracker.
func (w *probeWriter) GetPlugin() string {
	if p := w.pc.below.Load(); p != nil {
		return *p
	}
	return ""
}

func (w *probeWriter) WriteMsg(m *dns.Msg) error {
	w.pc.inFlight.Add(1)
	defer w.pc.inFlight.Add(-1)
	return w.ResponseWriter.WriteMsg(m)
}

func (w *probeWriter) Write(b []byte) (int, error) {
	w.pc.inFlight.Add(1)
	defer w.pc.inFlight.Add(-1)
	return w.ResponseWriter.Write(b)
}

// passing reports, from the recorder's write, whether the reply is coming up through the
// probe: a miss, written by the plugin it returns (or "" if none said).
func (pc *probeContext) passing() (bool, string) {
	if pc == nil || pc.inFlight.Load() == 0 {
		return false, ""
	}
	if p := pc.below.Load(); p != nil {
		return true, *p
	}
	return true, ""
}

// installCacheProbe puts the probe behind the server block's cache, if it has one, and returns
// the names a reply the cache wrote can carry (see cacheStatus): "cache", and the plugins
// between querylog and the cache in the directive order, in this block (loadbalance's writer,
// for one, hides the name of every plugin below it): a few names, which a comparison each
// finds sooner than a map. nil: no cache, nothing probed. It runs at startup, after the plugin
// chain is built and before any query is served; the cache of a server block is its own, so no
// other instance sees it.
func installCacheProbe(cfg *dnsserver.Config) []string {
	c, ok := cfg.Handler("cache").(*cache.Cache)
	if !ok {
		return nil
	}
	if _, done := c.Next.(*cacheProbe); !done {
		c.Next = &cacheProbe{Next: c.Next}
	}
	from, to := slices.Index(dnsserver.Directives, "querylog"), slices.Index(dnsserver.Directives, "cache")
	names := []string{"cache"}
	for _, h := range cfg.Handlers() {
		if i := slices.Index(dnsserver.Directives, h.Name()); i > from && i < to && !slices.Contains(names, h.Name()) {
			names = append(names, h.Name())
		}
	}
	return names
}

// cacheStatus is the cache's part in a reply, once the handler below querylog has returned: a
// reply that came up through the probe, or none written after the query went below the cache
// (an upstream timeout), is a miss; one written by a plugin cacheNames has, a hit. A prefetch
// below the cache runs on its own goroutine while the hit is written, which is why a miss is
// told by the reply passing the probe, not by the query having gone below. A reply a plugin in
// front of the cache wrote reads as a hit only if a wrapper above it hid its name (dnstap).
func (r *recorder) cacheStatus(answered string, cacheNames []string) cacheStatus {
	switch {
	case r.probe == nil:
		return cacheNone
	case r.cacheMiss || (!r.written && r.probe.reached.Load()):
		return cacheMiss
	case r.written && slices.Contains(cacheNames, answered):
		return cacheHit
	}
	return cacheNone
}
