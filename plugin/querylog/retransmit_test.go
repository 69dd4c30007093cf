package querylog

import (
	"fmt"
	"net/netip"
	"testing"
)

// A retransmission is the same client address and port, DNS id, name and type within the
// window (glibc's 5 s and a little), in whichever order the replies were written; anything else
// differing, or a longer gap, is not.
func TestRetransmitCheck(t *testing.T) {
	t.Parallel()
	const ms = int64(1e6) // entry.start is in ns
	base := entry{start: 1_700_000_000_000 * ms, qname: "api.example.", qtype: 1, port: 40000, id: 77}
	base.setAddr(netip.MustParseAddr("10.0.0.5"))
	with := func(f func(e *entry)) entry { e := base; f(&e); return e }
	later := func(d int64) func(e *entry) { return func(e *entry) { e.start += d * ms } }

	tests := []struct {
		name  string
		first entry
		next  entry
		pair  []any // the retries row: retransmission's id, first's id; nil: none
	}{
		{"5 s later", base, with(later(5000)), []any{int64(2), int64(1)}},
		{"reply of the first written last", with(later(5000)), base, []any{int64(1), int64(2)}},
		{"glibc's retry, 5 s and a few ms later", base, with(later(5004)), []any{int64(2), int64(1)}},
		{"later than the window", base, with(later(retransmitWindow + 1)), nil},
		{"another id", base, with(func(e *entry) { e.id++ }), nil},
		{"another port", base, with(func(e *entry) { e.port++ }), nil},
		{"another name", base, with(func(e *entry) { e.qname = "www.example." }), nil},
		{"another type", base, with(func(e *entry) { e.qtype = 28 }), nil},
		{"another client", base, with(func(e *entry) { e.setAddr(netip.MustParseAddr("10.0.0.6")) }), nil},
		{"no client port", with(func(e *entry) { e.port = 0 }), with(func(e *entry) { e.port = 0 }), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRetransmits()
			first, next := tc.first, tc.next
			if r.check(&first, 1) {
				t.Fatal("the first query was taken for one of a pair")
			}
			if got := r.check(&next, 2); got != (tc.pair != nil) {
				t.Errorf("second query in a pair: %v, want %v", got, tc.pair != nil)
			}
			if len(r.pending) != len(tc.pair) || (tc.pair != nil && (r.pending[0] != tc.pair[0] || r.pending[1] != tc.pair[1])) {
				t.Errorf("retries rows %v, want %v", r.pending, tc.pair)
			}
		})
	}

	// A third sending within 5 s of the first repeats the first, not the second.
	r := newRetransmits()
	for i, d := range []int64{0, 2000, 4000} {
		e := with(later(d))
		r.check(&e, int64(i+1))
	}
	if want := []any{int64(2), int64(1), int64(3), int64(1)}; len(r.pending) != 4 || r.pending[2] != want[2] || r.pending[3] != want[3] {
		t.Errorf("three sendings: retries rows %v, want %v", r.pending, want)
	}
}

// At 10,000 queries a second, 1% of them retransmitted 5 s later, nearly every retransmission is
// marked: a few are not, whose first query's slot later queries took (about 1.5%; retransmit.go).
func TestRetransmitCheckUnderLoad(t *testing.T) {
	t.Parallel()
	const qps, seconds = 10_000, 20
	r := newRetransmits()
	query := func(i int) entry {
		e := entry{start: int64(i) * 1e9 / qps, qname: fmt.Sprintf("name%d.example.", i), qtype: 1, port: uint16(1024 + i%60000), id: uint16(i)}
		e.setAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		return e
	}
	var id int64
	sent, marked := 0, 0
	for i := range qps * seconds {
		id++
		e := query(i)
		if r.check(&e, id) {
			t.Fatalf("query %d taken for a retransmission", i)
		}
		if j := i - 5*qps; j >= 0 && j%100 == 0 { // query j again, 5 s after it
			retry := query(j)
			retry.start = e.start
			id++
			sent++
			if r.check(&retry, id) {
				marked++
			}
		}
	}
	if marked < sent*96/100 { // 98.5% expected; 96% is five standard deviations below
		t.Errorf("%d of %d retransmissions marked, want at least 96%%", marked, sent)
	}
	t.Logf("%d of %d retransmissions marked (%.2f%%)", marked, sent, 100*float64(marked)/float64(sent))
}
