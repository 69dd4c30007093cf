package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
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

// spJSON is searchpath --json, as the tests read it.
type spJSON struct {
	Rows  int64 `json:"rows"`
	Names []struct {
		Name      string          `json:"name"`
		Namespace *string         `json:"namespace"`
		Lookups   int64           `json:"lookups"`
		Queries   int64           `json:"queries"`
		NXDomain  int64           `json:"nxdomain"`
		Ndots     [maxNdots]int64 `json:"queries_with_ndots"`
	} `json:"names"`
	Lists []struct {
		Namespace *string  `json:"namespace"`
		Suffixes  []string `json:"suffixes"`
	} `json:"search_lists"`
	From    string   `json:"from"`
	Sources []string `json:"sources"`
}

func runSearchpathJSON(t *testing.T, args ...string) spJSON {
	t.Helper()
	var v spJSON
	if err := json.Unmarshal([]byte(mustRun(t, append([]string{"searchpath", "--json"}, args...)...)), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSearchpathFromRollups: over a window longer than an hour, searchpath folds the counts of
// the namespaces' names in the rollups instead of the rows, and for whole lookups (a resolver
// with ndots:5 and three search suffixes, the name as is last) says what the fold of the rows
// says: the same search lists, and per name the same lookups, queries, NXDOMAINs and what-if
// counts; --namespace narrows both alike.
func TestSearchpathFromRollups(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startClusterServer(t, db)
	lookup := func(client, ns, name string, times int) {
		var qs []query
		for range times {
			for _, suffix := range []string{ns + ".svc.cluster.local.", "svc.cluster.local.", "cluster.local.", ""} {
				qs = append(qs, query{name + "." + suffix, dns.TypeA, client, false}, query{name + "." + suffix, dns.TypeAAAA, client, false})
			}
		}
		s.send(t, qs)
	}
	lookup("127.0.0.2", "team-a", "www.example.org", 2) // answered as is
	lookup("127.0.0.2", "team-a", "x.example.net", 1)   // NXDOMAIN everywhere
	lookup("127.0.0.3", "team-b", "www.example.org", 1)
	lookup("127.0.0.5", "team-b", "a.b.example.org", 3)
	s.stop() // the rollups count every row

	for _, args := range [][]string{{}, {"--namespace", "team-b"}} {
		rows := runSearchpathJSON(t, append([]string{"--db", db, "--since", "1h"}, args...)...)
		rollups := runSearchpathJSON(t, append([]string{"--db", db, "--since", "2h"}, args...)...)
		what := "searchpath " + strings.Join(args, " ")
		if rows.From != "rows" || rollups.From != "rollups" || len(rollups.Sources) == 0 || !strings.HasPrefix(rollups.Sources[0], "from rollups: ") {
			t.Errorf("%s: from %q and %q (%q), want rows for 1h and rollups for 2h", what, rows.From, rollups.From, rollups.Sources)
		}
		if rows.Rows == 0 || rollups.Rows != rows.Rows {
			t.Errorf("%s: %d A and AAAA queries from the rollups, %d from the rows", what, rollups.Rows, rows.Rows)
		}
		got, _ := json.Marshal(rollups.Names)
		want, _ := json.Marshal(rows.Names)
		if string(got) != string(want) || !strings.Contains(string(want), `"name":"a.b.example.org","namespace":"team-b","lookups":3,"queries":24,"nxdomain":18`) {
			t.Errorf("%s: names from the rollups\n%s\nwant (from the rows)\n%s", what, got, want)
		}
		got, _ = json.Marshal(rollups.Lists)
		want, _ = json.Marshal(rows.Lists)
		if string(got) != string(want) {
			t.Errorf("%s: search lists from the rollups %s, want (from the rows) %s", what, got, want)
		}
	}
}
