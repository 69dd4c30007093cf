package retry

import (
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{5 * time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 3},
		{11 * time.Second, false, 0},
		{25 * time.Second, true, 1},
		{40 * time.Second, true, 0},
	} {
		ok, suppressed := l.Allow(t0.Add(tc.at))
		if ok != tc.ok || suppressed != tc.suppressed {
			t.Errorf("call %d at +%s: Allow = %v, %d; want %v, %d", i, tc.at, ok, suppressed, tc.ok, tc.suppressed)
		}
	}
}

// TestBackoff: 100 ms doubling up to 5 s, and from 100 ms again after Reset.
func TestBackoff(t *testing.T) {
	var b Backoff
	var got []time.Duration
	for range 8 {
		got = append(got, b.Next())
	}
	want := []time.Duration{First, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, Max, Max}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pauses %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != First {
		t.Errorf("after Reset: %s, want %s", d, First)
	}
}

// TestBackoffBounds: a Backoff with its own bounds doubles between them.
func TestBackoffBounds(t *testing.T) {
	b := Backoff{Start: 10 * time.Millisecond, Limit: 500 * time.Millisecond}
	var got []time.Duration
	for range 8 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10, 20, 40, 80, 160, 320, 500, 500}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
}

// Guard turns a panic into an error marked ErrPanic, counted by database and goroutine.
func TestGuard(t *testing.T) {
	before := promtest.ToFloat64(PanicsTotal.WithLabelValues("g.db", "shipper"))
	err := Guard("g.db", "shipper", func() error { panic("boom\n\x1b[2J") })
	if err == nil || !strings.Contains(err.Error(), `panic in the shipper of g.db: boom\n\x1b[2J`) {
		t.Errorf("error %v", err)
	}
	if got := promtest.ToFloat64(PanicsTotal.WithLabelValues("g.db", "shipper")) - before; got != 1 {
		t.Errorf("panics_total rose by %v, want 1", got)
	}
	if err := Guard("g.db", "shipper", func() error { return nil }); err != nil {
		t.Errorf("no panic: %v", err)
	}
}
