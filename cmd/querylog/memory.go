package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"

	"github.com/querylog/querylog/internal/bytesize"
)

// A command's memory. kubectl exec runs the command in CoreDNS's container
// (docs/kubernetes.md), whose memory limit it then shares: on cgroup v2, Kubernetes (1.28 on)
// kills every process of a container that passes it, CoreDNS with the command. So a command
// can keep to a budget: --max-memory, or $QUERYLOG_MAX_MEMORY, which the manifests set in
// CoreDNS's environment (that kubectl exec passes on). Within a budget the command
//   - keeps each of its dictionary caches (names, clients, pods) to a quarter of it (dictTexts);
//   - asks Go's collector to keep Go's memory under 5/8 of it (the rest is the binary's pages,
//     SQLite's own memory and room), collecting more often where it needs to;
//   - stops, with an error that says so, once its resident memory passes the budget or the
//     live heap passes half of it (past that the collector would run all the time and the
//     command crawl before it passes the budget), looking every memoryCheckRows rows.

// memoryEnv is the environment variable of the budget when --max-memory is not given.
const memoryEnv = "QUERYLOG_MAX_MEMORY"

// memoryError is why a command stopped: its resident memory passed its budget, or its live
// heap half of it.
type memoryError struct {
	rss, limit int64
	live       int64  // set when the live heap, not the resident memory, passed its share
	source     string // where the budget comes from: --max-memory or the environment
}

func (e *memoryError) Error() string {
	what := mib(e.rss) + " of memory, past the budget of " + mib(e.limit)
	if e.live > 0 {
		what = fmt.Sprintf("%s of live heap, past half the budget of %s", mib(e.live), mib(e.limit))
	}
	return fmt.Sprintf("stopped at %s (%s): narrow --since, or raise the budget where the memory is there", what, e.source)
}

func mib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB" }

// memoryBudget is the budget in bytes (0: none) and where it comes from: flag (--max-memory's
// value, "" if not given), else the environment.
func memoryBudget(flag string, getenv func(string) string) (int64, string, error) {
	v, source := flag, "--max-memory"
	if v == "" {
		v, source = getenv(memoryEnv), "$"+memoryEnv
	}
	if v == "" {
		return 0, "", nil
	}
	n, err := bytesize.Parse(v)
	if err != nil || n > 1<<50 {
		return 0, "", usageError("%s: invalid size %q: e.g. 48MiB, 0 for no budget", source, v)
	}
	return int64(n), source, nil
}

// memoryCheckRows is how many rows a command reads between two looks at its memory: a few MB
// of allocations at most, and a read of /proc/self/statm (microseconds) every 1,024 rows.
const memoryCheckRows = 1024

// memoryGuard keeps a command to its budget: it refuses to start past it, and a query stops
// at the first look past it (database.each).
type memoryGuard struct {
	limit  int64 // bytes
	source string
	rows   int // rows read since the last look
	rss    func() (int64, error)
	live   func() int64 // the heap the last collection kept
}

// newMemoryGuard starts keeping the command to limit bytes; nil for no budget (0).
func newMemoryGuard(limit int64, source string) (*memoryGuard, error) {
	if limit <= 0 {
		return nil, nil
	}
	g := &memoryGuard{limit: limit, source: source, rss: residentBytes, live: liveHeap}
	if err := g.check(); err != nil {
		return nil, &exitError{exitQuery, err}
	}
	debug.SetMemoryLimit(limit / 8 * 5)
	return g, nil
}

// fork is a guard of the same budget for a second connection read at the same time (beside):
// its own count of rows, the same looks at the process's memory.
func (g *memoryGuard) fork() *memoryGuard {
	if g == nil {
		return nil
	}
	return &memoryGuard{limit: g.limit, source: g.source, rss: g.rss, live: g.live}
}

// dictTexts is how many texts each dictionary cache holds: dictTexts, or within a budget as
// many as a quarter of it holds (some 80 bytes a text).
func (g *memoryGuard) dictTexts() int {
	if g == nil {
		return dictTexts
	}
	return int(max(1024, min(dictTexts, g.limit/4/80)))
}

// row counts a row read, and every memoryCheckRows checks the budget.
func (g *memoryGuard) row() error {
	if g.rows++; g.rows < memoryCheckRows {
		return nil
	}
	g.rows = 0
	return g.check()
}

// check returns a memoryError if the resident memory is past the budget (not looked at where
// /proc/self/statm cannot be read), or the live heap past half of it.
func (g *memoryGuard) check() error {
	n, err := g.rss()
	if err == nil && n > g.limit {
		return &memoryError{rss: n, limit: g.limit, source: g.source}
	}
	if live := g.live(); live > g.limit/2 {
		return &memoryError{rss: n, live: live, limit: g.limit, source: g.source}
	}
	return nil
}

// liveHeap is the heap the last collection kept (runtime/metrics).
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// residentBytes is this process's resident memory, from /proc/self/statm (in pages).
func residentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize()), err
}
