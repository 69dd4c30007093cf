package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// dnsperfGrace is how long dnsperf may run past -l before it is killed.
const dnsperfGrace = 30 * time.Second

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
