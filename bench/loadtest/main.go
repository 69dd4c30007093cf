// Command loadtest drives the custom CoreDNS (./cmd/coredns) with the real dnsperf and reports
// what querylog did under that load: throughput, completeness (rows in SQLite against replies
// dnsperf received), drops, buffer fill, batch flush times, CPU, memory and database size.
//
// Everything runs on 127.0.0.1 and every run is bounded in time. See bench/README.md.
//
//	go run ./bench/loadtest -scenario rate -short            # CI: 5 s at 2000 QPS
//	go run ./bench/loadtest -scenario rate                   # 10000 QPS for 600 s
//	go run ./bench/loadtest -scenario max -duration 30s      # unthrottled
//	go run ./bench/loadtest -scenario compare -pairs 3       # none / querylog / log, 20 s each
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // "sqlite" driver, to count the rows querylog wrote
)

const (
	modulePath = "github.com/querylog/querylog"
	zone       = "bench.test."
	nxZone     = "nx.bench.test."
	// dnsperfGrace is how long dnsperf may run past -l before it is killed.
	dnsperfGrace = 30 * time.Second
	// startTimeout bounds how long CoreDNS may take to become ready.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long CoreDNS may take to exit after SIGTERM (querylog drains for
	// at most shutdown_timeout, 5 s by default) before it is killed.
	stopTimeout = 60 * time.Second
	// clkTck is the kernel's USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on
	// every Linux architecture Go supports; procfs and client_golang assume the same).
	clkTck = 100
)

type config struct {
	scenario    string
	short       bool
	qps         int
	duration    time.Duration
	clients     int
	threads     int
	outstanding int
	edns        bool
	gomaxprocs  int
	cache       bool
	pairs       int
	jsonPath    string
	seed        uint64
	names       int
	lines       int
	qlOptions   string
	cpuProfile  string
	corednsBin  string
	repo        string
	keep        bool
}

func main() {
	os.Exit(realMain())
}

func realMain() int {
	var c config
	flag.StringVar(&c.scenario, "scenario", "rate", "rate (fixed QPS), max (unthrottled) or compare (no logging / querylog / log)")
	flag.BoolVar(&c.short, "short", false, "short run for CI: 5 s (and 2000 QPS for rate)")
	flag.IntVar(&c.qps, "qps", 0, "target QPS for -scenario rate (default 10000; 2000 with -short)")
	flag.DurationVar(&c.duration, "duration", 0, "load duration per run (default: rate 600s, max 60s, compare 20s; 5s with -short)")
	flag.IntVar(&c.clients, "clients", 10, "dnsperf -c: simulated clients (source ports)")
	flag.IntVar(&c.threads, "threads", 1, "dnsperf -T: dnsperf threads")
	flag.IntVar(&c.outstanding, "outstanding", 100, "dnsperf -q: maximum queries outstanding")
	flag.BoolVar(&c.edns, "edns", true, "dnsperf -e: send EDNS0, as most clients do")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS for CoreDNS")
	flag.BoolVar(&c.cache, "cache", false, "put the cache plugin in front of template")
	flag.IntVar(&c.pairs, "pairs", 3, "compare: rounds of none/querylog/log runs")
	flag.StringVar(&c.jsonPath, "json", "", "write the report as JSON to this file; \"auto\" names it bench/results/<date>-<scenario>-...-<N>cpu.json")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the query file")
	flag.IntVar(&c.names, "names", 50000, "distinct names in the popular-to-long-tail pool")
	flag.IntVar(&c.lines, "lines", 200000, "lines in the dnsperf query file (dnsperf loops over it)")
	flag.StringVar(&c.qlOptions, "querylog-options", "", "extra querylog block options, ';'-separated, e.g. \"buffer_size 100000; batch_size 5000\"")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "rate/max: add the pprof plugin and save a CoreDNS CPU profile of the load to this file")
	flag.StringVar(&c.corednsBin, "coredns", "", "use this CoreDNS binary instead of building ./cmd/coredns")
	flag.StringVar(&c.repo, "repo", "", "repository root (default: found from the working directory)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary folder (Corefiles, databases, logs)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %q\n", flag.Args())
		return 2
	}
	if err := c.fill(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := run(ctx, &c)
	if rep != nil {
		fmt.Print(rep.text())
		if c.jsonPath != "" {
			path := c.jsonPath
			if path == "auto" {
				path = filepath.Join(c.repo, "bench", "results", rep.autoName())
			}
			if werr := writeJSON(path, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "loadtest:", werr)
				return 1
			}
			fmt.Printf("JSON report: %s\n", path)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 1
	}
	if !rep.Pass {
		return 1
	}
	return 0
}

// fill applies the scenario defaults and checks the flags.
func (c *config) fill() error {
	switch c.scenario {
	case "rate", "max", "compare":
	default:
		return fmt.Errorf("unknown -scenario %q (rate, max or compare)", c.scenario)
	}
	if c.duration == 0 {
		switch {
		case c.short:
			c.duration = 5 * time.Second
		case c.scenario == "rate":
			c.duration = 600 * time.Second
		case c.scenario == "max":
			c.duration = 60 * time.Second
		default:
			c.duration = 20 * time.Second
		}
	}
	if c.scenario == "rate" && c.qps == 0 {
		c.qps = 10000
		if c.short {
			c.qps = 2000
		}
	}
	if c.scenario != "rate" {
		c.qps = 0 // unthrottled
	}
	if c.duration < time.Second || c.duration > 24*time.Hour {
		return fmt.Errorf("-duration %s: must be between 1s and 24h", c.duration)
	}
	if c.qps < 0 || c.clients < 1 || c.threads < 1 || c.outstanding < 1 || c.gomaxprocs < 1 || c.pairs < 1 {
		return errors.New("-qps must be >= 0; -clients, -threads, -outstanding, -gomaxprocs and -pairs >= 1")
	}
	if c.names < 100 || c.lines < 1000 {
		return errors.New("-names must be >= 100 and -lines >= 1000")
	}
	if c.cpuProfile != "" && c.scenario == "compare" {
		return errors.New("-cpuprofile is for rate and max runs (the compare Corefiles must differ in one line only)")
	}
	if c.repo == "" {
		r, err := findRepo()
		if err != nil {
			return err
		}
		c.repo = r
	}
	if c.cpuProfile != "" {
		abs, err := filepath.Abs(c.cpuProfile)
		if err != nil {
			return err
		}
		c.cpuProfile = abs
	}
	return nil
}

func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory; use -repo", modulePath)
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------------------------
// Orchestration

// run builds CoreDNS, writes the query file and runs the scenario.
func run(ctx context.Context, c *config) (*report, error) {
	tmp, err := os.MkdirTemp("", "querylog-loadtest-")
	if err != nil {
		return nil, err
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	rep := newReport(c)
	bin := c.corednsBin
	if bin == "" {
		bin = filepath.Join(tmp, "coredns")
		fmt.Fprintf(os.Stderr, "building ./cmd/coredns ...\n")
		before := sourceOf(c.repo)
		if err := build(ctx, c.repo, bin); err != nil {
			return nil, err
		}
		rep.Source = sourceOf(c.repo)
		if before.SHA256 != rep.Source.SHA256 {
			rep.Source.Note = "the sources changed while CoreDNS was being built: the binary may match neither state"
		}
	} else {
		rep.Source = &provenance{Note: "prebuilt binary given with -coredns: " + bin}
	}
	if _, err := os.Stat("/usr/bin/dnsperf"); err != nil {
		return nil, errors.New("/usr/bin/dnsperf not found: apt-get install -y dnsperf")
	}
	qfile := filepath.Join(tmp, "queries.txt")
	qs, err := writeQueryFile(qfile, c.seed, c.names, c.lines)
	if err != nil {
		return nil, err
	}
	rep.Queries = qs

	var variants []string
	switch c.scenario {
	case "rate", "max":
		variants = []string{"querylog"}
	case "compare":
		for range c.pairs {
			variants = append(variants, "none", "querylog", "log")
		}
	}
	for i, v := range variants {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		dir := filepath.Join(tmp, fmt.Sprintf("run%d-%s", i+1, v))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return rep, err
		}
		fmt.Fprintf(os.Stderr, "run %d/%d: %s, %s, %s ...\n", i+1, len(variants), v, loadDesc(c), secs(c.duration))
		r, err := runOnce(ctx, c, bin, qfile, dir, v)
		if r == nil {
			r = &runResult{Variant: v, GOMAXPROCS: c.gomaxprocs}
		}
		r.Index = i + 1
		rep.Runs = append(rep.Runs, r)
		if err != nil {
			r.Problems = append(r.Problems, "aborted: "+strings.SplitN(err.Error(), "\n", 2)[0])
			r.Pass = false
			rep.finish()
			return rep, fmt.Errorf("run %d (%s): %w", i+1, v, err)
		}
	}
	rep.finish()
	return rep, nil
}

func loadDesc(c *config) string {
	if c.qps > 0 {
		return fmt.Sprintf("%d QPS", c.qps)
	}
	return "unthrottled"
}

func build(ctx context.Context, repo, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/coredns")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/coredns: %v\n%s", err, b)
	}
	return nil
}

// provenance identifies the sources a CoreDNS build came from, since the tree may carry
// uncommitted changes.
type provenance struct {
	Commit string   `json:"commit,omitempty"`
	Dirty  []string `json:"uncommitted,omitempty"` // git status --porcelain of plugin/, cmd/, go.mod, go.sum
	SHA256 string   `json:"sha256,omitempty"`      // of the non-test .go files under plugin/ and cmd/, go.mod and go.sum
	Note   string   `json:"note,omitempty"`
}

func sourceOf(repo string) *provenance {
	p := &provenance{}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output(); err == nil {
		p.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--", "plugin", "cmd", "go.mod", "go.sum").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if l != "" {
				p.Dirty = append(p.Dirty, l)
			}
		}
	}
	var files []string
	for _, dir := range []string{"plugin", "cmd"} {
		filepath.WalkDir(filepath.Join(repo, dir), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				files = append(files, path)
			}
			return nil
		})
	}
	files = append(files, filepath.Join(repo, "go.mod"), filepath.Join(repo, "go.sum"))
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(repo, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	p.SHA256 = hex.EncodeToString(h.Sum(nil))
	return p
}

// ports reserves n distinct free ports on 127.0.0.1, each free for both TCP and UDP.
func ports(n int) ([]int, error) {
	var out []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		closers = append(closers, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		closers = append(closers, u)
		out = append(out, p)
	}
	return out, nil
}

// corefile returns the Corefile of one run. The variants differ in the logging line only.
func corefile(c *config, variant, db string, dnsPort, metricsPort, readyPort, pprofPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".:%d {\n    bind 127.0.0.1\n", dnsPort)
	fmt.Fprintf(&b, "    prometheus 127.0.0.1:%d\n", metricsPort)
	fmt.Fprintf(&b, "    ready 127.0.0.1:%d\n", readyPort)
	if pprofPort > 0 {
		fmt.Fprintf(&b, "    pprof 127.0.0.1:%d\n", pprofPort)
	}
	switch variant {
	case "none":
		b.WriteString("    # no query logging\n")
	case "log":
		b.WriteString("    log\n")
	case "querylog":
		opts := strings.FieldsFunc(c.qlOptions, func(r rune) bool { return r == ';' || r == '\n' })
		if len(opts) == 0 {
			fmt.Fprintf(&b, "    querylog %s\n", db)
		} else {
			fmt.Fprintf(&b, "    querylog %s {\n", db)
			for _, o := range opts {
				if o = strings.TrimSpace(o); o != "" {
					fmt.Fprintf(&b, "        %s\n", o)
				}
			}
			b.WriteString("    }\n")
		}
	}
	if c.cache {
		b.WriteString("    cache 30\n")
	}
	// template checks its templates in order: the NXDOMAIN subzone first.
	fmt.Fprintf(&b, `    template ANY ANY %[1]s {
        rcode NXDOMAIN
    }
    template IN A %[2]s {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN AAAA %[2]s {
        answer "{{ .Name }} 60 IN AAAA 2001:db8::1"
    }
    template IN HTTPS %[2]s {
        answer "{{ .Name }} 60 IN HTTPS 1 . alpn=h2,h3"
    }
    template IN MX %[2]s {
        answer "{{ .Name }} 300 IN MX 10 mx.%[2]s"
    }
    template IN TXT %[2]s {
        answer "{{ .Name }} 300 IN TXT \"v=spf1 -all\""
    }
    template IN PTR 10.in-addr.arpa. {
        answer "{{ .Name }} 300 IN PTR host.%[2]s"
    }
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`, nxZone, zone)
	return b.String()
}

// runOnce starts a fresh CoreDNS with a fresh database, loads it with dnsperf while scraping its
// metrics, stops it with SIGTERM and collects the results.
func runOnce(ctx context.Context, c *config, bin, qfile, dir, variant string) (*runResult, error) {
	p, err := ports(4)
	if err != nil {
		return nil, err
	}
	dnsPort, metricsPort, readyPort, pprofPort := p[0], p[1], p[2], p[3]
	if c.cpuProfile == "" {
		pprofPort = 0
	}
	db := filepath.Join(dir, "querylog.db")
	cf := corefile(c, variant, db, dnsPort, metricsPort, readyPort, pprofPort)
	cfPath := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o644); err != nil {
		return nil, err
	}
	r := &runResult{Variant: variant, Corefile: cf, GOMAXPROCS: c.gomaxprocs, Started: time.Now().UTC()}

	// CoreDNS, with stdout and stderr (and so the log plugin's output) in a file.
	outPath := filepath.Join(dir, "coredns.out")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin, "-conf", cfPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(c.gomaxprocs))
	cmd.Stdout, cmd.Stderr = out, out
	exited, _, err := startLocked(cmd)
	if err != nil {
		return nil, err
	}
	alive := true
	defer func() {
		if alive {
			cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", readyPort), metricsURL, exited); err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(outPath, 20))
	}
	cpu0, _ := procCPU(pid)

	// Scrape every second while dnsperf runs.
	sc := &scraper{url: metricsURL}
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	loadStart := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sc.loop(scrapeCtx, loadStart) }()

	var profErr error
	if pprofPort > 0 {
		secs := int(min(c.duration-2*time.Second, 60*time.Second).Seconds())
		if secs >= 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Second) // skip the ramp-up
				profErr = fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", pprofPort, secs), c.cpuProfile, time.Duration(secs+30)*time.Second)
			}()
		}
	}

	dp, dnsperfErr := runDNSPerf(ctx, c, dnsPort, qfile)
	r.LoadSeconds = time.Since(loadStart).Seconds()
	stopScrape()
	wg.Wait()
	r.DNSPerf = dp
	select {
	case <-exited:
		alive = false
		r.scanLog(outPath)
		return r, fmt.Errorf("CoreDNS exited during the load (%s)\n%s", cmd.ProcessState, tail(outPath, 20))
	default:
	}
	if profErr != nil {
		fmt.Fprintf(os.Stderr, "cpu profile: %v\n", profErr)
	} else if pprofPort > 0 {
		r.CPUProfile = c.cpuProfile
	}

	// Just before SIGTERM: CPU, memory and a last scrape.
	cpu1, cpuErr := procCPU(pid)
	if cpuErr == nil {
		r.CPUSecondsLoad = round(cpu1-cpu0, 3)
		r.CPUSecondsTotal = round(cpu1, 3)
	}
	r.PeakRSSBytes, r.RSSBytes, _ = procMem(pid)
	final, scrapeErr := scrapeOnce(ctx, metricsURL, time.Since(loadStart).Seconds())
	r.Series = sc.series()
	if scrapeErr == nil {
		r.Series = append(r.Series, final.point())
		r.setMetrics(final, sc.maxPeak())
	}

	// Stop, and wait for the drain.
	stopStart := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		alive = false
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-exited
		alive = false
		return r, fmt.Errorf("CoreDNS did not exit within %s of SIGTERM; killed", stopTimeout)
	}
	r.ShutdownSeconds = round(time.Since(stopStart).Seconds(), 3)
	if st := cmd.ProcessState; st != nil && !st.Success() {
		r.Problems = append(r.Problems, fmt.Sprintf("CoreDNS exited with %s", st))
	}
	r.scanLog(outPath)

	if variant == "querylog" {
		if err := r.countRows(db); err != nil {
			return r, err
		}
	}
	r.judge()

	switch {
	case dnsperfErr != nil:
		return r, fmt.Errorf("dnsperf: %w\n%s", dnsperfErr, tail(outPath, 20))
	case cpuErr != nil:
		return r, fmt.Errorf("reading /proc/%d/stat: %w", pid, cpuErr)
	case scrapeErr != nil:
		return r, fmt.Errorf("final metrics scrape: %w", scrapeErr)
	}
	return r, nil
}

// startLocked starts cmd with Pdeathsig SIGKILL, so that it never outlives the harness, from a
// goroutine locked to its OS thread that lives until the process has been waited for: the
// kernel sends Pdeathsig when the creating thread ends, not the process (go.dev/issue/27505),
// and Go may end threads. done is closed once Wait has returned, and *waitErr is its error.
func startLocked(cmd *exec.Cmd) (done <-chan struct{}, waitErr *error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	ch := make(chan struct{})
	var werr error
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		werr = cmd.Wait()
		close(ch)
	}()
	if err := <-started; err != nil {
		return nil, nil, err
	}
	return ch, &werr, nil
}

// waitReady polls the ready plugin (which waits for querylog's database) and the metrics
// endpoint, without sending any DNS query that would end up in the log.
func waitReady(ctx context.Context, readyURL, metricsURL string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		ok := true
		for _, u := range []string{readyURL, metricsURL} {
			resp, err := client.Get(u)
			if err != nil {
				ok = false
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-exited:
			return errors.New("CoreDNS exited during startup")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CoreDNS not ready within %s", startTimeout)
		}
	}
}

func fetch(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "CoreDNS output (last lines):\n  " + strings.Join(lines, "\n  ")
}

// ---------------------------------------------------------------------------------------------
// Query file

type queryStats struct {
	Lines         int            `json:"lines"`
	DistinctNames int            `json:"distinct_names"`
	Seed          uint64         `json:"seed"`
	ByType        map[string]int `json:"by_type"`
	NXDOMAINShare float64        `json:"nxdomain_share"`
	Top10Share    float64        `json:"top10_share"` // share of lines for the 10 most frequent names
}

// writeQueryFile writes a deterministic dnsperf input: a Zipf-distributed pool of names under
// bench.test (a popular head and a long tail) and of reverse names under 10.in-addr.arpa,
// mostly A and AAAA with some HTTPS, MX, TXT and PTR, plus ~5% typo-like names under
// nx.bench.test that are answered NXDOMAIN.
func writeQueryFile(path string, seed uint64, names, lines int) (queryStats, error) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	prefixes := []string{"www", "api", "cdn", "mail", "static", "img", "login", "app", "m", "edge"}
	name := func(i int) string { // distinct for every i
		return fmt.Sprintf("%s.site%d.%s", prefixes[i%len(prefixes)], i/len(prefixes), zone)
	}
	// Rank → pool index through a fixed permutation, so popularity is not ordered by name.
	perm := rng.Perm(names)
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(names-1))
	ptrPool := max(names/5, 10)
	ptrPerm := rng.Perm(ptrPool)
	ptrZipf := rand.NewZipf(rng, 1.1, 2, uint64(ptrPool-1))
	type weighted struct {
		qtype string
		w     int
	}
	mix := []weighted{{"A", 55}, {"AAAA", 25}, {"HTTPS", 8}, {"PTR", 6}, {"TXT", 3}, {"MX", 3}} // of the 95% that exist
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"

	f, err := os.Create(path)
	if err != nil {
		return queryStats{}, err
	}
	w := bufio.NewWriter(f)
	st := queryStats{Lines: lines, Seed: seed, ByType: map[string]int{}}
	seen := map[string]int{}
	nx := 0
	for range lines {
		var qname, qtype string
		if rng.IntN(100) < 5 {
			n := 4 + rng.IntN(10)
			lbl := make([]byte, n)
			for i := range lbl {
				lbl[i] = letters[rng.IntN(len(letters))]
			}
			qname = string(lbl) + "." + nxZone
			qtype = "A"
			if rng.IntN(3) == 0 {
				qtype = "AAAA"
			}
			nx++
		} else {
			x := rng.IntN(100)
			for _, m := range mix {
				if x < m.w {
					qtype = m.qtype
					break
				}
				x -= m.w
			}
			if qtype == "PTR" {
				i := ptrPerm[ptrZipf.Uint64()]
				qname = fmt.Sprintf("%d.%d.%d.10.in-addr.arpa.", i%250+1, i/250%256, i/250/256)
			} else {
				qname = name(perm[zipf.Uint64()])
			}
		}
		st.ByType[qtype]++
		seen[qname]++
		fmt.Fprintf(w, "%s %s\n", qname, qtype)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return st, err
	}
	if err := f.Close(); err != nil {
		return st, err
	}
	st.DistinctNames = len(seen)
	st.NXDOMAINShare = round(float64(nx)/float64(lines), 4)
	counts := make([]int, 0, len(seen))
	for _, n := range seen {
		counts = append(counts, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(counts)))
	top := 0
	for _, n := range counts[:min(10, len(counts))] {
		top += n
	}
	st.Top10Share = round(float64(top)/float64(lines), 4)
	return st, nil
}

// ---------------------------------------------------------------------------------------------
// dnsperf

type dnsperfResult struct {
	Args          []string       `json:"args"`
	Sent          int64          `json:"queries_sent"`
	Completed     int64          `json:"queries_completed"`
	Lost          int64          `json:"queries_lost"`
	Interrupted   int64          `json:"queries_interrupted,omitempty"`
	QPS           float64        `json:"qps_achieved"`
	RunSeconds    float64        `json:"run_seconds"`
	LatencyAvg    float64        `json:"latency_avg_s"`
	LatencyMin    float64        `json:"latency_min_s"`
	LatencyMax    float64        `json:"latency_max_s"`
	LatencyStdDev float64        `json:"latency_stddev_s"`
	Rcodes        map[string]int `json:"rcodes"`
	CPUSeconds    float64        `json:"cpu_seconds"` // dnsperf's own user+system time
}

func runDNSPerf(ctx context.Context, c *config, port int, qfile string) (*dnsperfResult, error) {
	secs := strconv.FormatFloat(c.duration.Seconds(), 'f', -1, 64)
	args := []string{"-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", qfile, "-l", secs,
		"-c", strconv.Itoa(c.clients), "-T", strconv.Itoa(c.threads), "-q", strconv.Itoa(c.outstanding)}
	if c.qps > 0 {
		args = append(args, "-Q", strconv.Itoa(c.qps))
	}
	if c.edns {
		args = append(args, "-e")
	}
	ctx, cancel := context.WithTimeout(ctx, c.duration+dnsperfGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/dnsperf", args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done, waitErr, err := startLocked(cmd)
	if err == nil {
		<-done
		err = *waitErr
	}
	res := parseDNSPerf(stdout.String())
	res.Args = append([]string{"dnsperf"}, args...)
	if cmd.ProcessState != nil {
		res.CPUSeconds = round((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), 3)
	}
	if ctx.Err() == context.DeadlineExceeded {
		return res, fmt.Errorf("killed after %s", c.duration+dnsperfGrace)
	}
	if err != nil {
		return res, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if res.Sent == 0 {
		return res, fmt.Errorf("no statistics in dnsperf output:\n%s\n%s", stdout.String(), stderr.String())
	}
	return res, nil
}

var (
	reSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reInterr    = regexp.MustCompile(`Queries interrupted:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	reRunTime   = regexp.MustCompile(`Run time \(s\):\s+([0-9.]+)`)
	reLatency   = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+) \(min ([0-9.]+), max ([0-9.]+)\)`)
	reStdDev    = regexp.MustCompile(`Latency StdDev \(s\):\s+([0-9.]+)`)
	reRcodes    = regexp.MustCompile(`Response codes:\s+(.*)`)
	reRcode     = regexp.MustCompile(`([A-Z0-9]+) (\d+) \(`)
)

func parseDNSPerf(s string) *dnsperfResult {
	r := &dnsperfResult{Rcodes: map[string]int{}}
	i := func(re *regexp.Regexp) int64 {
		if m := re.FindStringSubmatch(s); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			return n
		}
		return 0
	}
	f := func(m []string, k int) float64 {
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[k], 64)
		return v
	}
	r.Sent, r.Completed, r.Lost, r.Interrupted = i(reSent), i(reCompleted), i(reLost), i(reInterr)
	r.QPS = round(f(reQPS.FindStringSubmatch(s), 1), 1)
	r.RunSeconds = f(reRunTime.FindStringSubmatch(s), 1)
	lat := reLatency.FindStringSubmatch(s)
	r.LatencyAvg, r.LatencyMin, r.LatencyMax = f(lat, 1), f(lat, 2), f(lat, 3)
	r.LatencyStdDev = f(reStdDev.FindStringSubmatch(s), 1)
	if m := reRcodes.FindStringSubmatch(s); m != nil {
		for _, rc := range reRcode.FindAllStringSubmatch(m[1], -1) {
			n, _ := strconv.Atoi(rc[2])
			r.Rcodes[rc[1]] = n
		}
	}
	return r
}

// ---------------------------------------------------------------------------------------------
// /proc

// procCPU returns utime+stime of a process in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return float64(ut+st) / clkTck, nil
}

// procMem returns VmHWM (peak RSS) and VmRSS in bytes.
func procMem(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n * 1024
		case "VmRSS":
			rss = n * 1024
		}
	}
	return hwm, rss, nil
}

// ---------------------------------------------------------------------------------------------
// Metrics

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseProm parses the Prometheus text exposition format (what CoreDNS serves without
// content negotiation).
func parseProm(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			continue
		}
		s.name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
					rest = ""
					break
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				j := 0
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' && j+1 < len(rest) {
						j++
						if rest[j] == 'n' {
							val.WriteByte('\n')
							continue
						}
					}
					val.WriteByte(rest[j])
				}
				s.labels[key] = val.String()
				if j >= len(rest) {
					rest = ""
					break
				}
				rest = rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

type bucket struct {
	LE    float64 `json:"le"` // +Inf is encoded as -1 in JSON
	Count float64 `json:"count"`
}

func (b bucket) MarshalJSON() ([]byte, error) {
	le := b.LE
	if math.IsInf(le, 1) {
		le = -1
	}
	return json.Marshal(struct {
		LE    float64 `json:"le"`
		Count float64 `json:"count"`
	}{le, b.Count})
}

// scrape is the part of one /metrics scrape the report uses.
type scrape struct {
	t              float64
	bufferSize     float64
	bufferCapacity float64
	bufferPeak     float64
	enqueued       float64
	written        float64
	dropped        map[string]float64
	flushErrors    float64
	ignored        float64
	flushDur       []bucket
	flushDurSum    float64
	flushSize      []bucket
	flushSizeSum   float64
	requests       float64
	cpu            float64
	gomaxprocs     float64
	hasQuerylog    bool
}

func newScrape(t float64, samples []sample) *scrape {
	s := &scrape{t: t, dropped: map[string]float64{}}
	const p = "coredns_querylog_"
	for _, m := range samples {
		switch m.name {
		case p + "buffer_size":
			s.bufferSize += m.value
			s.hasQuerylog = true
		case p + "buffer_capacity":
			s.bufferCapacity += m.value
		case p + "buffer_peak_size":
			s.bufferPeak += m.value
		case p + "enqueued_total":
			s.enqueued += m.value
		case p + "written_total":
			s.written += m.value
		case p + "dropped_total":
			s.dropped[m.labels["reason"]] += m.value
		case p + "ignored_total":
			s.ignored += m.value
		case p + "flush_errors_total":
			s.flushErrors += m.value
		case p + "batch_flush_duration_seconds_bucket":
			s.flushDur = addBucket(s.flushDur, m)
		case p + "batch_flush_duration_seconds_sum":
			s.flushDurSum += m.value
		case p + "batch_flush_size_bucket":
			s.flushSize = addBucket(s.flushSize, m)
		case p + "batch_flush_size_sum":
			s.flushSizeSum += m.value
		case "coredns_dns_requests_total":
			s.requests += m.value
		case "process_cpu_seconds_total":
			s.cpu = m.value
		case "go_sched_gomaxprocs_threads":
			s.gomaxprocs = m.value
		}
	}
	return s
}

func addBucket(bs []bucket, m sample) []bucket {
	le, err := strconv.ParseFloat(m.labels["le"], 64)
	if err != nil {
		return bs
	}
	for i := range bs {
		if bs[i].LE == le {
			bs[i].Count += m.value
			return bs
		}
	}
	bs = append(bs, bucket{le, m.value})
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.LE < b.LE:
			return -1
		case a.LE > b.LE:
			return 1
		}
		return 0
	})
	return bs
}

func (s *scrape) droppedTotal() float64 {
	var n float64
	for _, v := range s.dropped {
		n += v
	}
	return n
}

// point is one second of the time series in the JSON report.
type point struct {
	T          float64 `json:"t"`
	Requests   float64 `json:"dns_requests"`
	BufferSize float64 `json:"buffer_size,omitempty"`
	BufferPeak float64 `json:"buffer_peak,omitempty"`
	Enqueued   float64 `json:"enqueued,omitempty"`
	Written    float64 `json:"written,omitempty"`
	Dropped    float64 `json:"dropped,omitempty"`
	Flushes    float64 `json:"flushes,omitempty"`
	CPU        float64 `json:"cpu_seconds"`
}

func (s *scrape) point() point {
	p := point{T: round(s.t, 2), Requests: s.requests, BufferSize: s.bufferSize, BufferPeak: s.bufferPeak,
		Enqueued: s.enqueued, Written: s.written, Dropped: s.droppedTotal(), CPU: s.cpu}
	if n := len(s.flushDur); n > 0 {
		p.Flushes = s.flushDur[n-1].Count
	}
	return p
}

func scrapeOnce(ctx context.Context, url string, t float64) (*scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return newScrape(t, parseProm(string(b))), nil
}

type scraper struct {
	url     string
	mu      sync.Mutex
	scrapes []*scrape
	errors  int
}

func (sc *scraper) loop(ctx context.Context, start time.Time) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, err := scrapeOnce(ctx, sc.url, time.Since(start).Seconds())
		sc.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				sc.errors++
			}
		} else {
			sc.scrapes = append(sc.scrapes, s)
		}
		sc.mu.Unlock()
	}
}

func (sc *scraper) series() []point {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := make([]point, 0, len(sc.scrapes)+1)
	for _, s := range sc.scrapes {
		out = append(out, s.point())
	}
	return out
}

func (sc *scraper) maxPeak() float64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var m float64
	for _, s := range sc.scrapes {
		m = max(m, s.bufferPeak)
	}
	return m
}

// quantile estimates the q-quantile from cumulative buckets as Prometheus's histogram_quantile
// does (linear within a bucket). above reports that it fell in the +Inf bucket, in which case
// the value is the highest finite bound.
func quantile(q float64, bs []bucket) (v float64, above bool) {
	if len(bs) == 0 || bs[len(bs)-1].Count == 0 {
		return math.NaN(), false
	}
	total := bs[len(bs)-1].Count
	rank := q * total
	for i, b := range bs {
		if b.Count < rank {
			continue
		}
		if math.IsInf(b.LE, 1) {
			if i == 0 {
				return math.NaN(), true
			}
			return bs[i-1].LE, true
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bs[i-1].LE, bs[i-1].Count
		}
		if b.Count == below {
			return b.LE, false
		}
		return lower + (b.LE-lower)*(rank-below)/(b.Count-below), false
	}
	return math.NaN(), false
}

// maxBound returns the upper bound of the highest non-empty bucket: the largest observation is
// at most this. above reports that it is in the +Inf bucket (then the value is the last finite
// bound, which the largest observation exceeds).
func maxBound(bs []bucket) (v float64, above bool) {
	if len(bs) == 0 || bs[len(bs)-1].Count == 0 {
		return math.NaN(), false
	}
	total := bs[len(bs)-1].Count
	for i, b := range bs {
		if b.Count == total {
			if math.IsInf(b.LE, 1) {
				return bs[max(i-1, 0)].LE, true
			}
			return b.LE, false
		}
	}
	return math.NaN(), false
}

// ---------------------------------------------------------------------------------------------
// Results

type querylogMetrics struct {
	Enqueued           float64            `json:"enqueued_total"`
	Written            float64            `json:"written_total"`
	BufferedAtStop     float64            `json:"buffered_at_sigterm"`
	Dropped            map[string]float64 `json:"dropped_by_reason"`
	DroppedTotal       float64            `json:"dropped_total"`
	FlushErrors        float64            `json:"flush_errors_total"`
	Ignored            float64            `json:"ignored_total"`
	BufferCapacity     float64            `json:"buffer_capacity"`
	BufferPeak         float64            `json:"buffer_peak"`
	BufferPeakPct      float64            `json:"buffer_peak_pct"`
	Flushes            float64            `json:"flush_count"`
	FlushP50           float64            `json:"flush_p50_s"`
	FlushP99           float64            `json:"flush_p99_s"`
	FlushMaxUpperBound float64            `json:"flush_max_upper_bound_s"`
	FlushMaxAbove      bool               `json:"flush_max_above_last_bucket,omitempty"`
	FlushBusyPct       float64            `json:"flush_busy_pct"` // sum of flush durations / load time
	MeanBatch          float64            `json:"mean_batch_rows"`
	BatchMaxUpperBound float64            `json:"batch_rows_max_upper_bound"`
	FlushBuckets       []bucket           `json:"flush_duration_buckets"`
	Note               string             `json:"note"`
}

type runResult struct {
	Index           int              `json:"index"`
	Variant         string           `json:"variant"` // none, querylog or log
	Started         time.Time        `json:"started"`
	GOMAXPROCS      int              `json:"gomaxprocs"`
	GOMAXPROCSSeen  float64          `json:"gomaxprocs_observed"` // go_sched_gomaxprocs_threads
	LoadSeconds     float64          `json:"load_seconds"`
	DNSPerf         *dnsperfResult   `json:"dnsperf"`
	Rows            *int64           `json:"rows,omitempty"`
	RowsMinusCompl  *int64           `json:"rows_minus_completed,omitempty"`
	RowsMinusEnq    *int64           `json:"rows_minus_enqueued,omitempty"`
	LogLines        *int64           `json:"log_lines,omitempty"` // log variant: query lines in stdout
	Querylog        *querylogMetrics `json:"querylog,omitempty"`
	CPUSecondsLoad  float64          `json:"coredns_cpu_seconds_load"`
	CPUSecondsTotal float64          `json:"coredns_cpu_seconds_total"`
	CPUPerQueryUS   float64          `json:"coredns_cpu_us_per_query"`
	PeakRSSBytes    int64            `json:"coredns_peak_rss_bytes"`
	RSSBytes        int64            `json:"coredns_rss_bytes_at_sigterm"`
	ShutdownSeconds float64          `json:"shutdown_seconds"`
	DBBytesAtExit   int64            `json:"db_bytes_at_exit,omitempty"` // database + WAL as CoreDNS left them
	DBBytes         int64            `json:"db_bytes,omitempty"`         // database after a checkpoint
	BytesPerRow     float64          `json:"db_bytes_per_row,omitempty"`
	LogWarnings     []string         `json:"coredns_warnings,omitempty"`
	Problems        []string         `json:"problems,omitempty"`
	Pass            bool             `json:"pass"`
	CPUProfile      string           `json:"cpu_profile,omitempty"`
	Corefile        string           `json:"corefile"`
	Series          []point          `json:"series"`
}

func (r *runResult) setMetrics(s *scrape, peak float64) {
	r.GOMAXPROCSSeen = s.gomaxprocs
	if !s.hasQuerylog {
		return
	}
	peak = max(peak, s.bufferPeak)
	q := &querylogMetrics{
		Enqueued: s.enqueued, Written: s.written, BufferedAtStop: s.bufferSize,
		Dropped: s.dropped, DroppedTotal: s.droppedTotal(), FlushErrors: s.flushErrors, Ignored: s.ignored,
		BufferCapacity: s.bufferCapacity, BufferPeak: peak, FlushBuckets: s.flushDur,
		Note: "flush figures are from the last scrape before SIGTERM: the shutdown drain's flushes are not included; " +
			"p50/p99 are interpolated within histogram buckets, and the max is the upper bound of the highest non-empty bucket, not a measured value",
	}
	if s.bufferCapacity > 0 {
		q.BufferPeakPct = round(100*peak/s.bufferCapacity, 2)
	}
	if n := len(s.flushDur); n > 0 {
		q.Flushes = s.flushDur[n-1].Count
		p50, _ := quantile(0.5, s.flushDur)
		p99, _ := quantile(0.99, s.flushDur)
		mx, above := maxBound(s.flushDur)
		q.FlushP50, q.FlushP99, q.FlushMaxUpperBound, q.FlushMaxAbove = round(p50, 6), round(p99, 6), round(mx, 6), above
		if r.LoadSeconds > 0 {
			q.FlushBusyPct = round(100*s.flushDurSum/r.LoadSeconds, 2)
		}
	}
	if q.Flushes > 0 {
		q.MeanBatch = round(s.flushSizeSum/q.Flushes, 1)
		bmax, _ := maxBound(s.flushSize)
		q.BatchMaxUpperBound = round(bmax, 0)
	}
	r.Querylog = q
}

// scanLog collects querylog's warnings and errors from CoreDNS's output and, for the log
// variant, counts the query lines.
func (r *runResult) scanLog(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var lines int64
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "[INFO] 127.0.0.1:"):
			lines++
		case strings.HasPrefix(line, "[WARNING]"), strings.HasPrefix(line, "[ERROR]"), strings.HasPrefix(line, "panic"):
			if len(r.LogWarnings) < 50 {
				r.LogWarnings = append(r.LogWarnings, line)
			}
		}
	}
	if r.Variant == "log" {
		r.LogLines = &lines
	}
}

// countRows counts the rows querylog wrote and measures the database.
func (r *runResult) countRows(path string) error {
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			r.DBBytesAtExit += fi.Size()
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	var n int64
	err = db.QueryRow(`SELECT count(*) FROM queries`).Scan(&n)
	if err == nil {
		_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("counting rows in %s: %w", path, err)
	}
	r.Rows = &n
	if fi, err := os.Stat(path); err == nil {
		r.DBBytes = fi.Size()
	}
	if n > 0 {
		r.BytesPerRow = round(float64(r.DBBytes)/float64(n), 1)
	}
	return nil
}

// judge computes the derived figures and decides pass/fail: for querylog, every reply dnsperf
// received is a row and nothing was dropped.
func (r *runResult) judge() {
	if d := r.DNSPerf; d != nil && d.Completed > 0 {
		r.CPUPerQueryUS = round(1e6*r.CPUSecondsLoad/float64(d.Completed), 2)
	}
	if r.Variant == "querylog" {
		if r.Rows == nil || r.DNSPerf == nil {
			r.Problems = append(r.Problems, "rows or dnsperf results missing")
		} else {
			d := *r.Rows - r.DNSPerf.Completed
			r.RowsMinusCompl = &d
			if d != 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("rows − completed = %d (must be 0)", d))
			}
		}
		if r.Querylog == nil {
			r.Problems = append(r.Problems, "no querylog metrics")
		} else {
			if r.Rows != nil {
				d := *r.Rows - int64(r.Querylog.Enqueued)
				r.RowsMinusEnq = &d
			}
			if r.Querylog.DroppedTotal > 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("querylog dropped %.0f entries before SIGTERM: %v", r.Querylog.DroppedTotal, nonZero(r.Querylog.Dropped)))
			}
		}
	}
	if r.DNSPerf != nil && r.DNSPerf.Rcodes["SERVFAIL"] > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d SERVFAIL replies", r.DNSPerf.Rcodes["SERVFAIL"]))
	}
	r.Pass = len(r.Problems) == 0
}

func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

type summary struct {
	Variant       string  `json:"variant"`
	Runs          int     `json:"runs"`
	MedianQPS     float64 `json:"median_qps"`
	MedianCPUPerQ float64 `json:"median_cpu_us_per_query"`
	MedianCPU     float64 `json:"median_cpu_seconds_load"`
	MedianLatency float64 `json:"median_latency_avg_s"`
	MedianPeakRSS float64 `json:"median_peak_rss_bytes"`
	MedianLost    float64 `json:"median_queries_lost"`
	QPSRatio      float64 `json:"qps_ratio_to_none,omitempty"`
	CPUPerQRatio  float64 `json:"cpu_per_query_ratio_to_none,omitempty"`
	LatencyRatio  float64 `json:"latency_ratio_to_none,omitempty"`
	PeakRSSRatio  float64 `json:"peak_rss_ratio_to_none,omitempty"`
	// Medians of the ratios within each pair (this variant's run / the none run of the same
	// round): less sensitive to load on the machine drifting between rounds.
	PairedQPSRatio     float64    `json:"paired_qps_ratio_median,omitempty"`
	PairedCPUPerQRatio float64    `json:"paired_cpu_per_query_ratio_median,omitempty"`
	QPSRange           [2]float64 `json:"-"`
	CPUPerQRange       [2]float64 `json:"-"`
	QPSRangeJSON       string     `json:"qps_min_max"`
	CPUPerQRangeJS     string     `json:"cpu_us_per_query_min_max"`
}

type report struct {
	Scenario    string       `json:"scenario"`
	Short       bool         `json:"short,omitempty"`
	Date        time.Time    `json:"date"`
	Host        string       `json:"host"`
	Cores       int          `json:"cores"` // runtime.NumCPU of the harness: dnsperf and CoreDNS share them
	GOMAXPROCS  int          `json:"coredns_gomaxprocs"`
	GoVersion   string       `json:"go_version"`
	TargetQPS   int          `json:"target_qps"` // 0: unthrottled
	Duration    string       `json:"duration"`
	Clients     int          `json:"dnsperf_clients"`
	Threads     int          `json:"dnsperf_threads"`
	Outstanding int          `json:"dnsperf_outstanding"`
	EDNS        bool         `json:"edns"`
	Cache       bool         `json:"cache"`
	Pairs       int          `json:"pairs,omitempty"`
	QLOptions   string       `json:"querylog_options,omitempty"`
	Source      *provenance  `json:"source,omitempty"`
	Queries     queryStats   `json:"query_file"`
	Runs        []*runResult `json:"runs"`
	Summary     []summary    `json:"summary,omitempty"`
	Pass        bool         `json:"pass"`
	Problems    []string     `json:"problems,omitempty"`
}

func newReport(c *config) *report {
	host, _ := os.Hostname()
	rep := &report{
		Scenario: c.scenario, Short: c.short, Date: time.Now().UTC().Truncate(time.Second), Host: host,
		Cores: runtime.NumCPU(), GOMAXPROCS: c.gomaxprocs, GoVersion: runtime.Version(),
		TargetQPS: c.qps, Duration: secs(c.duration), Clients: c.clients, Threads: c.threads,
		Outstanding: c.outstanding, EDNS: c.edns, Cache: c.cache, QLOptions: c.qlOptions,
	}
	if c.scenario == "compare" {
		rep.Pairs = c.pairs
	}
	return rep
}

func (rep *report) finish() {
	rep.Problems = nil
	for _, r := range rep.Runs {
		for _, p := range r.Problems {
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %d (%s): %s", r.Index, r.Variant, p))
		}
	}
	want := 1
	if rep.Scenario == "compare" {
		want = 3 * rep.Pairs
		rep.Summary = nil
		var none *summary
		for _, v := range []string{"none", "querylog", "log"} {
			var qps, cpq, cpu, lat, rss, lost []float64
			for _, r := range rep.Runs {
				if r.Variant != v || r.DNSPerf == nil {
					continue
				}
				qps = append(qps, r.DNSPerf.QPS)
				cpq = append(cpq, r.CPUPerQueryUS)
				cpu = append(cpu, r.CPUSecondsLoad)
				lat = append(lat, r.DNSPerf.LatencyAvg)
				rss = append(rss, float64(r.PeakRSSBytes))
				lost = append(lost, float64(r.DNSPerf.Lost))
			}
			if len(qps) == 0 {
				continue
			}
			s := summary{Variant: v, Runs: len(qps), MedianQPS: round(median(qps), 1), MedianCPUPerQ: round(median(cpq), 2),
				MedianCPU: round(median(cpu), 3), MedianLatency: round(median(lat), 6), MedianPeakRSS: median(rss),
				MedianLost: median(lost),
				QPSRange:   [2]float64{slices.Min(qps), slices.Max(qps)}, CPUPerQRange: [2]float64{slices.Min(cpq), slices.Max(cpq)}}
			s.QPSRangeJSON = fmt.Sprintf("%.0f..%.0f", s.QPSRange[0], s.QPSRange[1])
			s.CPUPerQRangeJS = fmt.Sprintf("%.2f..%.2f", s.CPUPerQRange[0], s.CPUPerQRange[1])
			if v == "none" {
				none = &s
			} else if none != nil {
				s.QPSRatio = ratio(s.MedianQPS, none.MedianQPS)
				s.CPUPerQRatio = ratio(s.MedianCPUPerQ, none.MedianCPUPerQ)
				s.LatencyRatio = ratio(s.MedianLatency, none.MedianLatency)
				s.PeakRSSRatio = ratio(s.MedianPeakRSS, none.MedianPeakRSS)
				var pq, pc []float64
				for _, r := range rep.Runs {
					if r.Variant != v || r.DNSPerf == nil {
						continue
					}
					for _, n := range rep.Runs {
						if n.Variant == "none" && n.DNSPerf != nil && (n.Index-1)/3 == (r.Index-1)/3 {
							pq = append(pq, ratio(r.DNSPerf.QPS, n.DNSPerf.QPS))
							pc = append(pc, ratio(r.CPUPerQueryUS, n.CPUPerQueryUS))
						}
					}
				}
				if len(pq) > 0 {
					s.PairedQPSRatio, s.PairedCPUPerQRatio = round(median(pq), 3), round(median(pc), 3)
				}
			}
			rep.Summary = append(rep.Summary, s)
		}
	}
	if len(rep.Runs) < want {
		rep.Problems = append(rep.Problems, fmt.Sprintf("only %d of %d runs completed", len(rep.Runs), want))
	}
	rep.Pass = len(rep.Problems) == 0
}

func (rep *report) autoName() string {
	var d string
	switch rep.Scenario {
	case "rate":
		d = fmt.Sprintf("rate-%s-%s", kilo(rep.TargetQPS), rep.Duration)
	case "max":
		d = "max-" + rep.Duration
	case "compare":
		d = fmt.Sprintf("compare-%dx%s", rep.Pairs, rep.Duration)
	}
	if rep.Cache {
		d += "-cache"
	}
	if rep.GOMAXPROCS != 1 {
		d += fmt.Sprintf("-gomaxprocs%d", rep.GOMAXPROCS)
	}
	return fmt.Sprintf("%s-%s-%dcpu.json", rep.Date.Format("2006-01-02"), d, rep.Cores)
}

// secs formats a duration in seconds ("600s", not "10m0s"), as in the result file names.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func kilo(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ---------------------------------------------------------------------------------------------
// Text report

func (rep *report) text() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	title := rep.Scenario
	if rep.Short {
		title += " (short)"
	}
	p("")
	p("querylog load test: scenario %s, %s", title, rep.Date.Format(time.RFC3339))
	load := "unthrottled"
	if rep.TargetQPS > 0 {
		load = fmt.Sprintf("target %d QPS", rep.TargetQPS)
	}
	p("machine:  %d cores (runtime.NumCPU), shared by dnsperf and CoreDNS; CoreDNS GOMAXPROCS=%d; %s", rep.Cores, rep.GOMAXPROCS, rep.GoVersion)
	p("load:     %s for %s per run; dnsperf -c %d -T %d -q %d%s; cache %s",
		load, rep.Duration, rep.Clients, rep.Threads, rep.Outstanding, map[bool]string{true: " -e", false: ""}[rep.EDNS], onOff(rep.Cache))
	q := rep.Queries
	p("queries:  %d lines, %d distinct names (top 10 = %.1f%% of lines), %.1f%% NXDOMAIN, seed %d; %s",
		q.Lines, q.DistinctNames, 100*q.Top10Share, 100*q.NXDOMAINShare, q.Seed, typeMix(q.ByType, q.Lines))
	if src := rep.Source; src != nil {
		if src.Commit != "" || src.SHA256 != "" {
			p("source:   commit %.12s, %d uncommitted file(s) under plugin/ cmd/, sources sha256 %.12s", src.Commit, len(src.Dirty), src.SHA256)
		}
		if src.Note != "" {
			p("source:   %s", src.Note)
		}
	}
	if rep.QLOptions != "" {
		p("querylog: %s", rep.QLOptions)
	}
	for _, r := range rep.Runs {
		r.text(&b, rep.Scenario == "compare")
	}
	if len(rep.Summary) > 0 {
		p("")
		p("compare: medians over %d pair(s) (GOMAXPROCS=%d, %d cores shared with dnsperf; noisy machine: ratios matter more than absolutes)", rep.Pairs, rep.GOMAXPROCS, rep.Cores)
		p("  %-9s %8s %13s %11s %9s %10s %12s %11s %13s  %s", "variant", "QPS", "CPU µs/query", "latency ms", "RSS MiB",
			"QPS ×none", "CPU/q ×none", "paired QPS", "paired CPU/q", "QPS min..max")
		for _, s := range rep.Summary {
			qr, cr, pq, pc := "", "", "", ""
			if s.Variant != "none" {
				qr, cr = fmt.Sprintf("%.3f", s.QPSRatio), fmt.Sprintf("%.3f", s.CPUPerQRatio)
				pq, pc = fmt.Sprintf("%.3f", s.PairedQPSRatio), fmt.Sprintf("%.3f", s.PairedCPUPerQRatio)
			}
			p("  %-9s %8.0f %13.2f %11.3f %9.1f %10s %12s %11s %13s  %s", s.Variant, s.MedianQPS, s.MedianCPUPerQ, 1000*s.MedianLatency,
				s.MedianPeakRSS/(1<<20), qr, cr, pq, pc, s.QPSRangeJSON)
		}
		p("  ×none: ratio of the medians; paired: median of the per-round ratios to that round's none run")
	}
	p("")
	if rep.Pass {
		p("result: PASS")
	} else {
		p("result: FAIL")
		for _, pr := range rep.Problems {
			p("  - %s", pr)
		}
	}
	return b.String()
}

func (r *runResult) text(b *strings.Builder, compact bool) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("")
	p("run %d: %s (GOMAXPROCS=%d, observed %.0f)", r.Index, r.Variant, r.GOMAXPROCS, r.GOMAXPROCSSeen)
	if d := r.DNSPerf; d != nil {
		p("  dnsperf:   QPS achieved %.0f; sent %d, completed %d, lost %d (%.3f%%); latency avg %.3f ms, max %.1f ms; %s",
			d.QPS, d.Sent, d.Completed, d.Lost, pct(float64(d.Lost), float64(d.Sent)), 1000*d.LatencyAvg, 1000*d.LatencyMax, rcodes(d.Rcodes))
	}
	if r.Rows != nil {
		rc := "n/a"
		if r.RowsMinusCompl != nil {
			rc = strconv.FormatInt(*r.RowsMinusCompl, 10)
			if *r.RowsMinusCompl == 0 {
				rc += " (OK)"
			} else {
				rc += " (MUST BE 0)"
			}
		}
		re := ""
		if r.RowsMinusEnq != nil {
			re = fmt.Sprintf("; rows − enqueued_total = %d", *r.RowsMinusEnq)
		}
		p("  rows:      %d written; rows − completed = %s%s", *r.Rows, rc, re)
	}
	if r.LogLines != nil && r.DNSPerf != nil {
		p("  log:       %d query lines on stdout; lines − completed = %d", *r.LogLines, *r.LogLines-r.DNSPerf.Completed)
	}
	if q := r.Querylog; q != nil {
		p("  drops:     %s (at SIGTERM: enqueued %.0f, written %.0f, buffered %.0f, flush errors %.0f, ignored %.0f)",
			drops(q.Dropped), q.Enqueued, q.Written, q.BufferedAtStop, q.FlushErrors, q.Ignored)
		p("  buffer:    peak %.0f of %.0f (%.2f%% of capacity)", q.BufferPeak, q.BufferCapacity, q.BufferPeakPct)
		if q.Flushes > 0 {
			mx := fmt.Sprintf("≤ %s (upper bound of the highest non-empty bucket, an estimate)", ms(q.FlushMaxUpperBound))
			if q.FlushMaxAbove {
				mx = fmt.Sprintf("> %s (in the +Inf bucket)", ms(q.FlushMaxUpperBound))
			}
			p("  flushes:   %.0f before SIGTERM, mean %.0f rows/batch (largest ≤ %.0f); flusher busy %.2f%% of load time",
				q.Flushes, q.MeanBatch, q.BatchMaxUpperBound, q.FlushBusyPct)
			p("  flush time: p50 %s, p99 %s, max %s", ms(q.FlushP50), ms(q.FlushP99), mx)
		} else {
			p("  flushes:   none before SIGTERM (everything was written by the shutdown drain)")
		}
	}
	perQ := ""
	if r.CPUPerQueryUS > 0 {
		perQ = fmt.Sprintf(" = %.2f µs/query", r.CPUPerQueryUS)
	}
	p("  CoreDNS:   CPU %.2f s during load%s (%.2f s since start, GOMAXPROCS=%d); peak RSS %.1f MiB; shutdown %.2f s",
		r.CPUSecondsLoad, perQ, r.CPUSecondsTotal, r.GOMAXPROCS, float64(r.PeakRSSBytes)/(1<<20), r.ShutdownSeconds)
	if d := r.DNSPerf; d != nil && !compact {
		p("  dnsperf:   CPU %.2f s", d.CPUSeconds)
	}
	if r.Rows != nil {
		p("  database:  %d bytes after checkpoint (%d with WAL at exit), %.1f bytes/row", r.DBBytes, r.DBBytesAtExit, r.BytesPerRow)
	}
	if r.CPUProfile != "" {
		p("  profile:   %s (go tool pprof -top %s)", r.CPUProfile, r.CPUProfile)
	}
	for _, w := range r.LogWarnings[:min(len(r.LogWarnings), 5)] {
		p("  coredns:   %s", w)
	}
	for _, pr := range r.Problems {
		p("  PROBLEM:   %s", pr)
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func typeMix(m map[string]int, total int) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v })
	var parts []string
	for _, e := range kvs {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", e.k, 100*float64(e.v)/float64(total)))
	}
	return strings.Join(parts, ", ")
}

func rcodes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func drops(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	if len(parts) == 0 {
		return "none reported"
	}
	return strings.Join(parts, ", ")
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", 1000*s)
}

func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 3)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func round(x float64, digits int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
