package freeport

import (
	"testing"
)

// TestTakeOutsideEphemeralRange: the ports are distinct, in portRange (beside the kernel's
// ephemeral range), and locked against other processes for as long as this one lives.
func TestTakeOutsideEphemeralRange(t *testing.T) {
	lo, hi, err := portRange()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := lockDir()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 3 {
		ports, err := Take(4)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < lo || p >= hi {
				t.Errorf("port %d is outside [%d, %d)", p, lo, hi)
			}
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
			// Another open file description stands for another process: flock tells them apart.
			if f, ok := lockPort(dir, p); ok {
				f.Close()
				t.Errorf("port %d: its lock could be taken again", p)
			}
		}
	}
}

// The ports handed out lie beside the kernel's ephemeral range: below it where there is room,
// else above it, else (no room on either side) within it.
func TestOutsideEphemeralRange(t *testing.T) {
	for _, c := range []struct{ ephLo, ephHi, lo, hi int }{
		{32768, 60999, 32768 - rangeSpan, 32768}, // Linux's default
		{10000, 60999, 1024, 10000},              // fewer than rangeSpan below
		{1024, 50000, 50001, 50001 + rangeSpan},  // none below
		{1500, 60000, 60001, 65536},              // fewer than rangeSpan above
		{1024, 65535, 1024, 65536},               // no room: the range itself
		{1500, 65000, 1500, 65001},
	} {
		if lo, hi := outside(c.ephLo, c.ephHi); lo != c.lo || hi != c.hi {
			t.Errorf("outside(%d, %d) = [%d, %d); want [%d, %d)", c.ephLo, c.ephHi, lo, hi, c.lo, c.hi)
		}
	}
}
