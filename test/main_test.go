// Package test runs the custom CoreDNS build (cmd/coredns) as a real process on loopback and
// checks querylog's guarantees across signals, reloads, kills and database faults, by reading
// the SQLite file and scraping /metrics.
package test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	_ "modernc.org/sqlite"
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

// freePort returns a loopback port free for both UDP and TCP at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		p, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			p.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// syncBuffer collects a process's output, and a copy with each line's time since start for
// the failure report.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	start   time.Time
	stamped bytes.Buffer
	bol     bool
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{start: time.Now(), bol: true} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range p {
		if s.bol {
			fmt.Fprintf(&s.stamped, "%8.3fs ", time.Since(s.start).Seconds())
		}
		s.stamped.WriteByte(c)
		s.bol = c == '\n'
	}
	return s.b.Write(p)
}

// Stamped is the output with times.
func (s *syncBuffer) Stamped() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stamped.String()
}

// mark adds a line of the test's own to the stamped copy.
func (s *syncBuffer) mark(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bol {
		s.stamped.WriteByte('\n')
	}
	fmt.Fprintf(&s.stamped, "%8.3fs --- test: %s\n", time.Since(s.start).Seconds(), what)
	s.bol = true
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	out         *syncBuffer
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

// newServer prepares a folder, ports and a Corefile; start runs it.
func newServer(t *testing.T, opts, extra string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, corefile: filepath.Join(dir, "Corefile"), db: filepath.Join(dir, "q.db"),
		port: freePort(t), mport: freePort(t)}
	s.dns = fmt.Sprintf("127.0.0.1:%d", s.port)
	s.write(s.config(opts, extra, "192.0.2.1"))
	return s
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
	s.out = newSyncBuffer()
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
	go func() { s.exitErr = cmd.Wait(); out.mark("exited"); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
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
	s.out.mark(sig.String())
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (s *server) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatalf("coredns did not exit within %s:\n%s", timeout, s.out)
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

// waitLog waits until the output contains n occurrences of line.
func (s *server) waitLog(line string, n int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(s.out.String(), line) < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("no %d× %q in the log after %s:\n%s", n, line, timeout, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics is a scrape: every sample by name, with its labels.
type metrics map[string][]sample

type sample struct {
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

func (s *server) scrape() (metrics, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.mport))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], map[string]string{}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			for _, kv := range labelRE.FindAllStringSubmatch(name[i:], -1) {
				labels[kv[1]] = kv[2]
			}
			name = name[:i]
		}
		m[name] = append(m[name], sample{labels, v})
	}
	return m, sc.Err()
}

// mustScrape scrapes or fails.
func (s *server) mustScrape() metrics {
	s.t.Helper()
	m, err := s.scrape()
	if err != nil {
		s.t.Fatalf("scraping metrics: %v", err)
	}
	return m
}

// get sums querylog_<name> over the samples for this server's database whose labels include
// the given pairs (absent counters are 0).
func (m metrics) get(db, name string, kv ...string) float64 {
	var v float64
next:
	for _, s := range m["coredns_querylog_"+name] {
		if s.labels["db"] != db {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		v += s.value
	}
	return v
}

// waitMetric waits until cond holds for a scrape of s.
func (s *server) waitMetric(what string, timeout time.Duration, cond func(m metrics) bool) metrics {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m, err := s.scrape(); err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			m, _ := s.scrape()
			s.t.Fatalf("timed out after %s waiting for %s; querylog metrics: %v", timeout, what, m.querylog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m metrics) querylog() map[string][]sample {
	out := map[string][]sample{}
	for k, v := range m {
		if strings.HasPrefix(k, "coredns_querylog_") {
			out[k] = v
		}
	}
	return out
}

// loader is a steady query load: workers send A queries for unique names until stopped or
// until each has sent max, and remember which were answered and which not.
type loader struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	answered []string
	failed   []string
	n        atomic.Int64
}

func startLoad(t *testing.T, network, addr, prefix string, workers, max int, gap time.Duration) *loader {
	t.Helper()
	l := &loader{stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
						time.Sleep(20 * time.Millisecond)
						continue
					}
				}
				name := fmt.Sprintf("%s-%d-%d.example.org.", prefix, w, i)
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				r, _, err := c.ExchangeWithConn(m, conn)
				l.mu.Lock()
				if err != nil || r == nil || r.Id != m.Id {
					l.failed = append(l.failed, name)
					conn.Close()
					conn = nil
				} else {
					l.answered = append(l.answered, name)
					l.n.Add(1)
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
func (l *loader) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Wait waits for the workers to send their max queries.
func (l *loader) Wait() { l.wg.Wait() }

func (l *loader) count() int { return int(l.n.Load()) }

func (l *loader) waitAnswers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for l.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d answers after 60s", l.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *loader) results() (answered, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.answered...), append([]string(nil), l.failed...)
}

// results merges the results of several loads.
func results(ls ...*loader) (answered, failed []string) {
	for _, l := range ls {
		a, f := l.results()
		answered, failed = append(answered, a...), append(failed, f...)
	}
	return answered, failed
}

// names reads the qname of every row of db, with its number of rows.
func names(t *testing.T, db string) map[string]int {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rows, err := d.Query("SELECT qname FROM queries")
	if err != nil {
		t.Fatalf("reading %s: %v", db, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[n]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkLogged checks db against the queries: every answered name is exactly one row, and every
// other row is a query whose answer the client did not wait for. It returns the rows.
func checkLogged(t *testing.T, db string, answered, failed []string) map[string]int {
	t.Helper()
	rows := names(t, db)
	missing, dup, extra := 0, 0, 0
	seen := map[string]bool{}
	for _, n := range answered {
		seen[n] = true
		switch c := rows[n]; {
		case c == 0:
			if missing++; missing <= 5 {
				t.Errorf("answered query %s is not in the database", n)
			}
		case c > 1:
			if dup++; dup <= 5 {
				t.Errorf("answered query %s is logged %d times", n, c)
			}
		}
	}
	isFailed := map[string]bool{}
	for _, n := range failed {
		isFailed[n] = true
	}
	for n, c := range rows {
		if !seen[n] && (!isFailed[n] || c > 1) {
			if extra++; extra <= 5 {
				t.Errorf("row %s (x%d) is not an answered query", n, c)
			}
		}
	}
	if missing+dup+extra > 0 {
		t.Errorf("%d answered, %d rows: %d missing, %d duplicated, %d unexplained", len(answered), len(rows), missing, dup, extra)
	}
	return rows
}

// sqlite3 runs sql on path with the sqlite3 command-line tool.
func sqlite3(t *testing.T, path, sql string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", path, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v: %s", path, sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func needSQLite3(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 command-line tool not installed (apt-get install sqlite3)")
	}
}

// cli is an interactive sqlite3 session on a pipe, to hold a transaction open.
type cli struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startCLI(t *testing.T, path string) *cli {
	t.Helper()
	needSQLite3(t)
	cmd := exec.Command("sqlite3", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &cli{cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// run sends sql and waits for the output line marker, which sql must print.
func (c *cli) run(t *testing.T, sql, marker string) {
	t.Helper()
	if _, err := io.WriteString(c.in, sql+"\n"); err != nil {
		t.Fatal(err)
	}
	var out []string
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("sqlite3 exited; output %q", out)
			}
			if l == marker {
				return
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("sqlite3: no %q after %q; output %q", marker, sql, out)
		}
	}
}

// lock takes the database's write lock (BEGIN EXCLUSIVE) and holds it until unlock.
func lock(t *testing.T, db string) (unlock func()) {
	t.Helper()
	c := startCLI(t, db)
	c.run(t, ".timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 'locked';", "locked")
	return func() {
		c.run(t, "COMMIT;\nSELECT 'unlocked';", "unlocked")
		io.WriteString(c.in, ".quit\n")
		c.in.Close()
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("sqlite3 did not exit")
		}
	}
}

// dbFDs counts the process's open file descriptors on path itself (one per connection).
func dbFDs(pid int, path string) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}
