// Command loadtest drives the custom CoreDNS (./cmd/coredns) with the real dnsperf and reports
// what querylog did under that load: throughput, completeness (rows in SQLite against replies
// dnsperf received), drops, buffer fill, batch flush times, CPU, memory and database size.
//
// Everything runs on 127.0.0.1 and every run is bounded in time. See bench/README.md.
//
//	go run ./bench/loadtest -scenario rate -short            # CI: 5 s at 2000 QPS
//	go run ./bench/loadtest -scenario rate                   # 10000 QPS for 600 s
//	go run ./bench/loadtest -scenario max -duration 30s      # unthrottled
//	go run ./bench/loadtest -scenario compare -pairs 3       # none / querylog / log / dnstap, 20 s each
//	go run ./bench/loadtest -scenario compare -variant 'big=batch_size 5000'   # querylog / big
//	go run ./bench/loadtest -scenario rate -clickhouse -clickhouse-outage 60s -duration 120s -querylog-options 'ship $CLICKHOUSE'
//	go run ./bench/loadtest -scenario rate -mix skewed       # 20,000 names, 32 client addresses
//	go run ./bench/loadtest -scenario rate -mix unique -qps 2000 -duration 5s   # every name new
//	go run ./bench/loadtest -scenario pool bench/results/*-compare-*.json   # rounds of many reports
//	go run ./bench/loadtest -scenario compare -variants none,querylog -corefile kubernetes -lock-db -mix unique -duration 60s
//	                                                         # memory: the manifests' Corefile, buffer full
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	modulePath = "github.com/querylog/querylog"
	zone       = "bench.test."
	nxZone     = "nx.bench.test."
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
	mix         string
	clientAddrs int
	seed        uint64
	names       int
	lines       int
	qlOptions   string
	named       namedVariants // -variant
	variantList string        // -variants
	variants    []variant     // what each run, or each compare round, runs
	clickhouse  bool
	outage      time.Duration // -clickhouse-outage
	cpuProfile  string
	corednsBin  string
	dnstapBin   string // golang-dnstap's receiver, built when a variant is dnstap
	repo        string
	keep        bool
	corefile    string // -corefile: template or kubernetes
	upstreamRR  int    // -upstream-records
	lockDB      bool   // -lock-db
	gomemlimit  string // -gomemlimit: GOMEMLIMIT of CoreDNS, "" for none
}

func main() {
	os.Exit(realMain())
}

func realMain() int {
	var c config
	flag.StringVar(&c.scenario, "scenario", "rate", "rate (fixed QPS), max (unthrottled), compare (no logging / querylog / log / dnstap, or the -variants, in rounds), or pool (the rounds of the compare reports named as arguments, together)")
	flag.BoolVar(&c.short, "short", false, "short run for CI: 5 s (and 2000 QPS for rate)")
	flag.IntVar(&c.qps, "qps", 0, "target QPS for -scenario rate (default 10000; 2000 with -short); with compare, runs every variant at this rate instead of unthrottled (to compare CPU)")
	flag.DurationVar(&c.duration, "duration", 0, "load duration per run (default: rate 600s, max 60s, compare 20s; 5s with -short)")
	flag.IntVar(&c.clients, "clients", 10, "dnsperf -c: simulated clients (source ports), split between the processes of -client-addrs")
	flag.IntVar(&c.threads, "threads", 1, "dnsperf -T: dnsperf threads")
	flag.IntVar(&c.outstanding, "outstanding", 100, "dnsperf -q: maximum queries outstanding, split between the processes of -client-addrs")
	flag.BoolVar(&c.edns, "edns", true, "dnsperf -e: send EDNS0, as most clients do")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS for CoreDNS")
	flag.BoolVar(&c.cache, "cache", false, "put the cache plugin in front of template")
	flag.IntVar(&c.pairs, "pairs", 3, "compare: rounds, each running every variant once, in the order of -variants")
	flag.StringVar(&c.jsonPath, "json", "", "write the report as JSON to this file; \"auto\" names it bench/results/<date>-<scenario>-...-<N>cpu.json")
	flag.StringVar(&c.mix, "mix", mixDefault, "query mix: default (Zipf over 50,000 names, ~5% NXDOMAIN, one client address), skewed (Zipf over 20,000 names, ~10% NXDOMAIN, many client addresses) or unique (every name new, NXDOMAIN)")
	flag.IntVar(&c.clientAddrs, "client-addrs", 0, "client addresses: one dnsperf process from each of 127.0.1.1, 127.0.1.2, ... (default: 32 for -mix skewed, else 1, which sends from 127.0.0.1)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the query file")
	flag.IntVar(&c.names, "names", 0, "names in the pool that default and skewed draw from (default 50000 and 20000)")
	flag.IntVar(&c.lines, "lines", 0, "lines in the dnsperf query files, split between them; dnsperf loops over each (default 200000; unique: 1.1 × rate × duration, at most 10,000,000)")
	flag.StringVar(&c.qlOptions, "querylog-options", "", "extra querylog block options, ';'-separated, e.g. \"buffer_size 100000; batch_size 5000\"; with compare, for every querylog variant")
	flag.Var(&c.named, "variant", "compare: `NAME=OPTIONS`, a querylog variant reported as NAME whose block has these ';'-separated options after -querylog-options, e.g. 'norollups=rollup_limit 0' or 'ship=ship $CLICKHOUSE; node bench' (repeatable); ratios are to querylog and to none")
	flag.StringVar(&c.variantList, "variants", "", "compare: the variants of each round, a comma-separated `LIST` in order, from none, querylog, log, dnstap and the -variant names (default "+defaultVariants+"; with -variant: querylog and the -variant names)")
	flag.BoolVar(&c.clickhouse, "clickhouse", false, "start a clickhouse-server of the run's own on loopback (data on tmpfs where there is one); "+clickhousePlaceholder+" in querylog options ships there (each run to a table of its own, the password from a file), and the report checks ClickHouse's rows against SQLite's")
	flag.DurationVar(&c.outage, "clickhouse-outage", 0, "rate with -clickhouse: stop ClickHouse (-duration − `D`)/2 into the load and start it again D later; reports the ship lag and how soon it fell under 5 s")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "rate/max: add the pprof plugin and save a CoreDNS CPU profile of the load to this file")
	flag.StringVar(&c.corednsBin, "coredns", "", "use this CoreDNS binary instead of building ./cmd/coredns")
	flag.StringVar(&c.repo, "repo", "", "repository root (default: found from the working directory)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary folder (Corefiles, databases, logs)")
	flag.StringVar(&c.corefile, "corefile", corefileTemplate, "template (the harness's own zone, answered by the template plugin) or kubernetes (the Corefile of deploy/kubernetes: kubernetes with pods verified on a fake API server, metadata, forward to a loopback upstream, cache, loop, reload, loadbalance; variants none and querylog only)")
	flag.IntVar(&c.upstreamRR, "upstream-records", 1, "-corefile kubernetes: A records in the upstream's answer to each A query (250 make a 4 KB reply)")
	flag.BoolVar(&c.lockDB, "lock-db", false, "hold the database's write lock (BEGIN EXCLUSIVE from another connection) from startup to the end of the load: nothing is flushed, the buffer fills and what overflows is dropped and counted (judged: rows + dropped = replies)")
	flag.StringVar(&c.gomemlimit, "gomemlimit", "", "GOMEMLIMIT of CoreDNS (e.g. 150MiB); default: unset")
	flag.Parse()
	if c.scenario == "pool" {
		if err := pool(os.Stdout, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			return 2
		}
		return 0
	}
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
	if c.scenario == "max" {
		c.qps = 0 // unthrottled
	}
	if c.duration < time.Second || c.duration > 24*time.Hour {
		return fmt.Errorf("-duration %s: must be between 1s and 24h", c.duration)
	}
	if c.qps < 0 || c.clients < 1 || c.threads < 1 || c.outstanding < 1 || c.gomaxprocs < 1 || c.pairs < 1 {
		return errors.New("-qps must be >= 0; -clients, -threads, -outstanding, -gomaxprocs and -pairs >= 1")
	}
	switch c.mix {
	case mixDefault, mixUnique:
		c.clientAddrs = cmp.Or(c.clientAddrs, 1)
		c.names = cmp.Or(c.names, 50000)
	case mixSkewed:
		c.clientAddrs = cmp.Or(c.clientAddrs, 32)
		c.names = cmp.Or(c.names, 20000)
	default:
		return fmt.Errorf("unknown -mix %q (default, skewed or unique)", c.mix)
	}
	if c.lines == 0 {
		c.lines = 200000
		if c.mix == mixUnique {
			c.lines = uniqueLines(c.qps, c.duration)
		}
	}
	if c.names < 100 || c.lines < 1000 {
		return errors.New("-names must be >= 100 and -lines >= 1000")
	}
	if c.clientAddrs < 1 || c.clientAddrs > maxClientAddrs || c.lines < c.clientAddrs {
		return fmt.Errorf("-client-addrs must be between 1 and %d, and at most -lines", maxClientAddrs)
	}
	if c.qps > 0 && c.qps < c.clientAddrs {
		return errors.New("-qps must be at least -client-addrs: every dnsperf process sends at 1 QPS or more")
	}
	if err := c.resolveVariants(); err != nil {
		return err
	}
	ships := slices.ContainsFunc(c.variants, func(v variant) bool { return v.Querylog && usesClickHouse(v.Options) })
	switch {
	case ships && !c.clickhouse:
		return errors.New(clickhousePlaceholder + " in querylog options needs -clickhouse")
	case c.clickhouse && !ships:
		return errors.New("-clickhouse: no querylog options ship to " + clickhousePlaceholder + " (quote it: 'ship " + clickhousePlaceholder + "')")
	case c.outage != 0 && (c.scenario != "rate" || !ships):
		return errors.New("-clickhouse-outage is for -scenario rate with -clickhouse and 'ship " + clickhousePlaceholder + "' in -querylog-options")
	case c.outage < 0 || c.outage >= c.duration:
		return fmt.Errorf("-clickhouse-outage %s: must be shorter than -duration %s", c.outage, c.duration)
	}
	if err := c.fillKubernetes(); err != nil {
		return err
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

// fillKubernetes checks -corefile, -upstream-records, -lock-db and -gomemlimit.
func (c *config) fillKubernetes() error {
	switch c.corefile {
	case corefileTemplate:
		if c.upstreamRR != 1 {
			return errors.New("-upstream-records is for -corefile kubernetes (the template Corefile has no upstream)")
		}
	case corefileKubernetes:
		for _, v := range c.variants {
			if !v.Querylog && v.Name != "none" {
				return fmt.Errorf("-corefile kubernetes: variant %q; only none and querylog variants", v.Name)
			}
		}
		if c.cache || c.cpuProfile != "" {
			return errors.New("-corefile kubernetes has cache 30 of its own and no pprof: drop -cache and -cpuprofile")
		}
	default:
		return fmt.Errorf("unknown -corefile %q (template or kubernetes)", c.corefile)
	}
	if c.upstreamRR < 0 || c.upstreamRR > 4000 {
		return fmt.Errorf("-upstream-records %d: must be between 0 and 4000", c.upstreamRR)
	}
	if c.gomemlimit != "" && !gomemlimitRE.MatchString(c.gomemlimit) {
		return fmt.Errorf("-gomemlimit %q: a number of bytes with an optional unit B, KiB, MiB, GiB or TiB (as Go's GOMEMLIMIT), or off", c.gomemlimit)
	}
	return nil
}

// gomemlimitRE is what the Go runtime accepts in GOMEMLIMIT.
var gomemlimitRE = regexp.MustCompile(`^([0-9]+(B|KiB|MiB|GiB|TiB)?|off)$`)
