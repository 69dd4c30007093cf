package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/searchfold"
	"github.com/querylog/querylog/internal/testutil"
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

// checkTwiceTheRows checks that a window from the rollups counted every name twice as the
// rows alone did (rows, changed), with the rows' search lists.
func checkTwiceTheRows(t *testing.T, what string, rollups, rows spJSON) {
	t.Helper()
	if rollups.Rows != 2*rows.Rows {
		t.Errorf("%s: %d A and AAAA queries, want twice the rows' %d", what, rollups.Rows, rows.Rows)
	}
	for i := range rows.Names {
		n := &rows.Names[i]
		n.Lookups, n.Queries, n.NXDomain = 2*n.Lookups, 2*n.Queries, 2*n.NXDomain
		for k := range n.Ndots {
			n.Ndots[k] *= 2
		}
	}
	for _, c := range []struct{ what, got, want any }{{"names", rollups.Names, rows.Names}, {"search lists", rollups.Lists, rows.Lists}} {
		got, _ := json.Marshal(c.got)
		want, _ := json.Marshal(c.want)
		if string(got) != string(want) {
			t.Errorf("%s: %s\n%s\nwant (twice the rows')\n%s", what, c.what, got, want)
		}
	}
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
	// A loaded machine can hold a lookup's next query back past lookupGapMS (CI saw one split
	// so): the rows' fold then rightly sees two lookups where the rollups' counts, which have no
	// time, see one. The rows get the times of an unhurried resolver instead: every gap since
	// the first row a hundredth as long, in the same order (the rollups counted them already).
	testutil.Exec(t, db, `UPDATE log SET late = (id >> 8) - (t0 + ((id >> 8) - late - t0) / 100)
		FROM (SELECT min((id >> 8) - late) AS t0 FROM log)`)

	for _, args := range [][]string{{}, {"--namespace", "team-b"}} {
		rows := runSearchpathJSON(t, append([]string{"--db", db, "--since", "1h"}, args...)...)
		rollups := runSearchpathJSON(t, append([]string{"--db", db, "--since", "2h"}, args...)...)
		what := "searchpath " + strings.Join(args, " ")
		// The writer folded the minutes before the last one, if the lookups spanned two.
		if folded, names := minuteTables(rollups.Sources); rows.From != "rows" || rollups.From != "rollups" || len(rollups.Sources) == 0 ||
			!strings.HasPrefix(rollups.Sources[0], "from rollups: ") || folded > 1 || names != 1 {
			t.Errorf("%s: from %q and %q (%q), want rows for 1h and rollups (1 minute of names) for 2h", what, rows.From, rollups.From, rollups.Sources)
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

	// An hour whose rollups count more queries than the rows fold reads (a minute of 400,000
	// queries ten minutes ago, on a copy) is folded from the rollups too, and says why.
	busy := filepath.Join(t.TempDir(), "busy.db")
	testutil.Exec(t, db, "VACUUM INTO '"+busy+"'")
	testutil.Exec(t, busy, fmt.Sprintf(`INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us)
		VALUES (60, %d, 0, 1, 'udp', '', 400000, 0)`, time.Now().Unix()/60*60-600))
	fromRows, fromRollups := runSearchpathJSON(t, "--db", db, "--since", "1h"), runSearchpathJSON(t, "--db", busy, "--since", "1h")
	got, _ := json.Marshal(fromRollups.Names)
	want, _ := json.Marshal(fromRows.Names)
	if src := strings.Join(fromRollups.Sources, "\n"); fromRows.From != "rows" || fromRollups.From != "rollups" || string(got) != string(want) ||
		!strings.Contains(src, "from the rollups although an hour or less: its 400,") || !strings.Contains(src, " queries are more than the 300,000 searchpath folds from the rows") {
		t.Errorf("searchpath --since 1h of a busy hour: from %q, sources %q\nnames %s\nwant (from the rows) %s", fromRollups.From, fromRollups.Sources, got, want)
	}

	// An hour three hours ago with the same names, summed and folded as the writer leaves it:
	// a window over it adds the hour's folds (rollup_searchpath) to the fold of the minutes,
	// every count twice the rows', in the same order; with --search, the hour's names are
	// folded instead (the writer folded it with the list it learned).
	hour := time.Now().Unix()/3600*3600 - 3*3600
	onlyHour := filepath.Join(t.TempDir(), "hour.db")
	testutil.Exec(t, db, "VACUUM INTO '"+onlyHour+"'")
	minutes := filepath.Join(t.TempDir(), "minutes.db")
	testutil.Exec(t, db, "VACUUM INTO '"+minutes+"'")
	foldedHour(t, db, hour, "")
	for _, args := range [][]string{{}, {"--namespace", "team-b"}, {"--namespace", "team-b", "--search", "team-b.svc.cluster.local,svc.cluster.local,cluster.local"}} {
		rows := runSearchpathJSON(t, append([]string{"--db", db, "--since", "1h"}, args...)...)
		rollups := runSearchpathJSON(t, append([]string{"--db", db, "--since", "4h"}, args...)...)
		what := "searchpath --since 4h " + strings.Join(args, " ")
		tables := "tables read: rollup_searchpath and rollup_searchpath_suffixes (days and hours), rollup_namespace_names (1 minute folded here)"
		if folded, _ := minuteTables(rollups.Sources); folded == 1 { // the lookups spanned two minutes
			tables = "tables read: rollup_searchpath and rollup_searchpath_suffixes (days and hours, 1 minute folded by the writer), rollup_namespace_names (1 minute folded here)"
		}
		if slices.Contains(args, "--search") {
			tables = "tables read: rollup_namespace_names, not rollup_searchpath (--search: its folds used the learned search lists)"
		}
		if !slices.Contains(rollups.Sources, tables) || !strings.HasPrefix(rollups.Sources[0], "from rollups: 1 hour, ") {
			t.Errorf("%s: sources %q, want the hour and %q", what, rollups.Sources, tables)
		}
		checkTwiceTheRows(t, what, rollups, rows)
	}

	// A minute ten minutes before the rows' with their fold, as the writer leaves a finished
	// minute: a window over it reads the fold, not the minute's names (named otherwise here,
	// to tell), and folds the names of the minutes the writer did not fold; every count twice
	// the rows'.
	minute := foldedPeriod(t, minutes, 60, -600, "", "names-")
	for _, args := range [][]string{{}, {"--namespace", "team-b"}} {
		rows := runSearchpathJSON(t, append([]string{"--db", db, "--since", "1h"}, args...)...)
		rollups := runSearchpathJSON(t, append([]string{"--db", minutes, "--since", "2h"}, args...)...)
		what := fmt.Sprintf("searchpath --since 2h %s (a folded minute from %d)", strings.Join(args, " "), minute)
		if folded, names := minuteTables(rollups.Sources); folded < 1 || folded > 2 || names != 1 {
			t.Errorf("%s: sources %q, want 1 or 2 minutes folded by the writer and 1 of names", what, rollups.Sources)
		}
		checkTwiceTheRows(t, what, rollups, rows)
	}

	// A namespace that only that hour has (team-b's names under another name): its names and
	// search list come from the hour's folds and weights alone.
	foldedHour(t, onlyHour, hour, "hour-")
	rows := runSearchpathJSON(t, "--db", db, "--since", "1h", "--namespace", "team-b")
	rollups := runSearchpathJSON(t, "--db", onlyHour, "--since", "4h", "--namespace", "hour-team-b")
	ns := "hour-team-b"
	for i := range rows.Names {
		rows.Names[i].Namespace = &ns
	}
	for i := range rows.Lists {
		rows.Lists[i].Namespace = &ns
	}
	for _, c := range []struct{ what, got, want any }{{"names", rollups.Names, rows.Names}, {"search lists", rollups.Lists, rows.Lists}} {
		got, _ := json.Marshal(c.got)
		want, _ := json.Marshal(c.want)
		if string(got) != string(want) {
			t.Errorf("searchpath --since 4h --namespace hour-team-b (of one folded hour): %s\n%s\nwant (team-b's from the rows)\n%s", c.what, got, want)
		}
	}
}

// minuteTables returns how many minutes the sources say were folded by the writer and how
// many were folded from their names; -1 if they do not say.
func minuteTables(sources []string) (folded, names int) {
	folded, names = -1, -1
	for _, s := range sources {
		if m := regexp.MustCompile(`(\d+) minutes? folded by the writer`).FindStringSubmatch(s); m != nil {
			folded, _ = strconv.Atoi(m[1])
		}
		if m := regexp.MustCompile(`rollup_namespace_names \((\d+) minutes? folded here\)`).FindStringSubmatch(s); m != nil {
			names, _ = strconv.Atoi(m[1])
		}
	}
	return folded, names
}

// foldedPeriod makes the period of span from the rows' first minute plus offset seconds hold
// the names of db's minutes (rollup_namespace_names and rollup_outcomes), each namespace named
// with namesPrefix, and their folds (rollup_searchpath and _suffixes), each namespace named
// with prefix; it returns the period's start.
func foldedPeriod(t *testing.T, db string, span, offset int64, prefix, namesPrefix string) int64 {
	t.Helper()
	var first int64
	if err := testutil.OpenRO(t, db).QueryRow(`SELECT min(start) FROM rollup_outcomes WHERE span = 60`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	start := first + offset
	folds(t, db, span, start, prefix, namesPrefix)
	return start
}

// foldedHour makes the hour from start of db hold the names of its minutes (rollup_namespace_names
// and rollup_outcomes) and their folds (rollup_searchpath and _suffixes), as the writer leaves
// a summed hour (plugin/querylog/rollup_searchpath.go), each namespace named with prefix.
func foldedHour(t *testing.T, db string, start int64, prefix string) {
	t.Helper()
	folds(t, db, 3600, start, prefix, prefix)
}

// folds makes the period of span from start of db hold the names of its minutes with
// namesPrefix and their folds with prefix (foldedPeriod).
func folds(t *testing.T, db string, span, start int64, prefix, namesPrefix string) {
	t.Helper()
	byNS := map[string]map[string]*searchfold.Counts{}
	rows, err := testutil.OpenRO(t, db).Query(`SELECT namespace, name, rcode, sum(a), sum(aaaa), sum(answered) FROM rollup_namespace_names
		WHERE span = 60 AND name <> '(other)' GROUP BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ns, name string
		var rcode, a, aaaa, answered int64
		if err := rows.Scan(&ns, &name, &rcode, &a, &aaaa, &answered); err != nil {
			t.Fatal(err)
		}
		if byNS[ns] == nil {
			byNS[ns] = map[string]*searchfold.Counts{}
		}
		c := byNS[ns][name]
		if c == nil {
			c = &searchfold.Counts{}
			byNS[ns][name] = c
		}
		c.AddRollup(rcode, a, aaaa, answered)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	stmts := fmt.Sprintf(`INSERT INTO rollup_namespace_names SELECT %[3]d, %[1]d, '%[2]s' || namespace, name, rcode, sum(n), sum(a), sum(aaaa), sum(answered)
			FROM rollup_namespace_names WHERE span = 60 GROUP BY namespace, name, rcode;
		INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us)
			SELECT %[3]d, %[1]d, rcode, qtype, proto, plugin, sum(n), sum(duration_us) FROM rollup_outcomes WHERE span = 60 GROUP BY 3, 4, 5, 6;`, start, namesPrefix, span)
	for ns, names := range byNS {
		asked, weights := searchfold.Period(names, 100, "(other)")
		for _, a := range asked {
			stmts += fmt.Sprintf("INSERT INTO rollup_searchpath VALUES (%d, %d, '%s', '%s', %d, %d, %d, %d, %d, %d, %d, %d);\n",
				span, start, prefix+ns, a.Name, a.Lookups, a.Queries, a.NXDomain, a.WhatIf[0], a.WhatIf[1], a.WhatIf[2], a.WhatIf[3], a.WhatIf[4])
		}
		for suffix, w := range weights {
			stmts += fmt.Sprintf("INSERT INTO rollup_searchpath_suffixes VALUES (%d, %d, '%s', '%s', %d);\n", span, start, prefix+ns, suffix, w)
		}
	}
	testutil.Exec(t, db, stmts)
}
