package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/querylog/querylog/internal/childproc"
	"github.com/querylog/querylog/internal/dblock"
	"github.com/querylog/querylog/internal/freeport"
)

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
		if rep.Source, err = build(ctx, c.repo, bin); err != nil {
			return nil, err
		}
	} else {
		rep.Source = prebuilt(bin)
	}
	if slices.ContainsFunc(c.variants, func(v variant) bool { return v.Name == "dnstap" }) {
		fmt.Fprintf(os.Stderr, "building golang-dnstap's dnstap receiver ...\n")
		c.dnstapBin = filepath.Join(tmp, "dnstap")
		if err := buildDNSTapReceiver(ctx, c.repo, c.dnstapBin); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat("/usr/bin/dnsperf"); err != nil {
		return nil, errors.New("/usr/bin/dnsperf not found: apt-get install -y dnsperf")
	}
	// Written before any CoreDNS starts, so the timed load never includes it.
	fmt.Fprintf(os.Stderr, "writing %d query lines (mix %s) in %d file(s) ...\n", c.lines, c.mix, c.clientAddrs)
	qfiles, qs, err := writeQueries(c, tmp)
	if err != nil {
		return nil, err
	}
	rep.Queries = qs
	var ch *clickhouse
	if c.clickhouse {
		fmt.Fprintf(os.Stderr, "starting clickhouse-server ...\n")
		if ch, err = startClickHouse(ctx, tmp); err != nil {
			return nil, err
		}
		defer ch.close(tmp, c.keep)
		rep.ClickHouse = &ch.info
	}

	var k *cluster
	if c.corefile == corefileKubernetes {
		fmt.Fprintf(os.Stderr, "starting the fake Kubernetes API and the upstream ...\n")
		if k, err = startCluster(c); err != nil {
			return nil, err
		}
		defer k.close()
	}

	var runs []variant
	rounds := 1
	if c.scenario == "compare" {
		rounds = c.pairs
	}
	for range rounds {
		runs = append(runs, c.variants...)
	}
	for i, v := range runs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		dir := filepath.Join(tmp, fmt.Sprintf("run%d-%s", i+1, v.Name))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return rep, err
		}
		var ship *shipTarget
		if ch != nil && v.Querylog && usesClickHouse(v.Options) {
			ship = &shipTarget{ch: ch, table: fmt.Sprintf("run%d", i+1)}
			v.Options = ch.expand(v.Options, ship.table)
		}
		fmt.Fprintf(os.Stderr, "run %d/%d: %s, %s, %s ...\n", i+1, len(runs), v.Name, loadDesc(c), secs(c.duration))
		r, err := runOnce(ctx, c, bin, qfiles, qs.LinesPerFile, dir, v, ship, k)
		if r == nil {
			r = &runResult{Variant: v.Name, querylog: v.Querylog, GOMAXPROCS: c.gomaxprocs}
		}
		r.Index = i + 1
		if c.scenario == "compare" {
			r.Round = i/len(c.variants) + 1
		}
		rep.Runs = append(rep.Runs, r)
		if err != nil {
			r.Problems = append(r.Problems, "aborted: "+strings.SplitN(err.Error(), "\n", 2)[0])
			r.Pass = false
			rep.finish()
			return rep, fmt.Errorf("run %d (%s): %w", i+1, v.Name, err)
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

// runOnce starts a fresh CoreDNS with a fresh database, loads it with dnsperf while scraping its
// metrics, stops it with SIGTERM and collects the results. With ship, querylog ships to the
// harness's ClickHouse, which -clickhouse-outage stops during the load. With k, CoreDNS runs the
// kubernetes Corefile against k's API and upstream.
func runOnce(ctx context.Context, c *config, bin string, qfiles []string, linesPerFile []int, dir string, v variant, ship *shipTarget, k *cluster) (*runResult, error) {
	p, err := freeport.Take(4)
	if err != nil {
		return nil, err
	}
	dnsPort, metricsPort, readyPort, pprofPort := p[0], p[1], p[2], p[3]
	db := filepath.Join(dir, "querylog.db")
	var cf string
	if k != nil {
		cf = kubernetesCorefile(k, v, db, dnsPort, metricsPort, readyPort, p[3]) // the fourth port for health
		pprofPort = 0
	} else {
		if c.cpuProfile == "" {
			pprofPort = 0
		}
		cf = corefile(c, v, db, dnsPort, metricsPort, readyPort, pprofPort)
	}
	cfPath := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o644); err != nil {
		return nil, err
	}
	r := &runResult{Variant: v.Name, querylog: v.Querylog, lockedDB: c.lockDB, pods: k != nil, Corefile: cf, GOMAXPROCS: c.gomaxprocs, Started: time.Now().UTC()}

	var tap *dnstapReceiver
	if v.Name == "dnstap" {
		if tap, err = startDNSTapReceiver(ctx, c.dnstapBin, dir); err != nil {
			return r, err
		}
		defer func() {
			size := tap.stop() // after CoreDNS has exited: the deferred kill below runs first
			r.DNSTapBytes = &size
		}()
	}

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
	if c.gomemlimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+c.gomemlimit)
	}
	cmd.Stdout, cmd.Stderr = out, out
	exited, _, err := childproc.Start(cmd)
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
	var unlock func() error // -lock-db

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", readyPort), metricsURL, exited); err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(outPath, 20))
	}
	if err := waitAnswers(ctx, fmt.Sprintf("127.0.0.1:%d", dnsPort), exited); err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(outPath, 20))
	}
	if c.lockDB && v.Querylog {
		release, err := dblock.Hold(db)
		if err != nil {
			return r, err
		}
		defer release()
		unlock = release
	}
	cpu0, _ := procCPU(pid)
	var tapCPU0 float64
	if tap != nil {
		tapCPU0, _ = tap.cpuSeconds()
	}

	// Scrape every second while dnsperf runs.
	sc := &scraper{url: metricsURL}
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	loadStart := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sc.loop(scrapeCtx, loadStart) }()

	var sr *shipRun
	if ship != nil {
		sr = startShipRun(ctx, c, ship, loadStart)
		r.Ship = sr.res
	}

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

	dp, dnsperfErr := runDNSPerf(ctx, c, dnsPort, qfiles)
	r.LoadSeconds = time.Since(loadStart).Seconds()
	stopScrape()
	wg.Wait()
	if sr != nil {
		sr.loadEnded()
	}
	r.DNSPerf = dp
	if c.mix == mixUnique {
		r.repeatedNames(linesPerFile)
	}
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
	if tap != nil {
		if cpu, err := tap.cpuSeconds(); err == nil {
			cpu = round(cpu-tapCPU0, 3)
			r.ReceiverCPU = &cpu
		}
	}
	final, scrapeErr := scrapeOnce(ctx, metricsURL, time.Since(loadStart).Seconds())
	r.Series = sc.series()
	if scrapeErr == nil {
		r.Series = append(r.Series, final.point())
		peak, dbPeak := sc.maxPeak()
		r.setMetrics(final, peak, dbPeak)
	}
	if sr != nil {
		sr.scraped(r.Series, final)
	}

	// Stop, and wait for the drain, which needs the lock.
	if unlock != nil {
		if err := unlock(); err != nil {
			return r, err
		}
	}
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

	if v.Querylog {
		// Counting distinct names takes about a minute for 6 million different ones; the
		// unique mix's are known from how many queries repeated a name.
		if err := r.countRows(db, c.mix != mixUnique); err != nil {
			return r, err
		}
	}
	if sr != nil {
		if err := sr.count(ctx); err != nil {
			r.Problems = append(r.Problems, err.Error())
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
