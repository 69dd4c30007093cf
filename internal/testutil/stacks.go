package testutil

import (
	"bytes"
	"runtime"
)

// Goroutines returns the number of goroutines of this process and, for each of funcs (as they
// appear in a stack trace, e.g. "querylog.(*writer).run("), how many goroutines have it in
// their stack.
func Goroutines(funcs ...string) (total int, with []int) {
	with = make([]int, len(funcs))
	for _, g := range stacks() {
		total++
		for i, f := range funcs {
			if bytes.Contains(g, []byte(f)) {
				with[i]++
			}
		}
	}
	return total, with
}

// Waiting returns how many goroutines are blocked in state (as a stack trace's header says it,
// e.g. "chan receive", "sync.Mutex.Lock") with fn in their stack.
func Waiting(state, fn string) int {
	n := 0
	for _, g := range stacks() {
		header, _, _ := bytes.Cut(g, []byte("\n"))
		if bytes.Contains(header, []byte("["+state)) && bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}

// stacks returns the stack trace of every goroutine, one each.
func stacks() [][]byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Split(buf[:n], []byte("\n\n"))
		}
		buf = make([]byte, 2*len(buf))
	}
}
