// Command memory measures CoreDNS's memory with querylog's answers option on while the
// database's write lock is held, so that nothing is flushed and the buffer only fills: the
// bound that buffer_bytes and answers MAXBYTES promise (issue 19, item 2).
//
// It builds ./cmd/coredns, starts a loopback upstream written with miekg/dns that answers
// every name under one zone per reply size, runs CoreDNS forwarding to it with querylog, takes
// the database's write lock, sends a bounded number of TCP queries for unique names of one
// size, waits until querylog has counted every one of them, and reads VmRSS and VmHWM from
// /proc/PID/status and querylog's metrics. Everything listens on 127.0.0.1.
//
//	go run ./bench/memory                                   # every size, default options
//	go run ./bench/memory -sizes 64k -answers 65536         # the budget binds, not buffer_size
//	go run ./bench/memory -queries 60000 -options 'buffer_size 50000'
//
// Reply sizes: small (1 A record), 4k (250 A records, 4 KB), 64k (4,090 A records, 64 KB),
// cname64k (65 KB of compressed CNAMEs to one 255-octet name: 4.6 MB of answer data as text).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/querylog/querylog/internal/dblock"
)

const zone = "mem.test."

type config struct {
	sizes      []string
	queries    int
	workers    int
	answers    string // answers MAXBYTES; "" for the default
	options    string // more querylog options, ';' between lines
	gomaxprocs int
	corednsBin string
	repo       string
	keep       bool
	control    bool // CoreDNS without querylog: what the replies cost CoreDNS itself
}

func main() {
	var c config
	var sizes string
	flag.StringVar(&sizes, "sizes", "small,4k,64k,cname64k", "reply sizes to measure, one CoreDNS each")
	flag.IntVar(&c.queries, "queries", 15000, "queries per size (TCP, unique names)")
	flag.IntVar(&c.workers, "workers", 8, "concurrent TCP connections")
	flag.StringVar(&c.answers, "answers", "", "answers MAXBYTES (default: the plugin's, 512)")
	flag.StringVar(&c.options, "options", "buffer_size 10000", "more querylog options, lines separated by ';'")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 2, "GOMAXPROCS of CoreDNS")
	flag.StringVar(&c.corednsBin, "coredns", "", "CoreDNS binary to use instead of building ./cmd/coredns")
	flag.StringVar(&c.repo, "repo", ".", "the querylog checkout")
	flag.BoolVar(&c.keep, "keep", false, "keep the work folder")
	flag.BoolVar(&c.control, "control", false, "run CoreDNS without querylog, for what the replies cost CoreDNS itself")
	flag.Parse()
	c.sizes = strings.Split(sizes, ",")
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	work, err := os.MkdirTemp("", "querylog-memory-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(work)
	}
	bin := c.corednsBin
	if bin == "" {
		bin = filepath.Join(work, "coredns")
		build := exec.Command("go", "build", "-o", bin, "./cmd/coredns")
		build.Dir = c.repo
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/coredns: %v\n%s", err, out)
		}
	}
	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.stop()

	fmt.Printf("| reply | answer_data | sent | entries buffered | dropped (reason) | buffer bytes | budget | RSS idle | RSS | HWM | HWM - budget | GOMAXPROCS |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, size := range c.sizes {
		r, err := measure(c, bin, work, up.addr, size)
		if err != nil {
			return fmt.Errorf("%s: %w", size, err)
		}
		fmt.Println(r)
	}
	return nil
}

type result struct {
	size                   string
	dataBytes              int // answer_data of one reply, in full
	sent                   int
	buffered, bytes, limit float64
	dropped                string
	idle, rss, hwm         int64 // kB
	gomaxprocs             int
}

func (r result) String() string {
	mib := func(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	return fmt.Sprintf("| %s | %s | %d | %.0f | %s | %.1f MiB | %.1f MiB | %s | %s | %s | %s | %d |",
		r.size, fullText(r.dataBytes), r.sent, r.buffered, r.dropped, r.bytes/(1<<20), r.limit/(1<<20),
		mib(r.idle), mib(r.rss), mib(r.hwm), mib(r.hwm-int64(r.limit)/1024), r.gomaxprocs)
}

func fullText(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MB in full", float64(n)/1e6)
	}
	return fmt.Sprintf("%d B in full", n)
}

// measure runs one CoreDNS for one reply size.
func measure(c config, bin, work, upstream, size string) (result, error) {
	dir := filepath.Join(work, size)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return result{}, err
	}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	db := filepath.Join(dir, "q.db")
	opts := "answers " + c.answers
	for _, o := range strings.Split(c.options, ";") {
		opts += "\n        " + strings.TrimSpace(o)
	}
	ql := fmt.Sprintf("querylog %s {\n        %s\n    }", db, opts)
	if c.control {
		ql = "# no querylog (-control)"
	}
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    prometheus 127.0.0.1:%d
    %s
    forward . %s
}
`, ports[0], ports[1], ql, upstream)
	cf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(cf, []byte(corefile), 0o644); err != nil {
		return result{}, err
	}
	cmd := exec.Command(bin, "-conf", cf)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(c.gomaxprocs))
	logf, err := os.Create(filepath.Join(dir, "coredns.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()

	// Ready: answers DNS over TCP and serves metrics, and the database exists.
	if !poll(30*time.Second, func() bool {
		_, err := exchange(dnsAddr, "ready.small."+zone)
		_, merr := scrape(metricsURL)
		_, serr := os.Stat(db)
		return err == nil && merr == nil && (serr == nil || c.control)
	}) {
		return result{}, fmt.Errorf("CoreDNS did not start; see %s", logf.Name())
	}
	if c.control {
		idle, _, err := memory(cmd.Process.Pid)
		if err != nil {
			return result{}, err
		}
		if err := send(dnsAddr, size, c.queries, c.workers); err != nil {
			return result{}, err
		}
		rss, hwm, err := memory(cmd.Process.Pid)
		return result{size: size + " (no querylog)", dataBytes: dataBytes(size), sent: c.queries, dropped: "-",
			idle: idle, rss: rss, hwm: hwm, gomaxprocs: c.gomaxprocs}, err
	}
	// Let the first (probe) entry be written, then hold the write lock.
	poll(10*time.Second, func() bool { m, _ := scrape(metricsURL); return m.get("buffer_size") == 0 })
	unlock, err := dblock.Hold(db)
	if err != nil {
		return result{}, err
	}
	defer unlock()
	idle, _, err := memory(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}

	before, err := scrape(metricsURL)
	if err != nil {
		return result{}, err
	}
	if err := send(dnsAddr, size, c.queries, c.workers); err != nil {
		return result{}, err
	}
	// Every query counted: enqueued rose by the number sent.
	var m metrics
	if !poll(30*time.Second, func() bool {
		m, err = scrape(metricsURL)
		return err == nil && m.get("enqueued_total")-before.get("enqueued_total") >= float64(c.queries)
	}) {
		return result{}, fmt.Errorf("querylog counted %v of %d queries", m.get("enqueued_total")-before.get("enqueued_total"), c.queries)
	}
	rss, hwm, err := memory(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	var dropped []string
	for _, reason := range []string{"buffer_full", "buffer_bytes", "write_failed", "disk_low", "shutdown"} {
		if n := m.get("dropped_total", "reason", reason); n > 0 {
			dropped = append(dropped, fmt.Sprintf("%.0f (%s)", n, reason))
		}
	}
	if len(dropped) == 0 {
		dropped = []string{"0"}
	}
	return result{size: size, dataBytes: dataBytes(size), sent: c.queries,
		buffered: m.get("buffer_size"), bytes: m.get("buffer_bytes"), limit: m.get("buffer_bytes_capacity"),
		dropped: strings.Join(dropped, ", "), idle: idle, rss: rss, hwm: hwm, gomaxprocs: c.gomaxprocs}, nil
}

// send sends n TCP queries for unique names under size's zone from workers connections.
func send(addr, size string, n, workers int) error {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &dns.Client{Net: "tcp", Timeout: 10 * time.Second}
			var conn *dns.Conn
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				if conn == nil {
					var err error
					if conn, err = client.Dial(addr); err != nil {
						failed.Add(1)
						conn = nil
						continue
					}
				}
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("q%d-%d.%s.%s", w, i, size, zone), dns.TypeA)
				if _, _, err := client.ExchangeWithConn(m, conn); err != nil {
					failed.Add(1)
					conn.Close()
					conn = nil
				}
			}
			if conn != nil {
				conn.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > int64(n/100) {
		return fmt.Errorf("%d of %d queries failed", f, n)
	}
	return nil
}

func exchange(addr, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, addr)
	return r, err
}

// memory reads VmRSS and VmHWM, in kB.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("no VmRSS or VmHWM in /proc/PID/status")
	}
	return rss, hwm, s.Err()
}

type metrics map[string][]*sample

type sample struct {
	labels map[string]string
	value  float64
}

// get sums coredns_querylog_<name> over the series with the given labels.
func (m metrics) get(name string, kv ...string) float64 {
	var v float64
next:
	for _, s := range m["coredns_querylog_"+name] {
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		v += s.value
	}
	return v
}

func scrape(u string) (metrics, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.Reader(resp.Body))
	if err != nil {
		return nil, err
	}
	m := metrics{}
	for name, f := range fams {
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range s.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			m[name] = append(m[name], &sample{l, s.GetCounter().GetValue() + s.GetGauge().GetValue() + s.GetUntyped().GetValue()})
		}
	}
	return m, nil
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// The upstream: one zone per reply size under mem.test., any name.

type upstream struct {
	addr    string
	servers []*dns.Server
}

func startUpstream() (*upstream, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		pc.Close()
		return nil, err
	}
	u := &upstream{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	h := dns.HandlerFunc(answer)
	u.servers = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}}
	for _, s := range u.servers {
		go s.ActivateAndServe()
	}
	return u, nil
}

func (u *upstream) stop() {
	for _, s := range u.servers {
		s.Shutdown()
	}
}

// answer replies with the records of the size named by the label before mem.test.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := reply(r)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && m.Len() > 512 {
		m.Truncate(512)
	}
	w.WriteMsg(m)
}

func reply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	if len(r.Question) == 0 {
		return m
	}
	q := r.Question[0].Name
	labels := dns.SplitDomainName(q)
	size := ""
	if len(labels) >= 3 {
		size = labels[len(labels)-3]
	}
	a := func(i int) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: q, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4()}
	}
	switch size {
	case "small":
		m.Answer = []dns.RR{a(1)}
	case "4k":
		for i := range 250 {
			m.Answer = append(m.Answer, a(i))
		}
	case "64k":
		for i := range 4090 {
			m.Answer = append(m.Answer, a(i))
		}
	case "cname64k":
		rr := &dns.CNAME{Hdr: dns.RR_Header{Name: q, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: floodTarget}
		m.Answer = make([]dns.RR, floodCount(m, rr))
		for i := range m.Answer {
			m.Answer[i] = rr
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	return m
}

// floodTarget is a 255-octet name of escaped bytes: 1,004 bytes as text.
var floodTarget = strings.Repeat(strings.Repeat(`\000`, 63)+".", 3) + strings.Repeat(`\000`, 61) + "."

var (
	floodMu     sync.Mutex
	floodCounts = map[int]int{} // by query name length
)

// floodCount is how many copies of rr fit in m within 65,535 bytes, compressed. Found once per
// name length: m.Len() with compression takes time in the number of records.
func floodCount(m *dns.Msg, rr dns.RR) int {
	n := len(m.Question[0].Name)
	floodMu.Lock()
	defer floodMu.Unlock()
	if c, ok := floodCounts[n]; ok {
		return c
	}
	t := m.Copy()
	lo, hi := 1, 8192 // Len() of lo copies fits, of hi does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		t.Answer = make([]dns.RR, mid)
		for i := range t.Answer {
			t.Answer[i] = rr
		}
		if t.Len() <= 65535 {
			lo = mid
		} else {
			hi = mid
		}
	}
	floodCounts[n] = lo
	return lo
}

// dataBytes is the answer data of one reply of size, in full, as the answers option would
// have stored it without a cap.
func dataBytes(size string) int {
	m := reply(&dns.Msg{Question: []dns.Question{{Name: "q0-0." + size + "." + zone, Qtype: dns.TypeA, Qclass: dns.ClassINET}}})
	n := 0
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			n += len(rr.A.String()) + 1
		case *dns.CNAME:
			n += len(rr.Target) + 1
		}
	}
	return max(n-1, 0)
}
