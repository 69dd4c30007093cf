package testutil

import (
	"testing"

	"github.com/querylog/querylog/internal/freeport"
)

// Ports returns n distinct loopback ports, free for TCP and UDP and never handed out before in
// this process (freeport.Take); it fails the test when there are not n.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Take(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
