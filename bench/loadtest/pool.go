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
	qps, cpu := map[poolKey][]float64{}, map[poolKey][]float64{}
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
	fmt.Fprintln(t, "mix\tGOMAXPROCS\tQPS\tvariant\trounds\tpaired QPS ×none\tmin..max\tpaired CPU/q ×none\tmin..max\t")
	for _, k := range keys {
		rate := "max"
		if k.targetQPS > 0 {
			rate = fmt.Sprint(k.targetQPS)
		}
		q, c := qps[k], cpu[k]
		fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%d\t%.3f\t%.3f..%.3f\t%.3f\t%.3f..%.3f\t\n", k.mix, k.gomaxprocs, rate, k.variant, len(q),
			median(q), slices.Min(q), slices.Max(q), median(c), slices.Min(c), slices.Max(c))
	}
	return t.Flush()
}
