package querylog

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/querylog/querylog/internal/retry"
	"github.com/querylog/querylog/plugin/querylog/ship"
)

// A writer owns everything behind one database file: the buffer, the SQLite store and the
// flusher goroutine. There is at most one per file per process. Server blocks naming the same
// file share it, and during a reload the new instance acquires it before the old one releases
// it, so the buffer, with everything in it, simply changes hands (the dynupdate pattern).
type writer struct {
	path string
	buf  *buffer
	tune tuning

	optsMu sync.Mutex
	opts   options // the newest acquirer's

	// Lock order: shipMu before storeMu (the shipper's finish, under shipMu, reads and saves
	// its cursor under storeMu); never the other way round.
	storeMu sync.Mutex // serializes the flusher's batches with tail writes after close
	store   *store     // nil until opened, and once closed
	ckpt    *checkpointer
	tail    tail // entries answered after the buffer closed

	labels labels  // numbers of the texts entries repeat (servers, plugins, upstreams)
	keys   keyring // anonymize hash keys of the handlers, numbered for their entries

	shipMu sync.Mutex                   // serializes setShip and finishShip; taken before storeMu
	ship   atomic.Pointer[ship.Shipper] // nil unless shipping (setShip)

	stop   chan struct{} // closed to make the flusher drain and exit
	done   chan struct{} // closed by the flusher when it has exited
	closed chan struct{} // closed when the writer has fully shut down, its database closed

	holders []options // one per reference, its options, oldest first; guarded by registryMu
	closing bool      // the last holder released it; it stays registered until closed; guarded by registryMu
	retired bool      // its counts have moved to retired[path]; guarded by registryMu

	warnMu  sync.Mutex
	warnLog retry.Limiter // watermark warnings: once per crossing, and at most once per retry.LogEvery

	gaugeMu   sync.Mutex
	interval  time.Duration
	lastFlush float64 // Unix seconds
	dbSize    int64
	diskLow   bool
}

// tuning is the pace of a writer's background work: the defaults, or shorter ones that a test
// gives acquire. Zero fields take the defaults.
type tuning struct {
	maintenanceEvery time.Duration    // retention and the size cap
	checkpointEvery  time.Duration    // copying the WAL back into the database
	wallClock        func() time.Time // the clock retention compares rows' times with
	ship             ship.Tuning      // zero fields take package ship's defaults
}

func (t tuning) withDefaults() tuning {
	if t.maintenanceEvery <= 0 {
		t.maintenanceEvery = defaultMaintenanceEvery
	}
	if t.checkpointEvery <= 0 {
		t.checkpointEvery = defaultCheckpointEvery
	}
	if t.wallClock == nil {
		t.wallClock = time.Now
	}
	return t
}

// The writer registry, under its own lock.
var (
	registryMu sync.Mutex
	writers    = map[string]*writer{} // live writers by absolute path
	// retired holds the counts of closed writers, summed by path and then by server, so that
	// counters never go backwards: a path closed and reopened by reloads keeps counting where
	// it was. Only the counts are kept, not the writers, and so by server text: a writer's
	// label numbers mean nothing without its label table.
	retired = map[string]map[string]*counts{}
)

// tailGrace is how long a writer closed by a final shutdown keeps its database open for
// replies still being written: CoreDNS stops its servers after the shutdown callbacks and
// waits up to 5s for in-flight queries.
const tailGrace = 6 * time.Second

// openMu serializes opening databases. Until a new file exists, an alias of it (a symlink to
// it) cannot be recognized, so two opens of any paths might be of one file; opening them one
// after the other lets the second find the first. registryMu is not held meanwhile: scrapes,
// lookups and releases never wait for SQLite to open and migrate. Nor is openMu held while
// waiting for a writer to drain (join), which may take shutdown_timeout and the shipper's
// finish: that would stop every other database from opening.
var openMu sync.Mutex

// acquire returns the writer for o.path, opening the database and starting the flusher, paced
// by tu, if this is the first user. A later user's options replace the current ones; its tu is
// not used.
//
// A logging problem must not keep CoreDNS from starting: if the database cannot be opened for
// a reason that may pass (another process holds the write lock, the disk is full, an I/O error,
// a read-only file), the writer starts without it, buffers entries, and its flusher opens the
// database with backoff. Only a file that is not a usable querylog database fails.
func acquire(o options, tu tuning) (*writer, error) {
	for {
		w, draining := join(o)
		if w == nil && draining == nil {
			var err error
			if w, draining, err = openOrJoin(o, tu); err != nil {
				return nil, err
			}
		}
		if w != nil {
			return w, nil
		}
		// The last user is draining it; wait, holding no lock, and open it afresh rather
		// than fight over the write lock with a second connection.
		<-draining
	}
}

// openOrJoin opens a new writer for o.path under openMu, or joins (or reports draining) one
// that was opened, or began to close, while this waited for openMu.
func openOrJoin(o options, tu tuning) (w *writer, draining <-chan struct{}, err error) {
	openMu.Lock()
	defer openMu.Unlock()
	if w, draining := join(o); w != nil || draining != nil {
		return w, draining, nil
	}
	w = &writer{
		path:    o.path,
		buf:     newBuffer(o),
		tune:    tu.withDefaults(),
		opts:    o,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		closed:  make(chan struct{}),
		holders: []options{o},
		warnLog: retry.Limiter{Every: retry.LogEvery},
	}
	if err := w.open(); err != nil {
		if permanent(err) {
			return nil, nil, err
		}
		flushErrors.WithLabelValues(o.path).Inc()
		log.Warningf("Cannot open %s yet, starting without it: entries are buffered and written once it opens (%v)", o.path, err)
	}
	w.setGauges(func() { w.interval = o.maxInterval })
	registryMu.Lock()
	writers[o.path] = w
	registryMu.Unlock()
	w.setShip(o.ship.Options)                            // before the flusher's first maintenance, which asks it what may be deleted
	retry.PanicsTotal.WithLabelValues(w.path, inFlusher) // at 0 from the start, for increase()
	go w.run()
	return w, nil, nil
}

// run is the flusher goroutine (runFlusher), under this name in goroutine dumps
// (docs/runbook.md).
func (w *writer) run() {
	defer close(w.done)
	runFlusher(w)
}

// join adds a reference with options o to the live writer for o.path, if there is one. If
// that writer is closing it joins nothing and returns the channel closed once it has closed,
// database included.
func join(o options) (w *writer, draining <-chan struct{}) {
	registryMu.Lock()
	w = lookup(o.path)
	if w == nil {
		registryMu.Unlock()
		return nil, nil
	}
	if w.closing {
		registryMu.Unlock()
		return nil, w.closed
	}
	w.holders = append(w.holders, o)
	registryMu.Unlock()
	w.configure(o)
	return w, nil
}

// lookup finds the live writer for path, by name or as the same file under another name.
// Called with registryMu held.
func lookup(path string) *writer {
	if w, ok := writers[path]; ok {
		return w
	}
	for p, w := range writers {
		if sameFile(path, p) {
			return w
		}
	}
	return nil
}

// sameFile reports whether two paths name the same file: equal, or aliases (symlinks, hard
// links) of one existing file.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

func (w *writer) configure(o options) {
	w.optsMu.Lock()
	w.opts = o
	w.optsMu.Unlock()
	w.buf.configure(o)
	w.setShip(o.ship.Options)
}

func (w *writer) options() options {
	w.optsMu.Lock()
	defer w.optsMu.Unlock()
	return w.opts
}

// release drops the reference taken with options o. If others remain, the newest remaining
// holder's options apply again (a failed reload leaves the running instance's). The last one drains the buffer into SQLite (bounded by
// shutdown_timeout) and closes the database. With keepTail, used when the process is about to
// exit, replies still being answered after the drain are written by the tail until tailGrace
// has passed, so that nothing answered before exit is missing.
func (w *writer) release(o options, keepTail bool) {
	registryMu.Lock()
	i := len(w.holders) - 1
	for i > 0 && !sameOptions(w.holders[i], o) {
		i--
	}
	w.holders = append(w.holders[:i], w.holders[i+1:]...)
	if len(w.holders) > 0 {
		latest := w.holders[len(w.holders)-1]
		registryMu.Unlock()
		w.configure(latest)
		return
	}
	w.closing = true
	registryMu.Unlock()

	w.buf.close()
	close(w.stop)
	<-w.done
	w.finishShip(leftAtExit)
	w.buf.release()

	registryMu.Lock()
	w.retire()
	registryMu.Unlock()

	if keepTail {
		time.AfterFunc(tailGrace, w.unregister)
	} else {
		w.unregister()
	}
}

// unregister closes the database and only then takes the writer out of the registry and
// signals closed: until then a new acquire of the file waits (join) instead of opening a
// second connection to it.
func (w *writer) unregister() {
	w.closeStore()
	registryMu.Lock()
	if writers[w.path] == w {
		delete(writers, w.path)
	}
	registryMu.Unlock()
	close(w.closed)
}

// open opens the database and starts its checkpointer. Only the flusher calls it once the
// writer runs, so the flusher may read w.store without storeMu.
func (w *writer) open() error {
	st, err := openStore(w.path)
	if err != nil {
		return err
	}
	st.use(&w.labels, &w.keys)
	st.state.rollups.configure(w.options().rollupLimit)
	ckpt, err := startCheckpointer(w.path, w.tune.checkpointEvery)
	if err != nil {
		st.close()
		return err
	}
	w.storeMu.Lock()
	w.store, w.ckpt = st, ckpt
	w.storeMu.Unlock()
	size := st.size()
	w.setGauges(func() { w.dbSize = size })
	return nil
}

func (w *writer) closeStore() {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	if w.store == nil {
		return
	}
	defer func() { w.store = nil }() // also if closing panics (dropStore)
	w.stopCheckpointer()
	if err := w.store.close(); err != nil {
		log.Errorf("Closing database %s: %v", w.path, err)
	}
}

// stopCheckpointer stops the checkpointer and closes its connection. Called with storeMu held.
func (w *writer) stopCheckpointer() {
	if w.ckpt != nil {
		w.ckpt.close()
		w.ckpt = nil
	}
}

// retire moves the counts of the drained writer to retired[w.path]; entries the tail handles
// afterwards are counted there too (account). Called with registryMu held.
func (w *writer) retire() {
	w.addRetired(w.buf.snapshot().stats)
	w.retired = true
}

// addRetired adds counts of w, numbered by w's labels, to retired[w.path] under their server
// texts. Called with registryMu held.
func (w *writer) addRetired(cs []counts) {
	r := retired[w.path]
	if r == nil {
		r = map[string]*counts{}
		retired[w.path] = r
	}
	for _, c := range cs {
		server := w.labels.text(labelServer, uint16(c.server))
		t := r[server]
		if t == nil {
			t = &counts{}
			r[server] = t
		}
		t.add(c)
	}
}

// account records the fate of entries the tail handled after the buffer closed: written, or
// dropped as shutdown.
func (w *writer) account(es []entry, written bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if !w.retired {
		w.buf.account(es, written, reasonShutdown)
		return
	}
	var b buffer
	b.account(es, written, reasonShutdown)
	w.addRetired(b.snapshot().stats)
}

// log hands one entry to the buffer. After the buffer has closed, the entry is written by the
// tail if the database is still open and healthy, else counted as a shutdown drop.
func (w *writer) log(e entry) {
	res, crossed := w.buf.enqueue(e)
	switch res {
	case accepted:
		if crossed {
			w.warnWatermark()
		}
	case rejectedClosed:
		w.tail.write(w, e)
	}
}

func (w *writer) warnWatermark() {
	w.warnMu.Lock()
	ok, suppressed := w.warnLog.Allow(time.Now())
	w.warnMu.Unlock()
	if ok {
		size, capacity := w.buf.fill()
		log.Warningf("Buffer for %s is above its watermark: %d of %d entries (%d earlier crossings not reported)", w.path, size, capacity, suppressed)
	}
}

func (w *writer) labelTable() *labels { return &w.labels }

// ready reports whether the database is open for writing.
func (w *writer) ready() bool {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	return w.store != nil
}

type gauges struct {
	interval  time.Duration
	lastFlush float64
	dbSize    int64
	diskLow   bool
}

func (w *writer) gauges() gauges {
	w.gaugeMu.Lock()
	defer w.gaugeMu.Unlock()
	return gauges{w.interval, w.lastFlush, w.dbSize, w.diskLow}
}

func (w *writer) setGauges(f func()) {
	w.gaugeMu.Lock()
	f()
	w.gaugeMu.Unlock()
}

// writersForMetrics returns the live writers, and those with, for each path, one holding the
// retired counts. These are copies taken under registryMu, in which a writer's counts move to
// retired: read later, they could otherwise miss that move, or see it twice.
func writersForMetrics() (live, all []*writer) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, w := range writers {
		if !w.retired { // a retired writer's counts are in retired, its gauges gone
			live = append(live, w)
		}
	}
	all = append([]*writer(nil), live...)
	for path, r := range retired {
		// A stand-in writer with a label table of its own for the retired servers.
		rw := &writer{path: path, buf: &buffer{}}
		cs := make([]counts, 0, len(r))
		for server, c := range r {
			t := *c
			t.server = uint8(rw.labels.id(labelServer, server))
			cs = append(cs, t)
		}
		rw.buf.add(cs)
		all = append(all, rw)
	}
	return live, all
}

// The writer's side of shipping (package ship): one shipper per writer, started, replaced and
// stopped as its options change, woken by the flusher, and asked by retention what may be
// deleted.

// What becomes of the rows not shipped when a shipper stops, for its log line.
const (
	leftAtExit  = "they are sent from the file at the next start"
	leftRotated = "they stay in the old file, which is no longer read"
)

// setShip starts, replaces or stops the writer's shipper to match o. The old shipper stops
// before a new one starts, so two never send the same rows, and stays visible to retention
// until then.
func (w *writer) setShip(o ship.Options) {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	old := w.ship.Load()
	if old != nil && old.Options() == o {
		return
	}
	if old == nil && !o.Enabled() {
		return
	}
	if old != nil {
		old.Stop()
	}
	var s *ship.Shipper
	if o.Enabled() {
		s = ship.Start(w.path, shipSource{w}, o, w.tune.ship)
	}
	w.ship.Store(s)
}

// finishShip lets the shipper send what is left, bounded by shutdown_timeout, and stops it. The
// writer's last holder calls it once the flusher has drained the buffer, and the flusher before
// it leaves a renamed file (leftRotated). It reports whether there was a shipper.
func (w *writer) finishShip(leftover string) bool {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	s := w.ship.Load()
	if s != nil {
		s.Finish(w.options().shutdownTimeout, leftover)
		w.ship.Store(nil)
	}
	return s != nil
}

// shipWake tells the shipper, if any, that n rows were committed. It never blocks.
func (w *writer) shipWake(n int) {
	if s := w.ship.Load(); s != nil {
		s.Wake(n)
	}
}

// shipBoundOf is what pruning must leave for sh; nil: not shipping.
func shipBoundOf(sh *ship.Shipper) shipBound {
	if sh == nil {
		return shipBound{}
	}
	return shipBound{shipping: true, shipped: sh.Bound()}
}

// runningShippers returns the shipper of every live writer, for the lag gauges.
func runningShippers() []*ship.Shipper {
	registryMu.Lock()
	defer registryMu.Unlock()
	var out []*ship.Shipper
	for _, w := range writers {
		if s := w.ship.Load(); s != nil && !w.retired {
			out = append(out, s)
		}
	}
	return out
}

// withStore runs fn with storeMu held, in the flusher: the lock is released and a panic
// returned as an error whatever fn does.
func (w *writer) withStore(fn func() error) error {
	w.storeMu.Lock()
	defer w.storeMu.Unlock()
	return retry.Guard(w.path, inFlusher, fn)
}

// dropStore closes the store after a panic in the flusher, which left its state unknown (its
// transaction, its dictionaries' cache): the next turn opens the database afresh.
func (w *writer) dropStore() {
	retry.Guard(w.path, inFlusher, func() error { w.closeStore(); return nil })
}
