// Package test runs the custom CoreDNS build (cmd/coredns) as a real process on loopback and
// checks querylog's guarantees across signals, reloads, kills and database faults, by reading
// the SQLite file and scraping /metrics.
package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// coredns is the binary built by TestMain.
var coredns string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "querylog-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coredns = filepath.Join(dir, "coredns")
	args := []string{"build", "-o", coredns}
	if raceEnabled { // a race-checked test run checks the server process too
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	build := exec.CommandContext(ctx, "go", append(args, "./cmd/coredns")...)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	err = build.Run()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building ./cmd/coredns: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one coredns process with its Corefile, database and output.
type server struct {
	t           *testing.T
	dir         string
	corefile    string // path
	db          string
	port, mport int
	dns         string // 127.0.0.1:port
	cmd         *exec.Cmd
	out         *testutil.LogBuffer
	exited      chan struct{}
	exitErr     error
	probes      []string // names answered while waiting for the server to come up
}

// config renders the Corefile: one server block answering A under example.org, exporting
// metrics, logging to s.db with opts; extra goes into the block too.
func (s *server) config(opts, extra, ip string) string {
	return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    prometheus 127.0.0.1:%d
    %s
    querylog %s {
        %s
    }
    template IN A example.org {
        answer "{{ .Name }} 60 IN A %s"
    }
}
`, s.port, s.mport, extra, s.db, opts, ip)
}

// startServer prepares a folder, ports and a Corefile, and starts coredns on them.
func startServer(t *testing.T, opts, extra string) *server {
	t.Helper()
	s := newServer(t)
	s.write(s.config(opts, extra, "192.0.2.1"))
	s.start()
	return s
}

// newServer prepares a folder and ports for a server, and names its Corefile and database in
// that folder; it writes and starts nothing.
func newServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	ports := testutil.Ports(t, 2)
	s := &server{t: t, dir: dir, corefile: filepath.Join(dir, "Corefile"), db: filepath.Join(dir, "q.db"),
		port: ports[0], mport: ports[1]}
	s.dns = fmt.Sprintf("127.0.0.1:%d", s.port)
	return s
}

// failToStart runs coredns on the Corefile, expecting it to exit by itself (within
// testutil.Patience), and returns its output.
func (s *server) failToStart() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	cmd := exec.CommandContext(ctx, coredns, "-conf", s.corefile)
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		s.t.Fatalf("coredns did not exit within %s:\n%s", testutil.Patience, out)
	}
	if err == nil {
		s.t.Fatalf("coredns exited with 0, want a failure:\n%s", out)
	}
	return string(out)
}

// write replaces the Corefile.
func (s *server) write(corefile string) {
	s.t.Helper()
	if err := os.WriteFile(s.corefile, []byte(corefile), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// start runs coredns and waits until it answers DNS and serves metrics.
func (s *server) start() {
	t := s.t
	t.Helper()
	s.out = testutil.NewLogBuffer()
	out := s.out
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coredns output (seconds since start):\n%s", out.Stamped())
		}
	})
	s.exited = make(chan struct{})
	s.cmd = exec.Command(coredns, "-conf", s.corefile)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, exited := s.cmd, s.exited
	go func() { s.exitErr = cmd.Wait(); out.Mark("exited"); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(testutil.Patience)
	// Until CoreDNS listens, a probe is refused at once; once it does, a reply slower than the
	// client's timeout would be a row of a query the test thinks unanswered: wait for it.
	c := &dns.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-exited:
			t.Fatalf("coredns exited: %v\n%s", s.exitErr, s.out)
		default:
		}
		name := fmt.Sprintf("probe%d-%d.example.org.", time.Now().UnixNano(), i)
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if r, _, err := c.Exchange(m, s.dns); err == nil && r.Rcode == dns.RcodeSuccess {
			s.probes = append(s.probes, name)
			if _, err := s.scrape(); err == nil {
				return
			}
		} else if err == nil {
			s.probes = append(s.probes, name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("coredns did not come up:\n%s", s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to the process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.out.Mark(sig.String())
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code. expected is how long that
// takes on an idle machine; it fails (and kills the process) after the longer of expected and
// testutil.Patience. A test that promises an exit within some time measures it itself.
func (s *server) wait(expected time.Duration) int {
	s.t.Helper()
	limit := max(expected, testutil.Patience)
	select {
	case <-s.exited:
	case <-time.After(limit):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatalf("coredns did not exit within %s:\n%s", limit, s.out)
	}
	if s.cmd.ProcessState == nil {
		return -1
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and expects a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		s.t.Errorf("coredns exited with %d after SIGTERM:\n%s", code, s.out)
	}
}

// checkLog fails on data races and on lines matching bad.
func (s *server) checkLog(bad ...string) {
	s.t.Helper()
	out := s.out.String()
	if strings.Contains(out, "WARNING: DATA RACE") {
		s.t.Errorf("data race in coredns:\n%s", out)
	}
	for _, b := range bad {
		if strings.Contains(out, b) {
			s.t.Errorf("coredns log contains %q:\n%s", b, out)
		}
	}
}

// waitLog waits until the output contains n occurrences of line: expected is how long that
// takes on an idle machine, and it fails after the longer of expected and testutil.Patience.
func (s *server) waitLog(line string, n int, expected time.Duration) {
	s.t.Helper()
	limit := max(expected, testutil.Patience)
	if !testutil.Poll(limit, 20*time.Millisecond, func() bool { return strings.Count(s.out.String(), line) >= n }) {
		s.t.Fatalf("no %d× %q in the log after %s:\n%s", n, line, limit, s.out)
	}
}

// waitLogMatch waits until the output has n matches of re, as waitLog does for a line.
func (s *server) waitLogMatch(re *regexp.Regexp, n int, expected time.Duration) {
	s.t.Helper()
	limit := max(expected, testutil.Patience)
	if !testutil.Poll(limit, 20*time.Millisecond, func() bool { return len(re.FindAllString(s.out.String(), -1)) >= n }) {
		s.t.Fatalf("no %d× %q in the log after %s:\n%s", n, re, limit, s.out)
	}
}

func (s *server) scrape() (testutil.Metrics, error) {
	return testutil.Scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.mport))
}

// mustScrape scrapes, trying again after a failed scrape (a busy machine can make one time
// out), and fails the test if none succeeds within testutil.Patience.
func (s *server) mustScrape() testutil.Metrics {
	s.t.Helper()
	var m testutil.Metrics
	var err error
	if !testutil.Poll(testutil.Patience, 50*time.Millisecond, func() bool { m, err = s.scrape(); return err == nil }) {
		s.t.Fatalf("scraping metrics: %v", err)
	}
	return m
}

// waitMetric waits until cond holds for a scrape of s: expected is how long that takes on an
// idle machine, and it fails after the longer of expected and testutil.Patience.
func (s *server) waitMetric(what string, expected time.Duration, cond func(m testutil.Metrics) bool) testutil.Metrics {
	s.t.Helper()
	var m testutil.Metrics
	start, limit := time.Now(), max(expected, testutil.Patience)
	if !testutil.Poll(limit, 50*time.Millisecond, func() bool {
		var err error
		m, err = s.scrape()
		return err == nil && cond(m)
	}) {
		s.t.Fatalf("timed out after %s waiting for %s; querylog metrics:\n%s", limit, what, m)
	}
	if took := time.Since(start); took > expected {
		s.t.Logf("waited %s for %s (%s on an idle machine)", took.Round(time.Millisecond), what, expected)
	}
	return m
}
