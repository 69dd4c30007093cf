package querylog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

func init() { plugin.Register("querylog", setup) }

// options is one querylog directive, validated.
type options struct {
	path            string
	bufferSize      int
	batchSize       int
	flushInterval   time.Duration
	adaptive        bool
	minInterval     time.Duration
	maxInterval     time.Duration
	watermark       int           // percent of bufferSize
	blockFor        time.Duration // 0: drop when full
	shutdownTimeout time.Duration
	retention       time.Duration // 0 keeps everything
	maxSize         int64         // bytes; 0: no cap
	minFreeBytes    int64         // free space the filesystem must keep, or
	minFreePercent  float64       // the same as a share of the filesystem
	ship            shipOptions   // ship_options.go; zero: no shipping
}

const (
	defaultPath     = "querylog.db"
	minBufferSize   = 10000
	maxBufferSize   = 200000
	maxBatchSize    = 50000
	maxBlock        = 5 * time.Second
	maxDuration     = time.Hour
	maxShutdownWait = 10 * time.Minute
)

func defaults() options {
	return options{
		path:            defaultPath,
		bufferSize:      50000,
		batchSize:       1000,
		flushInterval:   time.Second,
		adaptive:        true,
		minInterval:     100 * time.Millisecond,
		maxInterval:     5 * time.Second,
		watermark:       80,
		shutdownTimeout: 5 * time.Second,
		retention:       7 * 24 * time.Hour,
		minFreeBytes:    100_000_000,
	}
}

func setup(c *caddy.Controller) error {
	o, f, err := parse(c)
	if err != nil {
		return plugin.Error("querylog", err)
	}
	q := &QueryLog{opts: o, filter: f}
	if err := generationOf(c).add(q); err != nil {
		return plugin.Error("querylog", err)
	}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		q.Next = next
		return q
	})
	return nil
}

// parse reads one server block's querylog directive and checks that its database can be used,
// without creating or changing anything.
func parse(c *caddy.Controller) (options, filter, error) {
	o, f, err := parseBlock(c)
	if err != nil {
		return o, f, err
	}
	if f.hash && f.keyFile == "" {
		f.keyFile = o.path + ".key"
	}
	return o, f, nil
}

func parseBlock(c *caddy.Controller) (options, filter, error) {
	o := defaults()
	f := filter{}
	seen := false
	for c.Next() {
		if seen {
			return o, f, plugin.ErrOnce
		}
		seen = true
		args := c.RemainingArgs()
		switch len(args) {
		case 0:
		case 1:
			o.path = args[0]
		default:
			return o, f, c.Errf("querylog takes at most one PATH, got %q", strings.Join(args, " "))
		}
		for c.NextBlock() {
			if err := parseOption(c, &o, &f); err != nil {
				return o, f, err
			}
		}
	}
	if o.adaptive && (o.flushInterval < o.minInterval || o.flushInterval > o.maxInterval) {
		return o, f, c.Errf("flush_interval %s must lie within the adaptive bounds %s..%s", o.flushInterval, o.minInterval, o.maxInterval)
	}
	if o.batchSize > o.bufferSize {
		return o, f, c.Errf("batch_size %d must not exceed buffer_size %d", o.batchSize, o.bufferSize)
	}
	if o.batchSize > o.bufferSize/2 {
		// Accepted (a test may want a buffer that fills without flushing), but under load the
		// buffer then has less room than one batch while a batch is written, and drops.
		log.Warningf("batch_size %d is more than half of buffer_size %d: under load, entries may be dropped while a batch is written", o.batchSize, o.bufferSize)
	}
	if err := checkShip(c, &o.ship); err != nil {
		return o, f, err
	}
	var err error
	if o.path, err = resolvePath(c, "querylog PATH", o.path); err != nil {
		return o, f, err
	}
	if err := checkPath(c, o.path); err != nil {
		return o, f, err
	}
	if f.keyFile != "" {
		if f.keyFile, err = resolvePath(c, "anonymize hash KEYFILE", f.keyFile); err != nil {
			return o, f, err
		}
	}
	return o, f, nil
}

func parseOption(c *caddy.Controller, o *options, f *filter) error {
	name := c.Val()
	args := c.RemainingArgs()
	want := func(n int) error {
		if len(args) != n {
			return c.Errf("%s needs %d argument(s), got %d: %q", name, n, len(args), strings.Join(args, " "))
		}
		return nil
	}
	var err error
	switch name {
	case "buffer_size":
		if err = want(1); err == nil {
			o.bufferSize, err = intIn(c, name, args[0], minBufferSize, maxBufferSize)
		}
	case "batch_size":
		if err = want(1); err == nil {
			o.batchSize, err = intIn(c, name, args[0], 1, maxBatchSize)
		}
	case "flush_interval":
		if err = want(1); err == nil {
			o.flushInterval, err = durationIn(c, name, args[0], maxDuration)
		}
	case "adaptive":
		if len(args) == 1 && args[0] == "off" {
			o.adaptive = false
			return nil
		}
		if len(args) != 2 {
			return c.Errf("adaptive needs MIN MAX or off, got %q", strings.Join(args, " "))
		}
		o.adaptive = true
		if o.minInterval, err = durationIn(c, name, args[0], maxDuration); err != nil {
			return err
		}
		if o.maxInterval, err = durationIn(c, name, args[1], maxDuration); err != nil {
			return err
		}
		if o.minInterval > o.maxInterval {
			return c.Errf("adaptive MIN %s is greater than MAX %s", args[0], args[1])
		}
	case "watermark":
		if err = want(1); err == nil {
			o.watermark, err = intIn(c, name, strings.TrimSuffix(args[0], "%"), 1, 99)
			if err != nil {
				err = c.Errf("watermark: invalid value %q: must be a percentage from 1 to 99", args[0])
			}
		}
	case "on_full":
		switch {
		case len(args) == 1 && args[0] == "drop":
			o.blockFor = 0
		case len(args) == 2 && args[0] == "block":
			o.blockFor, err = durationIn(c, "on_full block", args[1], maxBlock)
		default:
			return c.Errf("on_full needs drop or block DURATION, got %q", strings.Join(args, " "))
		}
	case "shutdown_timeout":
		if err = want(1); err == nil {
			o.shutdownTimeout, err = durationIn(c, name, args[0], maxShutdownWait)
		}
	case "retention":
		if err = want(1); err == nil {
			o.retention, err = parseRetention(c, args[0])
		}
	case "max_size":
		if err = want(1); err == nil {
			o.maxSize, err = parseSize(c, name, args[0], 1<<20)
		}
	case "min_free":
		if err = want(1); err == nil {
			o.minFreeBytes, o.minFreePercent, err = parseMinFree(c, args[0])
		}
	case "ship", "node", "ship_password":
		return parseShipOption(c, &o.ship, name, args)
	case "anonymize":
		return parseAnonymize(c, f, args)
	case "ignore":
		if len(args) == 0 {
			return c.Errf("ignore needs at least one NAME")
		}
		f.ignoreNames = append(f.ignoreNames, plugin.OriginsFromArgsOrServerBlock(args, nil)...)
	case "ignore_clients":
		if len(args) == 0 {
			return c.Errf("ignore_clients needs at least one CIDR")
		}
		for _, a := range args {
			p, err := parsePrefix(a)
			if err != nil {
				return c.Errf("ignore_clients: invalid CIDR %q", a)
			}
			f.ignoreClients = append(f.ignoreClients, p)
		}
	default:
		return c.Errf("unknown property %q", name)
	}
	return err
}

// resolvePath makes a path absolute, relative to the root directive's folder as the file
// plugin does.
func resolvePath(c *caddy.Controller, what, path string) (string, error) {
	if strings.ContainsAny(path, "?#") {
		return "", c.Errf("%s %q must not contain '?' or '#'", what, path)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dnsserver.GetConfig(c).Root, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", c.Errf("%s %q: %v", what, path, err)
	}
	return abs, nil
}

// checkPath checks that the database's folder, and the file if it exists, can be written and
// that an existing file is a querylog database.
func checkPath(c *caddy.Controller, abs string) error {
	dir := filepath.Dir(abs)
	// Try it: access(2) says yes to root even where nothing can be created (e.g. /proc).
	probe, err := os.CreateTemp(dir, ".querylog-check-*")
	if err != nil {
		return c.Errf("querylog PATH %q: folder %s is not writable: %v", abs, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := syscall.Access(abs, 0x2); err != nil && err != syscall.ENOENT {
		return c.Errf("querylog PATH %q is not writable: %v", abs, err)
	}
	registryMu.Lock()
	live := lookup(abs) != nil
	registryMu.Unlock()
	if !live {
		if err := checkDatabase(abs); err != nil {
			return c.Err(err.Error())
		}
	}
	return nil
}

// generation is the querylog state of one CoreDNS instance (one load of the Corefile): its
// handlers, which acquire their writers when the instance starts and release them when it
// stops. During a reload two generations are live; the new one acquires before the old one
// releases, so writers are handed over with their buffers.
type generation struct {
	handlers   []*QueryLog
	restarting atomic.Bool
	started    bool // guarded by registryMu
	stopped    bool // guarded by registryMu
	tracked    bool // its instance was in caddy.Instances() when it started; guarded by registryMu
}

type generationKey struct{}

var started []*generation // generations whose handlers hold writers; guarded by registryMu

func generationOf(c *caddy.Controller) *generation {
	if g, ok := c.Get(generationKey{}).(*generation); ok {
		return g
	}
	g := &generation{}
	c.Set(generationKey{}, g)
	c.OnStartup(g.start)
	c.OnRestart(func() error { g.restarting.Store(true); return nil })
	c.OnRestartFailed(func() error { g.restarting.Store(false); return nil })
	hookRestartFailed()
	// On reload the old instance's servers have stopped when OnShutdown runs, so it releases
	// there. On SIGTERM/SIGINT DNS is still served until after OnFinalShutdown (health's
	// lameduck runs in its own, earlier in the directive order), so the final drain waits for it.
	c.OnShutdown(func() error {
		if g.restarting.Load() {
			g.stop(false)
		}
		return nil
	})
	c.OnFinalShutdown(func() error { g.stop(true); return nil })
	return g
}

type reapHookKey struct{}

// hookRestartFailed makes every running instance reap orphans when a reload of it fails. A
// reload that fails after the new instance's OnStartup runs only the running instance's
// OnRestartFailed callbacks, and that instance may have no querylog of its own; setup of the
// new instance runs in the reloading goroutine, before those callbacks are read.
func hookRestartFailed() {
	for _, inst := range caddy.Instances() {
		inst.StorageMu.Lock()
		if inst.Storage[reapHookKey{}] == nil {
			inst.Storage[reapHookKey{}] = true
			inst.OnRestartFailed = append(inst.OnRestartFailed, func() error { reapOrphans(); return nil })
		}
		inst.StorageMu.Unlock()
	}
}

// add registers a handler. Two server blocks of one Corefile naming the same database must
// configure it identically, since they share one buffer and one writer.
func (g *generation) add(q *QueryLog) error {
	for _, other := range g.handlers {
		if sameFile(other.opts.path, q.opts.path) && !sameOptions(other.opts, q.opts) {
			return fmt.Errorf("server blocks logging to %s must use identical querylog options", q.opts.path)
		}
	}
	g.handlers = append(g.handlers, q)
	return nil
}

// sameOptions compares options but for the spelling of the path.
func sameOptions(a, b options) bool {
	a.path = b.path
	return a == b
}

func (g *generation) start() error {
	// An earlier reload may have failed after its OnStartup, with no querylog in the running
	// instance to notice: release its writers before taking ours.
	reapOrphans()
	for i, q := range g.handlers {
		if err := q.start(); err != nil {
			for _, q := range g.handlers[:i] {
				q.sink.(*writer).release(q.opts, false)
			}
			return plugin.Error("querylog", err)
		}
	}
	tracked := liveGenerations()[g]
	registryMu.Lock()
	g.started, g.tracked = true, tracked
	started = append(started, g)
	registryMu.Unlock()
	return nil
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
	w, err := acquire(q.opts)
	if err != nil {
		return err
	}
	q.sink = w
	return nil
}

// stop releases the generation's writers, once, after those of any orphaned generation, so
// that a final shutdown drains writers the orphans still hold.
func (g *generation) stop(final bool) {
	reapOrphans()
	g.release(final)
}

func (g *generation) release(final bool) {
	registryMu.Lock()
	if !g.started || g.stopped {
		registryMu.Unlock()
		return
	}
	g.stopped = true
	for i, s := range started {
		if s == g {
			started = append(started[:i], started[i+1:]...)
			break
		}
	}
	registryMu.Unlock()
	for _, q := range g.handlers {
		if w, ok := q.sink.(*writer); ok {
			w.release(q.opts, final)
		}
	}
}

// reapOrphans releases generations whose instance failed to start after their OnStartup ran:
// Caddy drops such an instance from its list without calling any shutdown callback. Only
// generations whose instance was listed when they started are considered (in-process tests
// may start generations outside Caddy's list).
func reapOrphans() {
	live := liveGenerations()
	registryMu.Lock()
	var orphans []*generation
	for _, g := range started {
		if g.tracked && !live[g] {
			orphans = append(orphans, g)
		}
	}
	registryMu.Unlock()
	for _, g := range orphans {
		log.Infof("Releasing the databases of an instance that failed to start")
		g.release(false)
	}
}

// liveGenerations returns the generations of the instances Caddy is running or starting.
func liveGenerations() map[*generation]bool {
	live := map[*generation]bool{}
	for _, inst := range caddy.Instances() {
		inst.StorageMu.RLock()
		if g, ok := inst.Storage[generationKey{}].(*generation); ok {
			live[g] = true
		}
		inst.StorageMu.RUnlock()
	}
	return live
}
