package main

import "slices"

// smallest returns the n smallest elements of s by cmp, sorted, reordering s: a partial sort,
// for lists where a few of many thousands are shown (new's 126,340 names of an hour, 20
// shown). A max-heap of the n smallest so far, at the front of s: each other element costs a
// comparison with its top, and a sift where it is smaller.
func smallest[T any](s []T, n int, cmp func(a, b T) int) []T {
	if n >= len(s) {
		slices.SortFunc(s, cmp)
		return s
	}
	if n <= 0 {
		return s[:0]
	}
	h := s[:n]
	for i := n/2 - 1; i >= 0; i-- {
		siftDown(h, i, cmp)
	}
	for _, v := range s[n:] {
		if cmp(v, h[0]) < 0 {
			h[0] = v
			siftDown(h, 0, cmp)
		}
	}
	slices.SortFunc(h, cmp)
	return h
}

// siftDown moves h[i] down the max-heap h to where it belongs.
func siftDown[T any](h []T, i int, cmp func(a, b T) int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && cmp(h[c+1], h[c]) > 0 {
			c++
		}
		if cmp(h[c], h[i]) <= 0 {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
