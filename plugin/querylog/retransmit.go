package querylog

import (
	"hash/maphash"
	"net"
)

// A retransmission is a query a client sends again because no reply came in time: the same
// client address and source port, DNS id, name and type within retransmitWindow (glibc's stub
// resolver waits 5 s, then asks again with the same id from the same socket). The writer marks
// it as it writes rows, off the DNS path: the retries table holds the retransmission's row id
// and that of the first query it repeats.
//
// The writer remembers recent queries by hash in a table of fixed size, like the dictionaries'
// seenSet: no text is kept, a row reads one bucket of retransmitWays slots, and memory stays at
// 3 MiB whatever the traffic. A new query takes a slot of its bucket that is free or whose
// query is older than the window, else the oldest one's: a query is forgotten before its window
// ends if retransmitWays later ones fall in its bucket first. At 10,000 queries a second about
// 1.5% of retransmissions go unmarked so (TestRetransmitCheckUnderLoad), more above.
// Two queries taken for one another need equal 64-bit hashes.
//
// The window is a little over 5 s: glibc waits 5 s (its default timeout) before sending again,
// so its retry reaches CoreDNS 5 s and a few milliseconds after the first.
const (
	retransmitWindow = 5_500 // milliseconds
	retransmitSlots  = 1 << 17
	retransmitWays   = 8
)

// retransmitKey is what makes two queries one lookup sent twice.
type retransmitKey struct {
	client   [16]byte
	v4       bool
	port, id uint16
	qtype    uint16
	qname    string
}

type retransmitSlot struct {
	hash uint64
	ts   int64 // arrival, Unix ms
	id   int64 // row id
}

// retransmits finds retransmissions among the rows written.
type retransmits struct {
	seed    maphash.Seed
	slots   *[retransmitSlots / retransmitWays][retransmitWays]retransmitSlot
	pending []any // rows for the retries table of the batch being written: id, first_id, ...
}

func newRetransmits() *retransmits {
	return &retransmits{seed: maphash.MakeSeed(), slots: new([retransmitSlots / retransmitWays][retransmitWays]retransmitSlot)}
}

// check looks at the entry written as row id, and reports whether it is one of a pair: a
// retransmission of an earlier query, or (replies can come in any order) the earlier query of
// a retransmission written before it. An entry without a client port (no address) is none.
func (r *retransmits) check(e *entry, id int64) bool {
	if e.port == 0 {
		return false
	}
	h := maphash.Comparable(r.seed, retransmitKey{e.client, e.flags&flagV4 != 0, e.port, e.id, e.qtype, e.qname})
	bucket := &r.slots[h%uint64(len(r.slots))]
	ts := e.start / 1e6
	victim := &bucket[0]
	for i := range bucket {
		s := &bucket[i]
		if s.id == 0 || ts-s.ts > retransmitWindow {
			victim = s // free, or its window is over
			continue
		}
		if s.hash == h {
			switch d := ts - s.ts; {
			case d >= 0:
				r.pending = append(r.pending, id, s.id)
				return true
			case d >= -retransmitWindow:
				// The first query's reply came after its retransmission's: it becomes the first.
				r.pending = append(r.pending, s.id, id)
				s.ts, s.id = ts, id
				return true
			}
		}
		if victim.id != 0 && ts-victim.ts <= retransmitWindow && s.ts < victim.ts {
			victim = s // the oldest, while no slot is free
		}
	}
	*victim = retransmitSlot{hash: h, ts: ts, id: id}
	return false
}

// forget drops the pairs of a batch that failed; the rows it remembers are written again with
// other ids, so it forgets them all.
func (r *retransmits) forget() {
	r.pending = r.pending[:0]
	clear(r.slots[:])
}

// clientPort is the client's source port; 0 when the transport gave none.
func clientPort(a net.Addr) uint16 {
	switch a := a.(type) {
	case *net.UDPAddr:
		return uint16(a.Port)
	case *net.TCPAddr:
		return uint16(a.Port)
	}
	return 0
}
