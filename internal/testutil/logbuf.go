package testutil

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"sync"
	"testing"
	"time"
)

// LogBuffer collects a log or a process's output for several goroutines, and a copy in which
// each line starts with its time since the buffer was made, for failure reports.
type LogBuffer struct {
	mu      sync.Mutex
	start   time.Time
	b       bytes.Buffer
	stamped bytes.Buffer
	midLine bool
}

// NewLogBuffer returns an empty buffer whose times count from now.
func NewLogBuffer() *LogBuffer { return &LogBuffer{start: time.Now()} }

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range p {
		if !s.midLine {
			fmt.Fprintf(&s.stamped, "%8.3fs ", time.Since(s.start).Seconds())
		}
		s.stamped.WriteByte(c)
		s.midLine = c != '\n'
	}
	return s.b.Write(p)
}

// String is what was written.
func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Stamped is what was written, each line with its time, and the marks.
func (s *LogBuffer) Stamped() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stamped.String()
}

// Mark adds a line of the test's own to the stamped copy.
func (s *LogBuffer) Mark(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.midLine {
		s.stamped.WriteByte('\n')
	}
	fmt.Fprintf(&s.stamped, "%8.3fs --- test: %s\n", time.Since(s.start).Seconds(), what)
	s.midLine = false
}

// CaptureLog sends the standard logger (which CoreDNS's plugin loggers use) to a buffer for
// the rest of the test, and shows it if the test fails.
func CaptureLog(t testing.TB) *LogBuffer {
	b := NewLogBuffer()
	log.SetOutput(b)
	t.Cleanup(func() {
		log.SetOutput(io.Discard)
		if t.Failed() {
			t.Logf("log (seconds since capture began):\n%s", b.Stamped())
		}
	})
	return b
}
