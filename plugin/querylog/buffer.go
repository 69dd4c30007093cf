package querylog

import (
	"sync"
	"time"
)

// reason says why an entry was not written.
type reason int

const (
	reasonBufferFull  reason = iota // the buffer was at capacity
	reasonWriteFailed               // SQLite rejected the batch with a permanent error
	reasonShutdown                  // shutdown_timeout ran out, or the entry arrived after close
	reasonDiskLow                   // the filesystem is below min_free
	reasonBufferBytes               // the entry would take the buffer over its byte budget
	numReasons
)

var reasonNames = [numReasons]string{"buffer_full", "write_failed", "shutdown", "disk_low", "buffer_bytes"}

// counts is the accounting of one server (listener) on one buffer. Every entry offered is
// enqueued; it then ends up written, dropped, or is still buffered.
type counts struct {
	server   uint8 // label number of the server (labels.go)
	enqueued uint64
	written  uint64
	dropped  [numReasons]uint64
}

// buffer is a bounded FIFO ring of entries shared by every server block that logs to one
// database. Producers (ServeDNS) append under mu and never wait unless block mode is on; the
// single consumer (the flusher) reads the oldest entries without holding mu, writes them, and
// only then removes them, so a failed write leaves them in place to be retried.
type buffer struct {
	mu       sync.Mutex
	ring     []entry // physical ring; len(ring) >= capacity
	head     int     // index of the oldest entry
	size     int     // entries held
	capacity int     // logical capacity (buffer_size)
	peak     int
	closed   bool
	bytes    int64 // held by the entries in the ring (entry.cost)
	budget   int64 // buffer_bytes; 0: none (only tests build options without parse)

	watermark int  // fill (entries) at which the warning fires
	warned    bool // warning given; re-armed below watermark/2
	batch     int  // fill at which the flusher is woken early
	block     time.Duration

	stats      []*counts // per server, few: a linear scan beats a map
	dropWindow uint64    // drops since the last summary log line

	notify chan struct{} // cap 1: wakes the flusher when batch entries wait
	space  chan struct{} // closed and replaced whenever room is made (block mode waits on it)
}

func newBuffer(o options) *buffer {
	b := &buffer{
		notify: make(chan struct{}, 1),
		space:  make(chan struct{}),
	}
	b.configure(o)
	return b
}

// configure applies (new) options. Growing reallocates the ring in order; shrinking only lowers
// the logical capacity, so entries already accepted are never thrown away.
func (b *buffer) configure(o options) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o.bufferSize > len(b.ring) {
		ring := make([]entry, o.bufferSize)
		first, second := b.segments(b.size)
		copy(ring[copy(ring, first):], second)
		b.ring, b.head = ring, 0
	}
	b.capacity = o.bufferSize
	b.budget = o.bufferBytes // lowered below b.bytes: entries held stay, new ones wait or drop
	b.watermark = max(1, o.bufferSize*o.watermark/100)
	b.batch = o.batchSize
	b.block = o.blockFor
}

// segments returns the oldest n entries as up to two slices of the ring.
func (b *buffer) segments(n int) (first, second []entry) {
	if n == 0 {
		return nil, nil
	}
	end := b.head + n
	if end <= len(b.ring) {
		return b.ring[b.head:end], nil
	}
	return b.ring[b.head:], b.ring[:end-len(b.ring)]
}

// countsFor returns the accounting of server, creating it. Called with mu held.
func (b *buffer) countsFor(server uint8) *counts {
	for _, c := range b.stats {
		if c.server == server {
			return c
		}
	}
	c := &counts{server: server}
	b.stats = append(b.stats, c)
	return c
}

// enqueueResult tells the caller what happened to an entry.
type enqueueResult int

const (
	accepted enqueueResult = iota
	droppedFull
	droppedBytes   // over the byte budget
	rejectedClosed // the buffer is closed; the caller decides (tail write or shutdown drop)
)

// enqueue appends e. In drop mode it never waits; in block mode it waits at most b.block for the
// flusher to make room. crossed reports that this entry took the fill over the watermark.
func (b *buffer) enqueue(e entry) (res enqueueResult, crossed bool) {
	cost := e.cost()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return rejectedClosed, false
	}
	if !b.room(cost) && b.block > 0 && b.fits(cost) {
		b.waitForRoom(cost)
		if b.closed {
			b.mu.Unlock()
			return rejectedClosed, false
		}
	}
	c := b.countsFor(e.server)
	c.enqueued++
	if b.size >= b.capacity {
		c.dropped[reasonBufferFull]++
		b.dropWindow++
		b.mu.Unlock()
		return droppedFull, false
	}
	if !b.room(cost) {
		c.dropped[reasonBufferBytes]++
		b.dropWindow++
		b.mu.Unlock()
		return droppedBytes, false
	}
	b.bytes += cost
	i := b.head + b.size
	if i >= len(b.ring) {
		i -= len(b.ring)
	}
	b.ring[i] = e
	b.size++
	if b.size > b.peak {
		b.peak = b.size
	}
	if !b.warned && b.size >= b.watermark {
		b.warned, crossed = true, true
	}
	wake := b.size == b.batch
	b.mu.Unlock()
	if wake {
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
	return accepted, crossed
}

// room reports whether an entry of cost fits now, in entries and in bytes. Called with mu held.
func (b *buffer) room(cost int64) bool {
	return b.size < b.capacity && (b.budget == 0 || b.bytes+cost <= b.budget)
}

// fits reports whether an entry of cost could ever fit: one over the whole budget is dropped at
// once, even under on_full block, as no flush would make room for it.
func (b *buffer) fits(cost int64) bool { return b.budget == 0 || cost <= b.budget }

// waitForRoom waits, with mu held on entry and on return, until there is room for an entry of
// cost (entries and bytes), the buffer is closed, or b.block has passed.
func (b *buffer) waitForRoom(cost int64) {
	deadline := time.Now().Add(b.block)
	for !b.room(cost) && !b.closed {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		space := b.space
		b.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-space:
		case <-t.C:
		}
		t.Stop()
		b.mu.Lock()
	}
}

// peek returns up to n of the oldest entries without removing them. Only the flusher calls it,
// and it alone removes entries, so the returned slots stay valid until its next remove.
func (b *buffer) peek(n int) (first, second []entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.segments(min(n, b.size))
}

// remove takes the oldest n entries out of the buffer, counting them as written, or as dropped
// for reason r when written is false. Only the flusher calls it.
func (b *buffer) remove(n int, written bool, r reason) {
	first, second := b.peek(n)
	perServer := tally(first, second)

	var freed int64
	for _, seg := range [][]entry{first, second} {
		for i := range seg {
			freed += seg[i].cost()
		}
	}

	b.mu.Lock()
	b.bytes -= freed
	// Release the qname strings. Under mu, since a growing configure copies these slots.
	clear(first)
	clear(second)
	for _, t := range perServer {
		c := b.countsFor(t.server)
		if written {
			c.written += t.n
		} else {
			c.dropped[r] += t.n
			if r != reasonShutdown {
				b.dropWindow += t.n
			}
		}
	}
	b.head += n
	if b.head >= len(b.ring) {
		b.head -= len(b.ring)
	}
	b.size -= n
	if b.warned && b.size < b.watermark/2 {
		b.warned = false
	}
	close(b.space)
	b.space = make(chan struct{})
	b.mu.Unlock()
}

type serverTally struct {
	server uint8
	n      uint64
}

// tally counts entries per server; a batch almost always has one or two servers.
func tally(segs ...[]entry) []serverTally {
	var out []serverTally
	for _, seg := range segs {
	next:
		for i := range seg {
			for j := range out {
				if out[j].server == seg[i].server {
					out[j].n++
					continue next
				}
			}
			out = append(out, serverTally{seg[i].server, 1})
		}
	}
	return out
}

// account records the fate of entries that never entered the ring (written or dropped by the
// tail after the buffer closed).
func (b *buffer) account(es []entry, written bool, r reason) {
	b.mu.Lock()
	for i := range es {
		c := b.countsFor(es[i].server)
		c.enqueued++
		if written {
			c.written++
		} else {
			c.dropped[r]++
		}
	}
	b.mu.Unlock()
}

// add adds counts to the buffer's accounting (summing a closed writer's into retired).
func (b *buffer) add(cs []counts) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		b.countsFor(c.server).add(c)
	}
}

// add sums o's counts into c (not its server).
func (c *counts) add(o counts) {
	c.enqueued += o.enqueued
	c.written += o.written
	for r := range o.dropped {
		c.dropped[r] += o.dropped[r]
	}
}

// close rejects further entries and wakes anyone blocked waiting for room.
func (b *buffer) close() {
	b.mu.Lock()
	b.closed = true
	close(b.space)
	b.space = make(chan struct{})
	b.mu.Unlock()
}

// release frees the ring's memory once the buffer is closed and empty.
func (b *buffer) release() {
	b.mu.Lock()
	if b.size == 0 {
		b.ring = nil
	}
	b.mu.Unlock()
}

// fill reports the entries held and the logical capacity.
func (b *buffer) fill() (size, capacity int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size, b.capacity
}

// takeDropWindow returns the drops counted since the last call.
func (b *buffer) takeDropWindow() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.dropWindow
	b.dropWindow = 0
	return n
}

// snapshot is a consistent copy of the buffer's accounting, for metrics.
type snapshot struct {
	size, capacity, peak int
	bytes, budget        int64
	stats                []counts
}

func (b *buffer) snapshot() snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := snapshot{size: b.size, capacity: b.capacity, peak: b.peak, bytes: b.bytes, budget: b.budget, stats: make([]counts, len(b.stats))}
	for i, c := range b.stats {
		s.stats[i] = *c
	}
	return s
}
