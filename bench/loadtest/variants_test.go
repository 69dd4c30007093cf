package main

import (
	"slices"
	"strings"
	"testing"
)

func TestResolveVariants(t *testing.T) {
	named := func(flags ...string) namedVariants {
		var n namedVariants
		for _, f := range flags {
			if err := n.Set(f); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	for _, tc := range []struct {
		scenario, list string
		named          namedVariants
		want           []string // NAME=OPTIONS, or NAME for none and log
		wantErr        string
	}{
		{scenario: "rate", want: []string{"querylog=base"}},
		{scenario: "compare", want: []string{"none", "querylog=base", "log", "dnstap"}},
		{scenario: "compare", list: "none,dnstap", want: []string{"none", "dnstap"}},
		{scenario: "compare", named: named("ship=ship $CLICKHOUSE", "big=batch_size 5000"),
			want: []string{"querylog=base", "ship=base; ship $CLICKHOUSE", "big=base; batch_size 5000"}},
		{scenario: "compare", list: "big, none,querylog", named: named("big=batch_size 5000"),
			want: []string{"big=base; batch_size 5000", "none", "querylog=base"}},
		{scenario: "compare", list: "none,log", named: named("big=x"), wantErr: "-variant big is not in -variants"},
		{scenario: "compare", list: "none,nope", wantErr: `"nope" is neither`},
		{scenario: "compare", list: "log,log", wantErr: "listed twice"},
		{scenario: "max", named: named("big=x"), wantErr: "for -scenario compare"},
	} {
		c := &config{scenario: tc.scenario, variantList: tc.list, named: tc.named, qlOptions: "base"}
		err := c.resolveVariants()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %q %v: error %v, want %q", tc.scenario, tc.list, tc.named.String(), err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range c.variants {
			if v.Querylog {
				got = append(got, v.Name+"="+v.Options)
			} else {
				got = append(got, v.Name)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %q %v: %q, want %q", tc.scenario, tc.list, tc.named.String(), got, tc.want)
		}
	}

	var n namedVariants
	for _, bad := range []string{"noequals", "none=x", "a b=x", "=x"} {
		if err := n.Set(bad); err == nil {
			t.Errorf("-variant %q accepted", bad)
		}
	}
}

// The ratios to querylog are paired within each round, whatever the order of the variants.
func TestSummarizePairsByRound(t *testing.T) {
	rep := &report{Scenario: "compare", Pairs: 2, Variants: []string{"ship", "querylog"}}
	run := func(round int, v string, qps, cpq float64) {
		rep.Runs = append(rep.Runs, &runResult{Index: len(rep.Runs) + 1, Round: round, Variant: v,
			DNSPerf: &dnsperfResult{QPS: qps}, CPUPerQueryUS: cpq})
	}
	run(1, "ship", 1000, 120)
	run(1, "querylog", 1000, 100)
	run(2, "ship", 900, 180)
	run(2, "querylog", 900, 200) // a slower round: paired, ship costs 0.9 here
	rep.finish()
	s := rep.summaryOf("ship")
	if s == nil || rep.summaryOf("none") != nil {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if s.PairedCPUPerQRatioQL != 1.05 || s.CPUPerQRatioQL != 1 || s.PairedQPSRatioQL != 1 || s.QPSRatio != 0 {
		t.Errorf("ship against querylog: paired CPU/q %v (want median of 1.2 and 0.9 = 1.05), of the medians %v (want 1), paired QPS %v, ×none %v",
			s.PairedCPUPerQRatioQL, s.CPUPerQRatioQL, s.PairedQPSRatioQL, s.QPSRatio)
	}
	if !rep.Pass {
		t.Errorf("problems: %v", rep.Problems)
	}
}
