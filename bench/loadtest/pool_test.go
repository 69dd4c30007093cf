package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Rounds of several reports are pooled by mix, GOMAXPROCS and rate, each paired with the none
// run of its own round and report.
func TestPoolPairsRoundsAcrossReports(t *testing.T) {
	dir := t.TempDir()
	write := func(name, mix string, qps int, rounds ...[2]float64) string {
		t.Helper()
		rep := &report{Scenario: "compare", Mix: mix, GOMAXPROCS: 2, TargetQPS: qps}
		for i, r := range rounds { // none's QPS, querylog's; CPU per query the other way round
			rep.Runs = append(rep.Runs,
				&runResult{Round: i + 1, Variant: "none", DNSPerf: &dnsperfResult{QPS: r[0]}, CPUPerQueryUS: r[1]},
				&runResult{Round: i + 1, Variant: "querylog", DNSPerf: &dnsperfResult{QPS: r[1]}, CPUPerQueryUS: r[0]})
		}
		path := filepath.Join(dir, name)
		if err := writeJSON(path, rep); err != nil {
			t.Fatal(err)
		}
		return path
	}
	a := write("a.json", "unique", 0, [2]float64{1000, 900}, [2]float64{2000, 1900}) // 0.9, 0.95
	b := write("b.json", "unique", 0, [2]float64{1000, 1000})                        // 1.0
	c := write("c.json", "unique", 10000, [2]float64{1000, 500})                     // another rate
	var out strings.Builder
	if err := pool(&out, []string{a, b, c}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"unique 2 max querylog 3 0.950 0.900..1.000 1.053 1.000..1.111",
		"unique 2 10000 querylog 1 0.500 0.500..0.500 2.000 2.000..2.000",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pooled table lacks %q:\n%s", want, out.String())
		}
	}

	rate := filepath.Join(dir, "rate.json")
	if err := writeJSON(rate, &report{Scenario: "rate"}); err != nil {
		t.Fatal(err)
	}
	if err := pool(&out, []string{a, rate}); err == nil || !strings.Contains(err.Error(), "rate.json") {
		t.Errorf("a rate report pooled: %v", err)
	}
	if err := pool(&out, nil); err == nil {
		t.Error("nothing to pool, and no error")
	}
}
