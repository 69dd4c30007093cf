package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/childproc"
)

// dnsperfGrace is how long dnsperf may run past -l before it is killed.
const dnsperfGrace = 30 * time.Second

type dnsperfResult struct {
	Args          []string       `json:"args"` // of the first process when there are several
	Processes     int            `json:"processes,omitempty"`
	SourceAddrs   string         `json:"source_addresses,omitempty"` // their -a addresses, first–last
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
	SentBy        []int64        `json:"-"`           // queries sent by each process
}

// maxClientAddrs bounds -client-addrs: 127.0.1.1 to 127.4.238.
const maxClientAddrs = 1000

// clientAddr is the source address of the i-th of several dnsperf processes. Linux routes all
// of 127.0.0.0/8 to lo, so any of them can be bound without configuration.
func clientAddr(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

// runDNSPerf runs one dnsperf per query file. With one file it sends from 127.0.0.1; with
// several, each process sends from its own address (-a) with its share of -Q, -c and -q, all
// at once, and their statistics are added up.
func runDNSPerf(ctx context.Context, c *config, port int, qfiles []string) (*dnsperfResult, error) {
	k := len(qfiles)
	secs := strconv.FormatFloat(c.duration.Seconds(), 'f', -1, 64)
	ctx, cancel := context.WithTimeout(ctx, c.duration+dnsperfGrace)
	defer cancel()
	cmds := make([]*exec.Cmd, k)
	outs := make([]*strings.Builder, k)
	errOuts := make([]*strings.Builder, k)
	for i, qfile := range qfiles {
		args := []string{"-s", "127.0.0.1"}
		if k > 1 {
			args = append(args, "-a", clientAddr(i))
		}
		args = append(args, "-p", strconv.Itoa(port), "-d", qfile, "-l", secs,
			"-c", strconv.Itoa(ceilDiv(c.clients, k)), "-T", strconv.Itoa(c.threads), "-q", strconv.Itoa(ceilDiv(c.outstanding, k)))
		if c.qps > 0 {
			args = append(args, "-Q", strconv.Itoa(c.qps*(i+1)/k-c.qps*i/k))
		}
		if c.edns {
			args = append(args, "-e")
		}
		cmd := exec.CommandContext(ctx, "/usr/bin/dnsperf", args...)
		cmd.WaitDelay = 5 * time.Second
		outs[i], errOuts[i] = &strings.Builder{}, &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], errOuts[i]
		cmds[i] = cmd
	}
	done, waitErrs, err := childproc.Start(cmds...)
	if err == nil {
		<-done
	}
	parts := make([]*dnsperfResult, k)
	for i, cmd := range cmds {
		parts[i] = parseDNSPerf(outs[i].String())
		parts[i].Args = append([]string{"dnsperf"}, cmd.Args[1:]...)
		if cmd.ProcessState != nil {
			parts[i].CPUSeconds = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		}
	}
	res := sumDNSPerf(parts)
	if k > 1 {
		res.Processes, res.SourceAddrs = k, clientAddr(0)+"–"+clientAddr(k-1)
	}
	if ctx.Err() == context.DeadlineExceeded {
		return res, fmt.Errorf("killed after %s", c.duration+dnsperfGrace)
	}
	if err != nil {
		return res, err
	}
	for i, werr := range waitErrs {
		if werr != nil && k > 1 {
			return res, fmt.Errorf("%s: %v: %s", strings.Join(parts[i].Args, " "), werr, strings.TrimSpace(errOuts[i].String()))
		} else if werr != nil {
			return res, fmt.Errorf("%v: %s", werr, strings.TrimSpace(errOuts[i].String()))
		}
		if parts[i].Sent == 0 {
			return res, fmt.Errorf("no statistics in dnsperf output:\n%s\n%s", outs[i].String(), errOuts[i].String())
		}
	}
	return res, nil
}

// sumDNSPerf adds up the statistics of dnsperf processes that ran at the same time: counts
// and QPS add, latency is averaged over the completed queries (its standard deviation pooled).
func sumDNSPerf(parts []*dnsperfResult) *dnsperfResult {
	if len(parts) == 1 {
		r := parts[0]
		r.CPUSeconds = round(r.CPUSeconds, 3)
		r.SentBy = []int64{r.Sent}
		return r
	}
	r := &dnsperfResult{Args: parts[0].Args, Rcodes: map[string]int{}, LatencyMin: math.Inf(1)}
	var qps, sq float64
	for _, p := range parts {
		r.Sent += p.Sent
		r.Completed += p.Completed
		r.Lost += p.Lost
		r.Interrupted += p.Interrupted
		r.SentBy = append(r.SentBy, p.Sent)
		qps += p.QPS
		r.RunSeconds = max(r.RunSeconds, p.RunSeconds)
		r.LatencyAvg += p.LatencyAvg * float64(p.Completed)
		r.LatencyMax = max(r.LatencyMax, p.LatencyMax)
		if p.Completed > 0 {
			r.LatencyMin = min(r.LatencyMin, p.LatencyMin)
		}
		sq += float64(p.Completed) * (p.LatencyStdDev*p.LatencyStdDev + p.LatencyAvg*p.LatencyAvg)
		for k, v := range p.Rcodes {
			r.Rcodes[k] += v
		}
		r.CPUSeconds += p.CPUSeconds
	}
	r.QPS = round(qps, 1)
	r.CPUSeconds = round(r.CPUSeconds, 3)
	if math.IsInf(r.LatencyMin, 1) {
		r.LatencyMin = 0
	}
	if n := float64(r.Completed); n > 0 {
		mean := r.LatencyAvg / n
		r.LatencyAvg = round(mean, 6)
		r.LatencyStdDev = round(math.Sqrt(max(sq/n-mean*mean, 0)), 6)
	}
	return r
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

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
