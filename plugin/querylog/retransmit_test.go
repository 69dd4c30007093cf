package querylog

import (
	"net/netip"
	"testing"
)

// A retransmission is the same client address and port, DNS id, name and type within 5 s, in
// whichever order the replies were written; anything else differing, or a longer gap, is not.
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
		{"over 5 s later", base, with(later(5001)), nil},
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
