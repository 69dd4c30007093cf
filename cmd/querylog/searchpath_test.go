package main

import (
	"strings"
	"testing"
)

// TestSearchpathErrors: a bad flag is named with its value (exit 2), before any file is opened.
func TestSearchpathErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--search", "svc.cluster.local,a..b"}, `--search "svc.cluster.local,a..b": "a..b" is not a domain name`},
		{[]string{"--search", "cluster.local,Cluster.Local."}, `--search "cluster.local,Cluster.Local.": "Cluster.Local." is given twice`},
		{[]string{"--search", "."}, `--search ".": "." is not a domain name`},
		{[]string{"--namespace", "team.a"}, `--namespace "team.a" is not a namespace name (one DNS label)`},
		{[]string{"-n", "0"}, "-n 0: must be from 1 to 10000"},
		{[]string{"--since", "soon"}, `"soon" is neither a duration ago`},
		{[]string{"api.example.com"}, `unexpected argument "api.example.com"`},
	} {
		args := append([]string{"searchpath", "--db", "/nonexistent/q.db"}, c.args...)
		_, errOut, code := querylogCmd(t, args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("querylog %s: exit %d, stderr %q; want %d and %q", strings.Join(args, " "), code, errOut, exitUsage, c.want)
		}
	}
}

// TestSearchpathWhatIf: res_nsearch's order, for a name of so many dots, with three suffixes:
// at least ndots dots, the name as is first; the first answer ends the lookup, as does a reply
// such as REFUSED to a suffixed name (but not to the name tried as is first).
func TestSearchpathWhatIf(t *testing.T) {
	const x, nx, stop, ok = outUnknown, outNext, outStop, outAnswer
	for _, c := range []struct {
		outcome []uint8 // three suffixes, then the name as is
		dots    int
		want    [maxNdots]int64
	}{
		{[]uint8{nx, nx, nx, ok}, 2, [maxNdots]int64{2, 2, 8, 8, 8}}, // api.example.com in a cluster
		{[]uint8{ok, x, x, x}, 0, [maxNdots]int64{2, 2, 2, 2, 2}},    // a service of the namespace
		{[]uint8{nx, ok, x, x}, 1, [maxNdots]int64{6, 4, 4, 4, 4}},   // service.other-namespace
		{[]uint8{nx, nx, nx, nx}, 2, [maxNdots]int64{8, 8, 8, 8, 8}}, // nowhere
		{[]uint8{stop, x, x, nx}, 1, [maxNdots]int64{4, 2, 2, 2, 2}}, // REFUSED ends a search
		{[]uint8{x, x, x, stop}, 5, [maxNdots]int64{8, 8, 8, 8, 8}},  // but not the name tried as is
		{[]uint8{x, x, x, ok}, 4, [maxNdots]int64{2, 2, 2, 2, 8}},    // ndots:5 searches it first
	} {
		var got [maxNdots]int64
		for nd := 1; nd <= maxNdots; nd++ {
			got[nd-1] = whatIf(c.outcome, c.dots, nd)
		}
		if got != c.want {
			t.Errorf("whatIf(%v, %d dots) = %v, want %v", c.outcome, c.dots, got, c.want)
		}
	}
}

// TestSearchpathLabels: a suffix begins after a dot that is not escaped.
func TestSearchpathLabels(t *testing.T) {
	for _, c := range []struct {
		long, short, suffix string
		ok                  bool
	}{
		{"api.example.com.svc.cluster.local.", "api.example.com.", "svc.cluster.local.", true},
		{"api.example.com.", "api.example.com.", "", false},
		{`a\.b.cluster.local.`, `a\.`, "", false},
		{`a\\.b.cluster.local.`, `a\\.`, "b.cluster.local.", true},
		{"apix.example.com.", "api.", "", false},
	} {
		if suffix, ok := extends(c.long, c.short); suffix != c.suffix || ok != c.ok {
			t.Errorf("extends(%q, %q) = %q, %v; want %q, %v", c.long, c.short, suffix, ok, c.suffix, c.ok)
		}
	}
}
