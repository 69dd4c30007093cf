//go:build !race

package testutil

// Race says whether the race detector is on (go test -race).
const Race = false
