package querylog

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// bufOpts is a small buffer configuration; buffer tests bypass parse's limits.
func bufOpts(size, batch, watermark int, block time.Duration) options {
	return options{bufferSize: size, batchSize: batch, watermark: watermark, blockFor: block}
}

// seqEntry is entry number i of server (a label number); the number is kept in start and in
// qname.
func seqEntry(server uint8, i int) entry {
	return entry{start: int64(i), server: server, qname: strconv.Itoa(i) + ".example."}
}

// seqs returns the numbers of the oldest n entries, and checks that the two segments hold
// exactly those.
func seqs(t *testing.T, b *buffer, n int) []int64 {
	t.Helper()
	first, second := b.peek(n)
	var out []int64
	for _, seg := range [][]entry{first, second} {
		for _, e := range seg {
			if e.qname != strconv.FormatInt(e.start, 10)+".example." {
				t.Fatalf("entry %d has qname %q: slot content mixed up", e.start, e.qname)
			}
			out = append(out, e.start)
		}
	}
	return out
}

// totals sums a snapshot over servers.
type totals struct {
	enqueued, written uint64
	dropped           [numReasons]uint64
	size, peak        int
}

func totalsOf(b *buffer) totals {
	s := b.snapshot()
	t := totals{size: s.size, peak: s.peak}
	for _, c := range s.stats {
		t.enqueued += c.enqueued
		t.written += c.written
		for r, n := range c.dropped {
			t.dropped[r] += n
		}
	}
	return t
}

func (t totals) droppedAll() uint64 {
	var n uint64
	for _, d := range t.dropped {
		n += d
	}
	return n
}

// checkBalance asserts enqueued = written + dropped + buffered.
func checkBalance(t *testing.T, b *buffer, step string) totals {
	t.Helper()
	tot := totalsOf(b)
	if tot.enqueued != tot.written+tot.droppedAll()+uint64(tot.size) {
		t.Fatalf("%s: enqueued %d != written %d + dropped %d + buffered %d", step, tot.enqueued, tot.written, tot.droppedAll(), tot.size)
	}
	return tot
}

func TestBufferOverflow(t *testing.T) {
	t.Parallel()
	b := newBuffer(bufOpts(4, 4, 80, 0))
	type step struct {
		enqueue int // entries to offer
		remove  int // then entries to remove as written
		// expected after the step
		accepted, full int // results of this step's enqueues
		size           int
		dropped        uint64 // buffer_full in total
		written        uint64
	}
	next := 0
	for i, s := range []step{
		{enqueue: 3, accepted: 3, size: 3},
		{enqueue: 1, accepted: 1, size: 4},
		{enqueue: 2, full: 2, size: 4, dropped: 2},
		{remove: 1, size: 3, dropped: 2, written: 1},
		{enqueue: 3, accepted: 1, full: 2, size: 4, dropped: 4, written: 1},
		{remove: 4, size: 0, dropped: 4, written: 5},
		{enqueue: 5, accepted: 4, full: 1, size: 4, dropped: 5, written: 5},
		{remove: 2, enqueue: 1, accepted: 1, size: 3, dropped: 5, written: 7},
	} {
		var acc, full int
		if s.remove > 0 {
			b.remove(s.remove, true, 0)
		}
		for range s.enqueue {
			switch res, _ := b.enqueue(seqEntry(1, next)); res {
			case accepted:
				acc++
			case droppedFull:
				full++
			default:
				t.Fatalf("step %d: enqueue returned %v", i, res)
			}
			next++
			checkBalance(t, b, fmt.Sprintf("step %d after an enqueue", i))
		}
		tot := checkBalance(t, b, fmt.Sprintf("step %d", i))
		if acc != s.accepted || full != s.full {
			t.Errorf("step %d: accepted %d, dropped %d; want %d, %d", i, acc, full, s.accepted, s.full)
		}
		if tot.size != s.size || tot.dropped[reasonBufferFull] != s.dropped || tot.written != s.written {
			t.Errorf("step %d: size %d, buffer_full %d, written %d; want %d, %d, %d", i, tot.size, tot.dropped[reasonBufferFull], tot.written, s.size, s.dropped, s.written)
		}
		for r := range numReasons {
			if r != reasonBufferFull && tot.dropped[r] != 0 {
				t.Errorf("step %d: %d drops counted as %s", i, tot.dropped[r], reasonNames[r])
			}
		}
	}
	if n := b.takeDropWindow(); n != 5 {
		t.Errorf("drop window = %d, want 5", n)
	}
	if n := b.takeDropWindow(); n != 0 {
		t.Errorf("drop window after taking it = %d, want 0", n)
	}
	// Dropped entries never displace accepted ones.
	if got := fmt.Sprint(seqs(t, b, 10)); got != "[11 12 14]" {
		t.Errorf("buffer holds %s, want [11 12 14]", got)
	}
}

func TestBufferWatermarkHysteresis(t *testing.T) {
	t.Parallel()
	// 20 entries, watermark 50%: warns at 10, re-arms only below 5.
	b := newBuffer(bufOpts(20, 20, 50, 0))
	next := 0
	tests := []struct {
		op        string
		n         int
		crossings int // warnings given during this step
		size      int
	}{
		{"enqueue", 9, 0, 9},
		{"enqueue", 1, 1, 10}, // reaches the watermark
		{"enqueue", 5, 0, 15}, // stays above: no repeat
		{"remove", 7, 0, 8},   // below the watermark, not below half of it
		{"enqueue", 4, 0, 12}, // not re-armed: no warning
		{"remove", 7, 0, 5},   // exactly half: still not re-armed
		{"enqueue", 5, 0, 10},
		{"remove", 6, 0, 4}, // below half: re-armed
		{"enqueue", 5, 0, 9},
		{"enqueue", 1, 1, 10}, // second crossing
		{"enqueue", 10, 0, 20},
		{"enqueue", 3, 0, 20}, // full: drops never warn
		{"remove", 20, 0, 0},
		{"enqueue", 20, 1, 20},
	}
	for i, tc := range tests {
		crossings := 0
		switch tc.op {
		case "enqueue":
			for range tc.n {
				if _, crossed := b.enqueue(seqEntry(1, next)); crossed {
					crossings++
				}
				next++
			}
		case "remove":
			b.remove(tc.n, true, 0)
		}
		size, _ := b.fill()
		if crossings != tc.crossings || size != tc.size {
			t.Errorf("step %d (%s %d): %d warnings, size %d; want %d, %d", i, tc.op, tc.n, crossings, size, tc.crossings, tc.size)
		}
	}
}

func TestBufferWatermarkRounding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size, percent, want int
	}{
		{10000, 80, 8000},
		{10000, 1, 100},
		{10000, 99, 9900},
		{3, 50, 1},   // 1.5 rounds down
		{1, 10, 1},   // never 0
		{20, 99, 19}, // never above the capacity
	} {
		b := newBuffer(bufOpts(tc.size, 1, tc.percent, 0))
		crossedAt := -1
		for i := range tc.size {
			if _, crossed := b.enqueue(seqEntry(1, i)); crossed {
				crossedAt = i + 1
				break
			}
		}
		if crossedAt != tc.want {
			t.Errorf("buffer %d, watermark %d%%: warned at %d entries, want %d", tc.size, tc.percent, crossedAt, tc.want)
		}
	}
}

func TestBufferPeak(t *testing.T) {
	t.Parallel()
	b := newBuffer(bufOpts(10, 10, 80, 0))
	next := 0
	enq := func(n int) {
		for range n {
			b.enqueue(seqEntry(1, next))
			next++
		}
	}
	for i, tc := range []struct {
		enqueue, remove, peak int
	}{
		{enqueue: 5, peak: 5},
		{remove: 3, peak: 5},
		{enqueue: 2, peak: 5},
		{enqueue: 3, peak: 7},
		{remove: 7, peak: 7},
		{enqueue: 15, peak: 10}, // drops do not count
		{remove: 10, peak: 10},
	} {
		enq(tc.enqueue)
		if tc.remove > 0 {
			b.remove(tc.remove, true, 0)
		}
		if s := b.snapshot(); s.peak != tc.peak {
			t.Errorf("step %d: peak %d, want %d", i, s.peak, tc.peak)
		}
	}
}

// The ring is used in place: after enough rounds every position has been the head, and the
// oldest entries come back in order across the wrap.
func TestBufferFIFOWrap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		capacity, add, take int
		wraps               bool
	}{
		{5, 3, 2, true},
		{5, 4, 4, true},
		{7, 5, 3, true},
		{8, 8, 8, false},
		{8, 1, 1, false},
	} {
		t.Run(fmt.Sprintf("cap%d_add%d_take%d", tc.capacity, tc.add, tc.take), func(t *testing.T) {
			b := newBuffer(bufOpts(tc.capacity, tc.capacity, 80, 0))
			produced, consumed := 0, 0
			wrapped := false
			for round := 0; round < 6*tc.capacity; round++ {
				for range tc.add {
					if res, _ := b.enqueue(seqEntry(1, produced)); res == accepted {
						produced++
					}
				}
				size, _ := b.fill()
				first, second := b.peek(size)
				if len(second) > 0 {
					wrapped = true
				}
				seqs := seqs(t, b, size)
				for i, s := range seqs {
					if s != int64(consumed+i) {
						t.Fatalf("round %d: buffer holds %v, want %d.. in order", round, seqs, consumed)
					}
				}
				if len(first)+len(second) != produced-consumed {
					t.Fatalf("round %d: %d entries buffered, want %d", round, len(first)+len(second), produced-consumed)
				}
				n := min(tc.take, size)
				b.remove(n, true, 0)
				consumed += n
			}
			if wrapped != tc.wraps {
				t.Errorf("ring wrapped around: %v, want %v", wrapped, tc.wraps)
			}
			tot := checkBalance(t, b, "end")
			if tot.written != uint64(consumed) {
				t.Errorf("written %d, want %d", tot.written, consumed)
			}
		})
	}
}

func TestBufferRemoveReasons(t *testing.T) {
	t.Parallel()
	b := newBuffer(bufOpts(100, 100, 80, 0))
	for i := range 30 {
		server := uint8(1) // dns://:53
		if i%3 == 0 {
			server = 2 // tls://:853
		}
		b.enqueue(seqEntry(server, i))
	}
	b.remove(6, true, 0)                  // 0..5: two tls, four dns
	b.remove(6, false, reasonWriteFailed) // 6..11
	b.remove(3, false, reasonDiskLow)     // 12..14
	b.remove(6, false, reasonShutdown)    // 15..20
	if got := fmt.Sprint(seqs(t, b, 100)); got != "[21 22 23 24 25 26 27 28 29]" {
		t.Errorf("left in the buffer: %s", got)
	}
	want := map[uint8]counts{
		1: {enqueued: 20, written: 4, dropped: [numReasons]uint64{reasonWriteFailed: 4, reasonDiskLow: 2, reasonShutdown: 4}},
		2: {enqueued: 10, written: 2, dropped: [numReasons]uint64{reasonWriteFailed: 2, reasonDiskLow: 1, reasonShutdown: 2}},
	}
	s := b.snapshot()
	if len(s.stats) != len(want) {
		t.Fatalf("stats for %d servers, want %d: %+v", len(s.stats), len(want), s.stats)
	}
	for _, c := range s.stats {
		w := want[c.server]
		w.server = c.server
		if c != w {
			t.Errorf("counts %+v, want %+v", c, w)
		}
	}
	checkBalance(t, b, "end")
	// Shutdown drops are reported once by the drain, not by the periodic summary.
	if n := b.takeDropWindow(); n != 9 {
		t.Errorf("drop window = %d, want 9 (write_failed and disk_low, not shutdown)", n)
	}
	// Removed slots no longer reference the entries' strings.
	for i := range b.ring {
		j := (i - b.head + len(b.ring)) % len(b.ring)
		if j >= b.size && b.ring[i].qname != "" {
			t.Errorf("free slot %d still holds %q", i, b.ring[i].qname)
		}
	}
}

func TestBufferNotifyAtBatch(t *testing.T) {
	t.Parallel()
	b := newBuffer(bufOpts(10, 3, 80, 0))
	pending := func() bool {
		select {
		case <-b.notify:
			return true
		default:
			return false
		}
	}
	for i := range 2 {
		b.enqueue(seqEntry(1, i))
	}
	if pending() {
		t.Fatal("flusher woken before batch_size entries waited")
	}
	b.enqueue(seqEntry(1, 2))
	if !pending() {
		t.Fatal("flusher not woken at batch_size entries")
	}
	b.enqueue(seqEntry(1, 3))
	if pending() {
		t.Fatal("flusher woken again above batch_size")
	}
}

func TestBufferBlockGetsRoom(t *testing.T) {
	b := newBuffer(bufOpts(2, 2, 80, 3*time.Second))
	b.enqueue(seqEntry(1, 0))
	b.enqueue(seqEntry(1, 1))
	done := make(chan enqueueResult, 1)
	start := time.Now()
	go func() {
		res, _ := b.enqueue(seqEntry(1, 2))
		done <- res
	}()
	waitBlocked(t, 1)
	b.remove(1, true, 0)
	select {
	case res := <-done:
		if res != accepted {
			t.Fatalf("enqueue returned %v after room was made, want accepted", res)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("enqueue still blocked after room was made")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("enqueue waited %s", d)
	}
	if got := fmt.Sprint(seqs(t, b, 10)); got != "[1 2]" {
		t.Errorf("buffer holds %s, want [1 2]", got)
	}
	tot := checkBalance(t, b, "end")
	if tot.droppedAll() != 0 {
		t.Errorf("dropped %v", tot.dropped)
	}
}

func TestBufferBlockTimesOut(t *testing.T) {
	t.Parallel()
	const block = 60 * time.Millisecond
	b := newBuffer(bufOpts(2, 2, 80, block))
	b.enqueue(seqEntry(1, 0))
	b.enqueue(seqEntry(1, 1))
	start := time.Now()
	res, _ := b.enqueue(seqEntry(1, 2))
	took := time.Since(start)
	if res != droppedFull {
		t.Fatalf("enqueue = %v, want droppedFull", res)
	}
	if took < block || took > block+2*time.Second {
		t.Errorf("enqueue gave up after %s, want about %s", took, block)
	}
	tot := checkBalance(t, b, "end")
	if tot.dropped[reasonBufferFull] != 1 {
		t.Errorf("buffer_full drops = %d, want 1", tot.dropped[reasonBufferFull])
	}
}

// Room for one: of two blocked producers one gets it, the other keeps waiting and then drops.
func TestBufferBlockRoomForOne(t *testing.T) {
	const block = 400 * time.Millisecond
	b := newBuffer(bufOpts(2, 2, 80, block))
	b.enqueue(seqEntry(1, 0))
	b.enqueue(seqEntry(1, 1))
	results := make(chan enqueueResult, 2)
	for i := range 2 {
		go func() {
			res, _ := b.enqueue(seqEntry(1, 2+i))
			results <- res
		}()
	}
	waitBlocked(t, 2)
	b.remove(1, true, 0)
	got := map[enqueueResult]int{}
	for range 2 {
		select {
		case res := <-results:
			got[res]++
		case <-time.After(3 * time.Second):
			t.Fatal("a producer stayed blocked past the block time")
		}
	}
	if got[accepted] != 1 || got[droppedFull] != 1 {
		t.Errorf("results %v, want one accepted and one dropped", got)
	}
	checkBalance(t, b, "end")
}

func TestBufferClose(t *testing.T) {
	for _, block := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprintf("block=%s", block), func(t *testing.T) {
			b := newBuffer(bufOpts(2, 2, 80, block))
			b.enqueue(seqEntry(1, 0))
			b.enqueue(seqEntry(1, 1))
			const producers = 3
			results := make(chan enqueueResult, producers)
			if block > 0 {
				for i := range producers {
					go func() {
						res, _ := b.enqueue(seqEntry(1, 10+i))
						results <- res
					}()
				}
				waitBlocked(t, producers)
			}
			start := time.Now()
			b.close()
			if block > 0 {
				for range producers {
					select {
					case res := <-results:
						if res != rejectedClosed {
							t.Errorf("blocked producer got %v, want rejectedClosed", res)
						}
					case <-time.After(2 * time.Second):
						t.Fatal("close did not wake a blocked producer")
					}
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("producers woke %s after close", d)
				}
			}
			if res, _ := b.enqueue(seqEntry(1, 99)); res != rejectedClosed {
				t.Errorf("enqueue after close = %v, want rejectedClosed", res)
			}
			// Rejected entries are not counted by the buffer; the caller accounts for them.
			tot := checkBalance(t, b, "after close")
			if tot.enqueued != 2 || tot.size != 2 {
				t.Errorf("enqueued %d, size %d; want 2, 2", tot.enqueued, tot.size)
			}
			b.account([]entry{{server: 1}}, false, reasonShutdown)
			b.account([]entry{{server: 1}}, true, 0)
			tot = checkBalance(t, b, "after account")
			if tot.enqueued != 4 || tot.written != 1 || tot.dropped[reasonShutdown] != 1 {
				t.Errorf("after account: %+v", tot)
			}
			// The flusher still drains what was accepted.
			if got := fmt.Sprint(seqs(t, b, 10)); got != "[0 1]" {
				t.Errorf("buffer holds %s", got)
			}
			b.remove(2, true, 0)
			b.release()
			if b.ring != nil {
				t.Error("release kept the ring of an empty closed buffer")
			}
		})
	}
}

// release keeps a ring that still holds entries.
func TestBufferReleaseKeepsEntries(t *testing.T) {
	t.Parallel()
	b := newBuffer(bufOpts(4, 4, 80, 0))
	b.enqueue(seqEntry(1, 0))
	b.close()
	b.release()
	if got := fmt.Sprint(seqs(t, b, 4)); got != "[0]" {
		t.Errorf("after release the buffer holds %s, want [0]", got)
	}
}

func TestBufferConfigure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		capacity  int
		fill      int // entries offered first
		take      int // then removed
		refill    int // then offered again (wraps the ring)
		newSize   int
		wantHeld  int // buffered after configure
		thenAdd   int // offered after configure
		wantAdded int // of which accepted
	}{
		{name: "grow empty", capacity: 4, newSize: 8, thenAdd: 10, wantAdded: 8},
		{name: "grow, not wrapped", capacity: 4, fill: 3, take: 1, newSize: 8, wantHeld: 2, thenAdd: 10, wantAdded: 6},
		{name: "grow, wrapped", capacity: 4, fill: 4, take: 3, refill: 3, newSize: 8, wantHeld: 4, thenAdd: 10, wantAdded: 4},
		{name: "grow, full and wrapped", capacity: 5, fill: 5, take: 2, refill: 2, newSize: 6, wantHeld: 5, thenAdd: 3, wantAdded: 1},
		{name: "same size", capacity: 4, fill: 4, take: 2, refill: 2, newSize: 4, wantHeld: 4, thenAdd: 1, wantAdded: 0},
		{name: "shrink below fill keeps entries", capacity: 8, fill: 8, take: 3, refill: 1, newSize: 3, wantHeld: 6, thenAdd: 2, wantAdded: 0},
		{name: "shrink above fill", capacity: 8, fill: 6, take: 4, refill: 3, newSize: 6, wantHeld: 5, thenAdd: 3, wantAdded: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuffer(bufOpts(tc.capacity, 1, 80, 0))
			next := 0
			offer := func(n int) int {
				acc := 0
				for range n {
					if res, _ := b.enqueue(seqEntry(1, next)); res == accepted {
						acc++
					}
					next++
				}
				return acc
			}
			offer(tc.fill)
			b.remove(tc.take, true, 0)
			offer(tc.refill)
			before := seqs(t, b, tc.capacity)

			b.configure(bufOpts(tc.newSize, 1, 80, 0))
			after := seqs(t, b, tc.capacity)
			if fmt.Sprint(after) != fmt.Sprint(before) || len(after) != tc.wantHeld {
				t.Fatalf("configure changed the content: %v -> %v, want %d entries kept", before, after, tc.wantHeld)
			}
			if _, capacity := b.fill(); capacity != tc.newSize {
				t.Errorf("capacity %d, want %d", capacity, tc.newSize)
			}
			if got := offer(tc.thenAdd); got != tc.wantAdded {
				t.Errorf("after configure %d of %d entries accepted, want %d", got, tc.thenAdd, tc.wantAdded)
			}
			// Order is kept across the configure and the new entries, through draining.
			var all []int64
			for i := 0; ; i++ {
				size, _ := b.fill()
				if size == 0 {
					break
				}
				n := min(size, 2)
				all = append(all, seqs(t, b, n)...)
				b.remove(n, true, 0)
				if i < 5 {
					offer(1)
				}
			}
			for i := 1; i < len(all); i++ {
				if all[i] <= all[i-1] {
					t.Fatalf("entries out of order after configure: %v", all)
				}
			}
			checkBalance(t, b, "end")
		})
	}
}

// TestBufferConcurrent runs many producers against one consumer that behaves like the flusher
// (peek, read without the lock, remove) and checks the accounting exactly, per server.
func TestBufferConcurrent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		block time.Duration
	}{
		{"drop", 0},
		{"block", 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const producers, perProducer, batch = 8, 2000, 16
			b := newBuffer(bufOpts(64, batch, 80, tc.block))
			var wg sync.WaitGroup
			acceptedBy := make([]int, producers)
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					server := uint8(p + 1)
					for i := range perProducer {
						if res, _ := b.enqueue(seqEntry(server, i)); res == accepted {
							acceptedBy[p]++
						}
					}
				}()
			}
			producersDone := make(chan struct{})
			go func() { wg.Wait(); close(producersDone) }()

			last := map[uint8]int64{}
			seen := map[uint8]uint64{}
			written := map[uint8]uint64{}
			failed := map[uint8]uint64{}
			done := false
			for round := 0; ; round++ {
				select {
				case <-producersDone:
					done = true
				default:
				}
				first, second := b.peek(batch)
				n := len(first) + len(second)
				if n == 0 {
					if done {
						break
					}
					time.Sleep(10 * time.Microsecond)
					continue
				}
				ok := round%5 != 0
				for _, seg := range [][]entry{first, second} {
					for _, e := range seg {
						if prev, had := last[e.server]; had && e.start <= prev {
							t.Fatalf("server %d: entry %d after %d", e.server, e.start, prev)
						}
						last[e.server] = e.start
						seen[e.server]++
						if ok {
							written[e.server]++
						} else {
							failed[e.server]++
						}
					}
				}
				b.remove(n, ok, reasonWriteFailed)
				if round%7 == 0 {
					checkBalance(t, b, fmt.Sprintf("round %d", round))
				}
			}
			tot := checkBalance(t, b, "end")
			if tot.size != 0 {
				t.Fatalf("%d entries left", tot.size)
			}
			s := b.snapshot()
			if len(s.stats) != producers {
				t.Fatalf("stats for %d servers, want %d", len(s.stats), producers)
			}
			for _, c := range s.stats {
				p := int(c.server) - 1
				full := uint64(perProducer - acceptedBy[p])
				want := counts{server: c.server, enqueued: perProducer, written: written[c.server]}
				want.dropped[reasonWriteFailed] = failed[c.server]
				want.dropped[reasonBufferFull] = full
				if c != want {
					t.Errorf("server %d: counts %+v, want %+v", c.server, c, want)
				}
				if seen[c.server] != uint64(acceptedBy[p]) {
					t.Errorf("server %d: consumer saw %d entries, %d were accepted", c.server, seen[c.server], acceptedBy[p])
				}
			}
			if tot.peak > 64 {
				t.Errorf("peak %d above the capacity", tot.peak)
			}
		})
	}
}

// TestBufferConfigureWhileConsuming grows the ring (as a reload with a larger buffer_size does)
// while a producer and the consumer run: the consumer's remove and the ring copy must not race.
func TestBufferConfigureWhileConsuming(t *testing.T) {
	t.Parallel()
	const rounds = 800
	b := newBuffer(bufOpts(16, 4, 80, 0))
	stop := make(chan struct{})
	consumerDone := make(chan struct{})
	var consumed, produced uint64
	go func() {
		defer close(consumerDone)
		last := int64(-1)
		next := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 4 {
				if res, _ := b.enqueue(seqEntry(1, next)); res == accepted {
					next++
					produced++
				}
			}
			first, second := b.peek(4)
			for _, seg := range [][]entry{first, second} {
				for _, e := range seg {
					if e.server == 0 || e.start != last+1 {
						t.Errorf("read entry %d (server %d) after %d", e.start, e.server, last)
						return
					}
					last = e.start
				}
			}
			n := len(first) + len(second)
			b.remove(n, true, 0)
			consumed += uint64(n)
		}
	}()
	for size := 17; size < 17+rounds; size++ {
		b.configure(bufOpts(size, 4, 80, 0))
	}
	close(stop)
	<-consumerDone
	tot := checkBalance(t, b, "end")
	if tot.written != consumed || tot.enqueued != produced {
		t.Errorf("written %d (consumed %d), enqueued %d (produced %d)", tot.written, consumed, tot.enqueued, produced)
	}
}

// bytesOpts is bufOpts with a byte budget.
func bytesOpts(size int, budget int64, block time.Duration) options {
	o := bufOpts(size, size, 80, block)
	o.bufferBytes = budget
	return o
}

// dataEntry is seqEntry with n bytes of answer data.
func dataEntry(server uint8, i, n int) entry {
	e := seqEntry(server, i)
	e.extra = &extra{answers: strings.Repeat("x", n)}
	return e
}

// heldBytes sums the cost of the entries in b, to check b's own count.
func heldBytes(b *buffer) int64 {
	first, second := b.peek(b.capacity)
	var n int64
	for _, seg := range [][]entry{first, second} {
		for i := range seg {
			n += seg[i].cost()
		}
	}
	return n
}

// TestBufferBytesBudget: an entry that would take the buffer over buffer_bytes is dropped as
// buffer_bytes, while there is room in entries; the accounting balances, and a removal gives
// its bytes back.
func TestBufferBytesBudget(t *testing.T) {
	t.Parallel()
	big := dataEntry(1, 0, 1000)
	small := seqEntry(1, 0)
	budget := 3*big.cost() + small.cost()
	b := newBuffer(bytesOpts(100, budget, 0))
	next := 0
	offer := func(n int) enqueueResult {
		e := dataEntry(1, next, n)
		if n == 0 {
			e = seqEntry(1, next)
		}
		next++
		res, _ := b.enqueue(e)
		checkBalance(t, b, fmt.Sprintf("entry %d", next-1))
		if s := b.snapshot(); s.bytes > budget || s.bytes != heldBytes(b) {
			t.Fatalf("entry %d: %d bytes counted, %d held, budget %d", next-1, s.bytes, heldBytes(b), budget)
		}
		return res
	}
	for i, want := range []enqueueResult{accepted, accepted, accepted, droppedBytes, accepted, droppedBytes} {
		n := 1000
		if i >= 4 {
			n = 0 // small entries: the first takes the last bytes
		}
		if got := offer(n); got != want {
			t.Fatalf("entry %d: %v, want %v", i, got, want)
		}
	}
	tot := checkBalance(t, b, "full")
	if tot.dropped[reasonBufferBytes] != 2 || tot.droppedAll() != 2 || tot.size != 4 {
		t.Errorf("dropped %v, %d held; want 2 buffer_bytes, 4 held", tot.dropped, tot.size)
	}
	if n := b.takeDropWindow(); n != 2 {
		t.Errorf("drop window %d, want 2 (buffer_bytes drops are logged as any)", n)
	}
	b.remove(1, true, 0)
	if got := offer(1000); got != accepted {
		t.Errorf("after a removal: %v, want accepted", got)
	}
	// An entry larger than the whole budget never fits.
	if got := offer(int(budget)); got != droppedBytes {
		t.Errorf("entry over the whole budget: %v, want droppedBytes", got)
	}
	b.remove(4, true, 0)
	if s := b.snapshot(); s.bytes != 0 || s.size != 0 {
		t.Errorf("empty buffer counts %d bytes, %d entries", s.bytes, s.size)
	}
	if reasonNames[reasonBufferBytes] != "buffer_bytes" {
		t.Errorf("reason name %q", reasonNames[reasonBufferBytes])
	}
	// Out of entries first: buffer_full, not buffer_bytes.
	b = newBuffer(bytesOpts(minBufferSizeForTest, 1<<30, 0))
	for i := range minBufferSizeForTest + 1 {
		b.enqueue(seqEntry(1, i))
	}
	if tot := checkBalance(t, b, "entries full"); tot.dropped[reasonBufferFull] != 1 || tot.dropped[reasonBufferBytes] != 0 {
		t.Errorf("dropped %v, want one buffer_full", tot.dropped)
	}
}

const minBufferSizeForTest = 8

// TestBufferBytesAnyReplies: whatever sizes arrive, concurrently, the bytes held never pass
// the budget and every entry is accounted for.
func TestBufferBytesAnyReplies(t *testing.T) {
	t.Parallel()
	const budget = 64 << 10
	b := newBuffer(bytesOpts(1000, budget, 0))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var over string
	var overOnce sync.Once
	consumer := make(chan struct{})
	go func() { // the flusher: removes what is there now and then, checking the count
		defer close(consumer)
		for {
			if s := b.snapshot(); s.bytes > budget {
				overOnce.Do(func() { over = fmt.Sprintf("%d bytes held, budget %d", s.bytes, budget) })
			}
			first, second := b.peek(50)
			b.remove(len(first)+len(second), true, 0)
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				b.enqueue(dataEntry(uint8(p+1), i, (i*7919+p*104729)%9000))
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-consumer
	if over != "" {
		t.Error(over)
	}
	tot := checkBalance(t, b, "end")
	if tot.enqueued != 8000 || tot.dropped[reasonBufferBytes] == 0 {
		t.Errorf("enqueued %d, dropped %v; want 8000 and some buffer_bytes drops", tot.enqueued, tot.dropped)
	}
	if s := b.snapshot(); s.bytes != heldBytes(b) {
		t.Errorf("%d bytes counted, %d held", s.bytes, heldBytes(b))
	}
}

// TestBufferBytesBlock: under on_full block, an entry over the byte budget waits for room as
// one over the entry count does; one larger than the whole budget is dropped at once.
func TestBufferBytesBlock(t *testing.T) {
	big := dataEntry(1, 0, 1000)
	b := newBuffer(bytesOpts(100, 2*big.cost(), 3*time.Second))
	b.enqueue(dataEntry(1, 0, 1000))
	b.enqueue(dataEntry(1, 1, 1000))
	done := make(chan enqueueResult, 1)
	go func() {
		res, _ := b.enqueue(dataEntry(1, 2, 1000))
		done <- res
	}()
	select {
	case res := <-done:
		t.Fatalf("enqueue over the byte budget returned %v at once, want it to wait", res)
	case <-time.After(50 * time.Millisecond):
	}
	b.remove(1, true, 0)
	select {
	case res := <-done:
		if res != accepted {
			t.Fatalf("enqueue returned %v after room was made, want accepted", res)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("enqueue still blocked after room was made")
	}
	start := time.Now()
	if res, _ := b.enqueue(dataEntry(1, 3, int(3*big.cost()))); res != droppedBytes {
		t.Errorf("entry over the whole budget: %v, want droppedBytes", res)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("an entry that can never fit waited %s", d)
	}
	checkBalance(t, b, "end")
}

// TestBufferBytesLowered: lowering buffer_bytes (a reload) keeps the entries held; new ones are
// dropped until the held bytes fall below the new budget.
func TestBufferBytesLowered(t *testing.T) {
	t.Parallel()
	e := dataEntry(1, 0, 1000)
	one := e.cost()
	b := newBuffer(bytesOpts(100, 10*one, 0))
	for i := range 5 {
		b.enqueue(dataEntry(1, i, 1000))
	}
	b.configure(bytesOpts(100, 2*one, 0))
	if res, _ := b.enqueue(dataEntry(1, 5, 1000)); res != droppedBytes {
		t.Errorf("over the lowered budget: %v, want droppedBytes", res)
	}
	if got := fmt.Sprint(seqs(t, b, 10)); got != "[0 1 2 3 4]" {
		t.Errorf("buffer holds %s after lowering, want [0 1 2 3 4]", got)
	}
	b.remove(4, true, 0)
	if res, _ := b.enqueue(dataEntry(1, 6, 1000)); res != accepted {
		t.Errorf("below the lowered budget: %v, want accepted", res)
	}
	checkBalance(t, b, "end")
}

// waitBlocked waits until n producers wait in enqueue for room.
func waitBlocked(t *testing.T, n int) {
	t.Helper()
	testutil.WaitFor(t, 2*time.Second, fmt.Sprintf("%d producers to wait for room", n), func() bool {
		return testutil.Waiting("select", "querylog.(*buffer).waitForRoom") == n
	})
}
