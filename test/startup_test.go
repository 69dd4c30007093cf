package test

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// ready reports whether the ready plugin at port answers 200.
func ready(port int) bool {
	c := http.Client{Timeout: 10 * time.Second} // a busy machine can take seconds to answer
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestStartLocked starts CoreDNS while another process holds the database's write lock, longer
// than the 1s busy timeout: CoreDNS starts and answers anyway, querylog is not ready, buffers
// the entries, counts the failed attempts in flush_errors_total and logs them at most once per
// 10s; once the lock is released it opens the database, becomes ready and writes everything.
func TestStartLocked(t *testing.T) {
	t.Parallel()
	readyPort := testutil.Ports(t, 1)[0]
	s := startServer(t, "flush_interval 200ms", fmt.Sprintf("ready 127.0.0.1:%d", readyPort))
	first := s.probes
	s.stop() // the database now exists, with the current schema

	unlock := testutil.Lock(t, s.db)
	held := time.Now()
	s.probes = nil
	s.start() // fails here if a lock keeps CoreDNS from starting
	l := testutil.StartLoad(t, "udp", s.dns, "l", 2, 200, 0)
	l.Wait()
	s.waitMetric("failed attempts to open the database", 10*time.Second, func(m testutil.Metrics) bool {
		return m.Get(s.db, "flush_errors_total") >= 2
	})
	if ready(readyPort) {
		t.Errorf("ready while the database cannot be opened")
	}
	if m := s.mustScrape(); m.Get(s.db, "written_total") != 0 || m.Get(s.db, "buffer_size") == 0 {
		t.Errorf("while locked: %v written, %v buffered; want nothing written, the entries buffered", m.Get(s.db, "written_total"), m.Get(s.db, "buffer_size"))
	}
	time.Sleep(3*time.Second - time.Since(held))
	unlock()

	testutil.WaitFor(t, 15*time.Second, "querylog to become ready", func() bool { return ready(readyPort) })
	m := s.waitMetric("the buffer to drain", 15*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
	s.stop()
	answered, failed := l.Results()
	testutil.CheckLogged(t, append(append(answered, first...), s.probes...), failed, s.db)
	if d := m.Get(s.db, "dropped_total"); d != 0 {
		t.Errorf("dropped %v, want 0", d)
	}
	if lines := len(openFailedRE.FindAllString(s.out.String(), -1)); lines < 1 || lines > 2 {
		t.Errorf("%d lines about failing to open the database in about 3s, want 1 or 2 (rate-limited)", lines)
	}
	s.checkLog("WARNING: DATA RACE")
}

var openFailedRE = regexp.MustCompile(`(?m)^\[(ERROR|WARNING)\] plugin/querylog: (Opening|Cannot open) .*`)
