package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/querylog/querylog/plugin/querylog"
)

const (
	dashboardFile = "grafana/querylog.json"
	rulesFile     = "prometheus/querylog.rules.yml"
)

var metricRe = regexp.MustCompile(`coredns_querylog_[a-z_]+`)

// usedMetrics returns the querylog metric names referenced in text, with the
// _bucket, _sum and _count suffixes of histogram series removed.
func usedMetrics(text string, known map[string]bool) map[string]bool {
	used := map[string]bool{}
	for _, m := range metricRe.FindAllString(text, -1) {
		if !known[m] {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if s := strings.TrimSuffix(m, suffix); s != m {
					m = s
					break
				}
			}
		}
		used[m] = true
	}
	return used
}

func knownMetrics(t *testing.T) map[string]bool {
	names := querylog.MetricNames()
	if len(names) == 0 {
		t.Fatal("querylog.MetricNames() is empty")
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	return known
}

func readFile(t *testing.T, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDashboardParses(t *testing.T) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s: no panels", dashboardFile)
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 || p.Targets[0].Expr == "" {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
	}
}

func TestMetricNamesExist(t *testing.T) {
	known := knownMetrics(t)
	for _, file := range []string{dashboardFile, rulesFile} {
		used := usedMetrics(readFile(t, file), known)
		if len(used) == 0 {
			t.Errorf("%s: references no querylog metric", file)
		}
		for _, m := range sorted(used) {
			if !known[m] {
				t.Errorf("%s: unknown metric %s", file, m)
			}
		}
	}
}

func TestDashboardShowsEveryMetric(t *testing.T) {
	known := knownMetrics(t)
	used := usedMetrics(readFile(t, dashboardFile), known)
	for _, m := range sorted(known) {
		if !used[m] {
			t.Errorf("%s: metric %s is not shown", dashboardFile, m)
		}
	}
}

func sorted(set map[string]bool) []string {
	s := make([]string, 0, len(set))
	for k := range set {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// clickHouseDatabaseRe finds the ClickHouse database a text names: in a ship URL, a CREATE
// DATABASE, or a table reference DB.querylog (DATABASE in capitals is the syntax's placeholder).
var clickHouseDatabaseRe = regexp.MustCompile("clickhouse://[^\\s/`'\"]+/([a-z_][a-z0-9_]*)|CREATE DATABASE IF NOT EXISTS ([a-z_][a-z0-9_]*)|\\b([a-z_][a-z0-9_]*)\\.querylog\\b")

// TestClickHouseDatabaseAgrees keeps the SQL files of deploy/clickhouse on the database that
// the docs' ship URLs write to, so that a reader can paste them as they are.
func TestClickHouseDatabaseAgrees(t *testing.T) {
	files := []string{"clickhouse/querylog.sql", "clickhouse/querylog-ttl.sql", "clickhouse/queries.sql",
		"README.md", "../README.md", "../plugin/querylog/README.md", "../docs/runbook.md", "../docs/shipping.md", "../Corefile.example"}
	seen := map[string][]string{} // database: files naming it
	for _, f := range files {
		for _, m := range clickHouseDatabaseRe.FindAllStringSubmatch(readFile(t, f), -1) {
			db := m[1] + m[2] + m[3]
			if !slices.Contains(seen[db], f) {
				seen[db] = append(seen[db], f)
			}
		}
	}
	if len(seen) != 1 {
		t.Errorf("the ClickHouse database differs between files: %v", seen)
	}
	for _, f := range files[:3] {
		found := false
		for _, fs := range seen {
			found = found || slices.Contains(fs, f)
		}
		if !found {
			t.Errorf("%s names no database", f)
		}
	}
}
