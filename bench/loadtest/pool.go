package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
)

// poolKey is what rounds are pooled by: runs at another GOMAXPROCS, rate or mix measure
// something else.
type poolKey struct {
	mix        string
	gomaxprocs int
	targetQPS  int // 0: unthrottled
	variant    string
}

// pool reads compare reports and writes, for every variant but none, the median over the
// rounds of all of them of its ratios to that round's none run. The hours of this machine
// differ by more than the costs measured, so one report's five rounds say less than all of a
// day's (bench/README.md, "Figures").
func pool(w io.Writer, paths []string) error {
	if len(paths) == 0 {
		return errors.New("-scenario pool: name the compare reports (JSON) to pool")
	}
	qps, cpu, steady := map[poolKey][]float64{}, map[poolKey][]float64{}, map[poolKey][]float64{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if rep.Scenario != "compare" {
			return fmt.Errorf("%s: a %q report; only compare reports have rounds to pool", path, rep.Scenario)
		}
		for _, r := range rep.Runs {
			for _, base := range rep.Runs {
				if r.Variant == "none" || base.Variant != "none" || base.Round != r.Round || r.DNSPerf == nil || base.DNSPerf == nil {
					continue
				}
				k := poolKey{mix: cmp.Or(rep.Mix, "default"), gomaxprocs: rep.GOMAXPROCS, targetQPS: rep.TargetQPS, variant: r.Variant}
				qps[k] = append(qps[k], ratio(r.DNSPerf.QPS, base.DNSPerf.QPS))
				cpu[k] = append(cpu[k], ratio(r.CPUPerQueryUS, base.CPUPerQueryUS))
				if a, b := steadyRate(r.Series), steadyRate(base.Series); a > 0 && b > 0 {
					steady[k] = append(steady[k], a/b)
				}
			}
		}
	}
	if len(qps) == 0 {
		return errors.New("no round of these reports has a none run to pair with")
	}
	keys := make([]poolKey, 0, len(qps))
	for k := range qps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b poolKey) int {
		return cmp.Or(cmp.Compare(a.mix, b.mix), cmp.Compare(a.gomaxprocs, b.gomaxprocs), cmp.Compare(a.targetQPS, b.targetQPS), cmp.Compare(a.variant, b.variant))
	})
	fmt.Fprintf(w, "pooled: %d report(s); per round, the variant's ratio to that round's none run\n", len(paths))
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(t, "mix\tGOMAXPROCS\tQPS\tvariant\trounds\tpaired QPS ×none\tmin..max\tpaired CPU/q ×none\tmin..max\tfrom 5 s on\t")
	for _, k := range keys {
		rate := "max"
		if k.targetQPS > 0 {
			rate = fmt.Sprint(k.targetQPS)
		}
		q, c, from5 := qps[k], cpu[k], "-"
		if st := steady[k]; len(st) > 0 {
			from5 = fmt.Sprintf("%.3f (%d)", median(st), len(st))
		}
		fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%d\t%.3f\t%.3f..%.3f\t%.3f\t%.3f..%.3f\t%s\t\n", k.mix, k.gomaxprocs, rate, k.variant, len(q),
			median(q), slices.Min(q), slices.Max(q), median(c), slices.Min(c), slices.Max(c), from5)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "from 5 s on: median of the paired ratios of the requests CoreDNS answered a second (coredns_dns_requests_total,\n"+
		"scraped every second) from the 5th second to the last whole one (rounds with a series); a start that loses\n"+
		"dnsperf's first queries, which it waits 5 s for, shows in the QPS column only")
	return err
}

// steadyRate is the requests a second a run's series shows from its 5th second to its last
// whole one, or 0 where the series is too short.
func steadyRate(series []point) float64 {
	var from, to *point
	for i := range series {
		p := &series[i]
		if from == nil && p.T >= 5 {
			from = p
		}
		if i < len(series)-1 { // the last point is the final scrape, after the load
			to = p
		}
	}
	if from == nil || to == nil || to.T-from.T < 3 {
		return 0
	}
	return (to.Requests - from.Requests) / (to.T - from.T)
}
