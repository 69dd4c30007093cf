package testutil

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// fdTargets returns the paths that process pid's file descriptors point to (pid 0: this
// process).
func fdTargets(pid int) ([]string, error) {
	if pid == 0 {
		pid = os.Getpid()
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, err
	}
	return p.FileDescriptorTargets()
}

// OpenFiles counts process pid's file descriptors (pid 0: this process) on files whose path
// starts with prefix. It skips the test where /proc cannot be read, so it must be called from
// the test's goroutine.
func OpenFiles(t testing.TB, pid int, prefix string) int {
	t.Helper()
	targets, err := fdTargets(pid)
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	n := 0
	for _, target := range targets {
		if strings.HasPrefix(target, prefix) {
			n++
		}
	}
	return n
}

// SettledOpenFiles is OpenFiles once the count has not changed for 1.5s: connections opened
// lazily (the checkpointer's, on its first tick) are then open, so a later count compares like
// with like. It fails the test if the count keeps changing for 8s.
func SettledOpenFiles(t testing.TB, pid int, prefix string) int {
	t.Helper()
	n, since := OpenFiles(t, pid, prefix), time.Now()
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if m := OpenFiles(t, pid, prefix); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 1500*time.Millisecond {
			return n
		}
	}
	t.Fatalf("open files under %s keep changing", prefix)
	return 0
}

// Conns counts process pid's file descriptors (pid 0: this process) on path itself: one per
// SQLite connection. It returns -1 where /proc cannot be read, and may be called from any
// goroutine.
func Conns(pid int, path string) int {
	targets, err := fdTargets(pid)
	if err != nil {
		return -1
	}
	n := 0
	for _, target := range targets {
		if target == path {
			n++
		}
	}
	return n
}
