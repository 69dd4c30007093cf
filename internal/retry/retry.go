// Package retry holds what querylog's retrying goroutines (the flusher, the checkpointer, the
// shipper) share: the backoff between failed attempts, the limiter of repeated log lines, and
// the guard that turns a panic into a failed attempt.
package retry

import "time"

// LogEvery bounds every repeated log line of a goroutine to one per period.
const LogEvery = 10 * time.Second

// Backoff after a failed attempt: doubles from First up to Max.
const (
	First = 100 * time.Millisecond
	Max   = 5 * time.Second
)

// Backoff is the pause before the next attempt, from Start up to Limit; zero fields take First
// and Max.
type Backoff struct {
	Start, Limit time.Duration
	next         time.Duration
}

// Next returns the pause before this attempt, and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	first, limit := First, Max
	if b.Start > 0 {
		first = b.Start
	}
	if b.Limit > 0 {
		limit = b.Limit
	}
	d := max(b.next, first)
	b.next = min(2*d, limit)
	return d
}

// Reset starts again from First: the last attempt worked.
func (b *Backoff) Reset() { b.next = 0 }

// Limiter lets a repeated log line through at most once per Every and counts the rest.
type Limiter struct {
	Every      time.Duration
	last       time.Time
	suppressed int
}

// Allow reports whether a line may be logged at now and, if so, how many were suppressed since
// the last one.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}
