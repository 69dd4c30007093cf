package testutil

import (
	"bytes"
	"runtime"
)

// Goroutines returns the number of goroutines of this process and, for each of funcs (as they
// appear in a stack trace, e.g. "querylog.(*writer).run("), how many goroutines have it in
// their stack.
func Goroutines(funcs ...string) (total int, with []int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	with = make([]int, len(funcs))
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		total++
		for i, f := range funcs {
			if bytes.Contains(g, []byte(f)) {
				with[i]++
			}
		}
	}
	return total, with
}
