package main

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// smallest gives what a full sort cut to n gives, for any n, with ties and in any order.
func TestSmallest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 2, 7, 100, 1000} {
		for _, n := range []int{0, 1, 2, 3, 10, 99, 100, 101, 2000} {
			s := make([]int, size)
			for i := range s {
				s[i] = r.IntN(size/2 + 1) // ties
			}
			want := slices.Sorted(slices.Values(s))[:min(n, size)]
			if got := smallest(slices.Clone(s), n, cmp.Compare[int]); !slices.Equal(got, want) {
				t.Errorf("size %d, n %d: %v, want %v", size, n, got, want)
			}
			slices.Sort(s)
			slices.Reverse(s) // each element smaller than the heap's top
			if got := smallest(s, n, cmp.Compare[int]); !slices.Equal(got, want) {
				t.Errorf("size %d, n %d, descending: %v, want %v", size, n, got, want)
			}
		}
	}
}
