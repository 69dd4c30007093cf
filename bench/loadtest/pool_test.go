package main

import (
	"encoding/json"
	"os"
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
	// Series of a's rounds: from the 5th second, querylog answers 0.98 and 0.96 of none's
	// requests a second (0.97), whatever its first seconds and the final scrape were.
	series := func(perSecond ...float64) []point {
		var ps []point
		total := 0.0
		for i, n := range perSecond {
			total += n
			ps = append(ps, point{T: float64(i + 1), Requests: total})
		}
		return append(ps, point{T: float64(len(perSecond)) + 5, Requests: total + 1e6}) // after the load
	}
	var rep report
	raw, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	rep.Runs[0].Series, rep.Runs[1].Series = series(100, 100, 100, 100, 100, 100, 100, 100, 100), series(0, 0, 0, 0, 98, 98, 98, 98, 98)
	rep.Runs[2].Series, rep.Runs[3].Series = series(200, 200, 200, 200, 200, 200, 200, 200, 200), series(190, 190, 190, 190, 192, 192, 192, 192, 192)
	if err := writeJSON(a, &rep); err != nil {
		t.Fatal(err)
	}
	c := write("c.json", "unique", 10000, [2]float64{1000, 500}) // another rate
	var out strings.Builder
	if err := pool(&out, []string{a, b, c}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"unique 2 max querylog 3 0.950 0.900..1.000 1.053 1.000..1.111 0.970 (2)",
		"unique 2 10000 querylog 1 0.500 0.500..0.500 2.000 2.000..2.000 -",
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
