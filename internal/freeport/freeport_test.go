package freeport

import (
	"testing"
)

// TestTakeOutsideEphemeralRange: the ports are distinct, below (or above) the kernel's
// ephemeral range, and locked against other processes for as long as this one lives.
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

func TestOutsideEphemeralRange(t *testing.T) {
	for _, c := range []struct {
		ephLo, ephHi, lo, hi int
		ok                   bool
	}{
		{32768, 60999, 32768 - rangeSpan, 32768, true}, // Linux's default
		{1024, 50000, 50001, 50001 + rangeSpan, true},
		{10000, 60000, 0, 0, false},
		{1024, 65535, 0, 0, false},
	} {
		lo, hi, ok := outside(c.ephLo, c.ephHi)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("outside(%d, %d) = %d, %d, %v; want %d, %d, %v", c.ephLo, c.ephHi, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}
