package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	PairedQPSRatio     float64 `json:"paired_qps_ratio_median,omitempty"`
	PairedCPUPerQRatio float64 `json:"paired_cpu_per_query_ratio_median,omitempty"`
	// The same against querylog: what a -variant adds to it.
	QPSRatioQL           float64    `json:"qps_ratio_to_querylog,omitempty"`
	CPUPerQRatioQL       float64    `json:"cpu_per_query_ratio_to_querylog,omitempty"`
	LatencyRatioQL       float64    `json:"latency_ratio_to_querylog,omitempty"`
	PeakRSSRatioQL       float64    `json:"peak_rss_ratio_to_querylog,omitempty"`
	PairedQPSRatioQL     float64    `json:"paired_qps_ratio_to_querylog_median,omitempty"`
	PairedCPUPerQRatioQL float64    `json:"paired_cpu_per_query_ratio_to_querylog_median,omitempty"`
	QPSRange             [2]float64 `json:"-"`
	CPUPerQRange         [2]float64 `json:"-"`
	QPSRangeJSON         string     `json:"qps_min_max"`
	CPUPerQRangeJS       string     `json:"cpu_us_per_query_min_max"`
}

// ratios compares a variant with a base variant (none or querylog).
type ratios struct {
	qps, cpuPerQ, latency, peakRSS float64 // of the medians
	pairedQPS, pairedCPUPerQ       float64 // medians of the ratios within each round
}

type report struct {
	Scenario    string          `json:"scenario"`
	Short       bool            `json:"short,omitempty"`
	Date        time.Time       `json:"date"`
	Host        string          `json:"host"`
	Cores       int             `json:"cores"` // runtime.NumCPU of the harness: dnsperf and CoreDNS share them
	GOMAXPROCS  int             `json:"coredns_gomaxprocs"`
	GoVersion   string          `json:"go_version"`
	TargetQPS   int             `json:"target_qps"` // 0: unthrottled
	Duration    string          `json:"duration"`
	Clients     int             `json:"dnsperf_clients"`
	Threads     int             `json:"dnsperf_threads"`
	Outstanding int             `json:"dnsperf_outstanding"`
	EDNS        bool            `json:"edns"`
	Cache       bool            `json:"cache"`
	Mix         string          `json:"mix"`              // absent in reports from before -mix: default
	ClientAddrs int             `json:"client_addresses"` // dnsperf processes, each from its own address
	Pairs       int             `json:"pairs,omitempty"`
	QLOptions   string          `json:"querylog_options,omitempty"`
	Variants    []string        `json:"variants,omitempty"`        // compare: the variants of each round, in order
	Named       []string        `json:"variant_options,omitempty"` // -variant NAME=OPTIONS as given
	ClickHouse  *clickhouseInfo `json:"clickhouse,omitempty"`
	Outage      string          `json:"clickhouse_outage,omitempty"`
	CorefileOf  string          `json:"corefile,omitempty"`           // -corefile; absent: template
	UpstreamRR  int             `json:"upstream_records,omitempty"`   // -corefile kubernetes: A records per A answer
	LockDB      bool            `json:"lock_db,omitempty"`            // the write lock was held during the load
	GOMEMLIMIT  string          `json:"coredns_gomemlimit,omitempty"` // absent: unset
	Source      *provenance     `json:"source,omitempty"`
	Queries     queryStats      `json:"query_file"`
	Runs        []*runResult    `json:"runs"`
	Summary     []summary       `json:"summary,omitempty"`
	Pass        bool            `json:"pass"`
	Problems    []string        `json:"problems,omitempty"`
}

func newReport(c *config) *report {
	host, _ := os.Hostname()
	rep := &report{
		Scenario: c.scenario, Short: c.short, Date: time.Now().UTC().Truncate(time.Second), Host: host,
		Cores: runtime.NumCPU(), GOMAXPROCS: c.gomaxprocs, GoVersion: runtime.Version(),
		TargetQPS: c.qps, Duration: secs(c.duration), Clients: c.clients, Threads: c.threads,
		Outstanding: c.outstanding, EDNS: c.edns, Cache: c.cache, Mix: c.mix, ClientAddrs: c.clientAddrs, QLOptions: c.qlOptions,
	}
	if c.outage > 0 {
		rep.Outage = secs(c.outage)
	}
	if c.corefile == corefileKubernetes {
		rep.CorefileOf, rep.UpstreamRR = c.corefile, c.upstreamRR
	}
	rep.LockDB, rep.GOMEMLIMIT = c.lockDB, c.gomemlimit
	if c.scenario == "compare" {
		rep.Pairs = c.pairs
		rep.Variants = variantNames(c.variants)
		for _, v := range c.named {
			rep.Named = append(rep.Named, v.Name+"="+v.Options)
		}
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
		want = len(rep.Variants) * rep.Pairs
		rep.summarize()
	}
	if len(rep.Runs) < want {
		rep.Problems = append(rep.Problems, fmt.Sprintf("only %d of %d runs completed", len(rep.Runs), want))
	}
	rep.Pass = len(rep.Problems) == 0
}

// summarize sets the medians of every variant's runs, and their ratios to none's and
// querylog's.
func (rep *report) summarize() {
	rep.Summary = nil
	for _, v := range rep.Variants {
		var qps, cpq, cpu, lat, rss, lost []float64
		for _, r := range rep.runsOf(v) {
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
		rep.Summary = append(rep.Summary, s)
	}
	for _, name := range []string{"none", "querylog"} {
		base := rep.summaryOf(name)
		if base == nil {
			continue
		}
		for i := range rep.Summary {
			s := &rep.Summary[i]
			if s == base {
				continue
			}
			x := rep.ratios(s, base)
			if name == "none" {
				s.QPSRatio, s.CPUPerQRatio, s.LatencyRatio, s.PeakRSSRatio = x.qps, x.cpuPerQ, x.latency, x.peakRSS
				s.PairedQPSRatio, s.PairedCPUPerQRatio = x.pairedQPS, x.pairedCPUPerQ
			} else {
				s.QPSRatioQL, s.CPUPerQRatioQL, s.LatencyRatioQL, s.PeakRSSRatioQL = x.qps, x.cpuPerQ, x.latency, x.peakRSS
				s.PairedQPSRatioQL, s.PairedCPUPerQRatioQL = x.pairedQPS, x.pairedCPUPerQ
			}
		}
	}
}

// runsOf returns the runs of a variant that have dnsperf results.
func (rep *report) runsOf(v string) []*runResult {
	var out []*runResult
	for _, r := range rep.Runs {
		if r.Variant == v && r.DNSPerf != nil {
			out = append(out, r)
		}
	}
	return out
}

func (rep *report) summaryOf(v string) *summary {
	for i := range rep.Summary {
		if rep.Summary[i].Variant == v {
			return &rep.Summary[i]
		}
	}
	return nil
}

// ratios compares s with base: the ratios of their medians, and the medians of the ratios of
// the runs of one round, which drifting load on the machine skews less.
func (rep *report) ratios(s, base *summary) ratios {
	x := ratios{qps: ratio(s.MedianQPS, base.MedianQPS), cpuPerQ: ratio(s.MedianCPUPerQ, base.MedianCPUPerQ),
		latency: ratio(s.MedianLatency, base.MedianLatency), peakRSS: ratio(s.MedianPeakRSS, base.MedianPeakRSS)}
	var pq, pc []float64
	for _, r := range rep.runsOf(s.Variant) {
		for _, b := range rep.runsOf(base.Variant) {
			if b.Round == r.Round {
				pq = append(pq, ratio(r.DNSPerf.QPS, b.DNSPerf.QPS))
				pc = append(pc, ratio(r.CPUPerQueryUS, b.CPUPerQueryUS))
			}
		}
	}
	if len(pq) > 0 {
		x.pairedQPS, x.pairedCPUPerQ = round(median(pq), 3), round(median(pc), 3)
	}
	return x
}

func (rep *report) autoName() string {
	var d string
	switch rep.Scenario {
	case "rate":
		d = fmt.Sprintf("rate-%s-%s", kilo(rep.TargetQPS), rep.Duration)
		if rep.Outage != "" {
			d += "-outage" + rep.Outage
		}
	case "max":
		d = "max-" + rep.Duration
	case "compare":
		d = "compare-"
		if rep.TargetQPS > 0 {
			d += kilo(rep.TargetQPS) + "-"
		}
		d += fmt.Sprintf("%dx%s", rep.Pairs, rep.Duration)
		if v := strings.Join(rep.Variants, "-"); v != strings.ReplaceAll(defaultVariants, ",", "-") {
			d += "-" + v
		}
	}
	if rep.Mix != "" && rep.Mix != mixDefault {
		d += "-" + rep.Mix
	}
	if rep.Cache {
		d += "-cache"
	}
	if rep.CorefileOf != "" {
		d += "-" + rep.CorefileOf
		if rep.UpstreamRR != 1 {
			d += fmt.Sprintf("-upstream%drr", rep.UpstreamRR)
		}
	}
	if rep.LockDB {
		d += "-locked"
	}
	if rep.GOMEMLIMIT != "" {
		d += "-gomemlimit" + rep.GOMEMLIMIT
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
