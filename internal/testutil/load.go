package testutil

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Load is a steady query load: workers send A queries for unique names until stopped or until
// each has sent its maximum, and remember which were answered and which not.
type Load struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	answered []Answer
	failed   []string
}

// Answer is one answered query: its name and when it was sent and its reply received.
type Answer struct {
	Name       string
	Sent, Recv time.Time
}

// StartLoad starts workers sending <prefix>-<worker>-<i>.example.org. A queries to addr over
// network ("udp" or "tcp"), each at most max of them, gap apart (0: as fast as it can). A query
// without a reply within 2s is failed; its connection is then closed, so that a late reply is
// not taken for the next query's. The load stops by itself after 10 minutes (a test waiting
// for a condition under load may take minutes on a busy machine), and at the end of the test.
func StartLoad(t testing.TB, network, addr, prefix string, workers, max int, gap time.Duration) *Load {
	t.Helper()
	l := &Load{stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &dns.Client{Net: network, Timeout: 2 * time.Second}
			var conn *dns.Conn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for i := 0; i < max; i++ {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if conn == nil {
					var err error
					if conn, err = c.Dial(addr); err != nil {
						conn = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				name := fmt.Sprintf("%s-%d-%d.example.org.", prefix, w, i)
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				sent := time.Now()
				r, _, err := c.ExchangeWithConn(m, conn)
				recv := time.Now()
				l.mu.Lock()
				if err != nil || r == nil || r.Id != m.Id {
					l.failed = append(l.failed, name)
					conn.Close()
					conn = nil
				} else {
					l.answered = append(l.answered, Answer{name, sent, recv})
				}
				l.mu.Unlock()
				if gap > 0 {
					time.Sleep(gap)
				}
			}
		}()
	}
	go func() { l.wg.Wait(); cancel() }()
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the workers.
func (l *Load) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Wait waits for the workers to send their maximum.
func (l *Load) Wait() { l.wg.Wait() }

// Count is the number of queries answered so far.
func (l *Load) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answered)
}

// WaitAnswers waits until n queries have been answered, for at most Patience.
func (l *Load) WaitAnswers(t testing.TB, n int) {
	t.Helper()
	if !Poll(Patience, 5*time.Millisecond, func() bool { return l.Count() >= n }) {
		t.Fatalf("only %d of %d answers after %s", l.Count(), n, Patience)
	}
}

// Answers returns the queries answered so far, with their times.
func (l *Load) Answers() []Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Answer(nil), l.answered...)
}

// Results returns the names answered and the names not answered so far.
func (l *Load) Results() (answered, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answered {
		answered = append(answered, a.Name)
	}
	return answered, append([]string(nil), l.failed...)
}

// Results merges the results of several loads.
func Results(loads ...*Load) (answered, failed []string) {
	for _, l := range loads {
		a, f := l.Results()
		answered, failed = append(answered, a...), append(failed, f...)
	}
	return answered, failed
}
