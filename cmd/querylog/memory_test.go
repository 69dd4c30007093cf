package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMemoryBudget: --max-memory, else $QUERYLOG_MAX_MEMORY, in the Corefile's units; 0 or
// neither is no budget; a bad size names where it came from.
func TestMemoryBudget(t *testing.T) {
	for _, c := range []struct {
		flag, env string
		limit     int64
		source    string
		err       string
	}{
		{"", "", 0, "", ""},
		{"48MiB", "", 48 << 20, "--max-memory", ""},
		{"", "64MB", 64_000_000, "$QUERYLOG_MAX_MEMORY", ""},
		{"1GiB", "64MB", 1 << 30, "--max-memory", ""}, // the flag first
		{"0", "64MB", 0, "--max-memory", ""},
		{"1,5GB", "", 0, "", `--max-memory: invalid size "1,5GB"`},
		{"", "lots", 0, "", `$QUERYLOG_MAX_MEMORY: invalid size "lots"`},
		{"-1MiB", "", 0, "", `--max-memory: invalid size "-1MiB"`},
	} {
		limit, source, err := memoryBudget(c.flag, func(k string) string {
			if k != memoryEnv {
				t.Fatalf("read %s", k)
			}
			return c.env
		})
		if limit != c.limit || (c.limit > 0 && source != c.source) || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("flag %q env %q: %d %q %v; want %d %q %q", c.flag, c.env, limit, source, err, c.limit, c.source, c.err)
		}
	}
}

// TestMemoryGuard: the guard looks at the memory every memoryCheckRows rows; the first look
// with the resident memory past the budget, or the live heap past half of it, stops the query
// with a memoryError; a budget keeps the dictionary caches to a quarter of it.
func TestMemoryGuard(t *testing.T) {
	rss, live := int64(40<<20), int64(20<<20)
	g := &memoryGuard{limit: 64 << 20, source: "--max-memory", rss: func() (int64, error) { return rss, nil }, live: func() int64 { return live }}
	stopsAfter := func() (int, error) {
		for rows := 1; rows <= 2*memoryCheckRows; rows++ {
			if err := g.row(); err != nil {
				return rows, err
			}
		}
		return 0, nil
	}
	if rows, err := stopsAfter(); err != nil {
		t.Fatalf("under the budget: %v after %d rows", err, rows)
	}
	for _, c := range []struct {
		rss, live int64
		want      string
	}{
		{65 << 20, 20 << 20, "stopped at 65.0 MiB of memory, past the budget of 64.0 MiB (--max-memory): narrow --since, or raise the budget where the memory is there"},
		{50 << 20, 33 << 20, "stopped at 33.0 MiB of live heap, past half the budget of 64.0 MiB (--max-memory): narrow --since, or raise the budget where the memory is there"},
	} {
		rss, live = c.rss, c.live
		rows, err := stopsAfter()
		if me := (*memoryError)(nil); !errors.As(err, &me) || rows != memoryCheckRows || err.Error() != c.want {
			t.Errorf("rss %d, live %d: %v after %d rows; want %q after %d", c.rss, c.live, err, rows, c.want, memoryCheckRows)
		}
	}
	// No /proc: the live heap only.
	g.rss, live = func() (int64, error) { return 0, errors.New("no /proc") }, 20<<20
	if err := g.check(); err != nil {
		t.Errorf("without /proc: %v", err)
	}
	if got := g.dictTexts(); got != 64<<20/4/80 {
		t.Errorf("dictionary cache within 64 MiB: %d texts, want %d", got, 64<<20/4/80)
	}
	if got := (*memoryGuard)(nil).dictTexts(); got != dictTexts {
		t.Errorf("dictionary cache without a budget: %d texts, want %d", got, dictTexts)
	}
}

// withoutAge is top's output without the age of the raw rows it read ("the last 5 s"), which
// moves with the clock between two runs (as its window does, unless --since is a time).
func withoutAge(out string) string {
	return rawRowsAge.ReplaceAllString(out, "(the last N s)")
}

var rawRowsAge = regexp.MustCompile(`\(the last [0-9]+ (s|min|h)\)`)

// TestMaxMemory: a command whose process is past --max-memory when it opens the file does not
// start (every process is past 1 MiB); under the budget, rows are read through the guard; a
// bad size is a usage error.
func TestMaxMemory(t *testing.T) {
	db := loggedFile(t)
	_, stderr, code := querylogCmd(t, "top", "domains", "--db", db, "--max-memory", "1MiB")
	if code != exitQuery || !strings.HasPrefix(stderr, "querylog top: stopped at ") || !strings.Contains(stderr, "past the budget of 1.0 MiB (--max-memory)") {
		t.Errorf("top domains --max-memory 1MiB: exit %d, stderr %q", code, stderr)
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	want := withoutAge(mustRun(t, "top", "domains", "--db", db, "--since", since))
	if got := withoutAge(mustRun(t, "top", "domains", "--db", db, "--since", since, "--max-memory", "64GiB")); got != want {
		t.Errorf("top domains --max-memory 64GiB:\n%s\nwant\n%s", got, want)
	}
	t.Setenv(memoryEnv, "1MiB")
	if _, stderr, code := querylogCmd(t, "search", "--db", db); code != exitQuery || !strings.Contains(stderr, "($QUERYLOG_MAX_MEMORY)") {
		t.Errorf("search with $%s=1MiB: exit %d, stderr %q", memoryEnv, code, stderr)
	}
	if got := withoutAge(mustRun(t, "top", "domains", "--db", db, "--since", since, "--max-memory", "0")); got != want {
		t.Errorf("top domains --max-memory 0 with $%s=1MiB:\n%s\nwant\n%s", memoryEnv, got, want)
	}
	t.Setenv(memoryEnv, "1,5MiB")
	if _, stderr, code := querylogCmd(t, "stats", "--db", db); code != exitUsage || !strings.Contains(stderr, `$QUERYLOG_MAX_MEMORY: invalid size "1,5MiB"`) {
		t.Errorf("stats with $%s=1,5MiB: exit %d, stderr %q", memoryEnv, code, stderr)
	}
}
