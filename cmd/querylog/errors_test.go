package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
)

// TestErrors: every error is one line on stderr that names the problem, with the documented
// exit status (2 usage, 3 database), and nothing on stdout.
func TestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(path("text.db"), []byte("not a database\n"), 0o644)
	os.WriteFile(path("empty.db"), nil, 0o644)
	testutil.SQLite3(t, path("foreign.db"), `CREATE TABLE t (x)`)
	schema1File(t, path("v1.db"), 100, time.Now().Add(-time.Hour).UnixMilli())
	schema1File(t, path("newer.db"), 10, time.Now().UnixMilli())
	testutil.SQLite3(t, path("newer.db"), fmt.Sprintf(`PRAGMA user_version = %d`, logrow.SchemaVersion+1))
	v1 := path("v1.db")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"stats", "--db", path("missing.db")}, exitDatabase, path("missing.db") + ": no such file"},
		{[]string{"tail"}, exitDatabase, "./querylog.db: no such file"},
		{[]string{"stats", "--db", dir}, exitDatabase, dir + " is not a regular file"},
		{[]string{"search", "--db", path("text.db")}, exitDatabase, path("text.db") + " is not a SQLite database"},
		{[]string{"export", "--db", path("empty.db")}, exitDatabase, path("empty.db") + " is empty, not a querylog database"},
		{[]string{"top", "domains", "--db", path("foreign.db")}, exitDatabase, path("foreign.db") + " is not a querylog database (application_id 0, 1 schema objects)"},
		{[]string{"tail", "-f", "--db", path("newer.db")}, exitDatabase, path("newer.db") + fmt.Sprintf(" has schema version %d, newer than this build of querylog reads (%d): use a newer querylog", logrow.SchemaVersion+1, logrow.SchemaVersion)},
		{nil, exitUsage, "Usage: querylog COMMAND"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"search", "--bogus", "--db", v1}, exitUsage, "flag provided but not defined: --bogus (querylog search -h lists the flags)"},
		{[]string{"search", "--since", "yesterday", "--db", v1}, exitUsage, `"yesterday" is neither a duration ago (30m, 1h, 30d) nor an RFC 3339 time`},
		{[]string{"search", "--slower-than", "fast", "--db", v1}, exitUsage, `invalid value "fast" for flag --slower-than`},
		{[]string{"search", "--rcode", "BOGUS", "--db", v1}, exitUsage, `--rcode "BOGUS": unknown name, and not a number`},
		{[]string{"export", "--type", "TYPE70000", "--db", v1}, exitUsage, `--type "TYPE70000": unknown name, and not a number`},
		{[]string{"search", "--client", "300.1.1.1", "--db", v1}, exitUsage, `--client "300.1.1.1" is neither an address, a network (CIDR) nor an anon- pseudonym`},
		{[]string{"search", "--client", "10.0.0.0/33", "--db", v1}, exitUsage, `--client "10.0.0.0/33"`},
		{[]string{"search", "--name", "a..b", "--db", v1}, exitUsage, `--name "a..b" is not a domain name`},
		{[]string{"search", "-n", "0", "--db", v1}, exitUsage, "-n 0: must be from 1 to 10000"},
		{[]string{"search", "--after", "next", "--db", v1}, exitUsage, `--after "next" is not a cursor that search printed`},
		{[]string{"search", "example.org", "--db", v1}, exitUsage, `unexpected argument "example.org"`},
		{[]string{"export", "--format", "xml", "--db", v1}, exitUsage, `--format "xml": csv or jsonl`},
		{[]string{"export", "--format", "csv", "--json", "--db", v1}, exitUsage, "--json and --format csv disagree"},
		{[]string{"top", "--db", v1}, exitUsage, "say what to count: top domains, clients, rcodes, types, namespaces, pods or upstreams"},
		{[]string{"top", "hosts", "--db", v1}, exitUsage, `cannot count "hosts"`},
		{[]string{"top", "domains", "--since", "1h", "--until", "2h", "--db", v1}, exitUsage, "--until must be at least a minute after --since"},
		{[]string{"tail", "-f", "--interval", "1ms", "--db", v1}, exitUsage, "--interval 1ms: must be from 50ms to 10s"},
		{[]string{"top", "upstreams", "--since", "1h", "--until", "2h", "--db", v1}, exitUsage, "--until 2h must be after --since 1h"},
		{[]string{"retries", "--since", "1h", "--until", "2h", "--db", v1}, exitUsage, "--until 2h must be at least a minute after --since 1h"},
		{[]string{"new", "--namespace", "team-a", "--db", v1}, exitUsage, `--namespace "team-a": no row of ` + v1 + ` says its namespace`},
		{[]string{"new", "--since", "yesterday", "--db", v1}, exitUsage, `"yesterday" is neither a duration ago`},
		{[]string{"new", "-n", "0", "--db", v1}, exitUsage, "-n 0: must be from 1 to 10000"},
		{[]string{"new", "extra", "--db", v1}, exitUsage, `unexpected argument "extra"`},
	} {
		out, errOut, code := querylogCmd(t, c.args...)
		if code != c.code {
			t.Errorf("querylog %s: exit %d, want %d (stderr %q)", strings.Join(c.args, " "), code, c.code, errOut)
		}
		if !strings.Contains(errOut, c.want) {
			t.Errorf("querylog %s: stderr %q, want it to say %q", strings.Join(c.args, " "), errOut, c.want)
		}
		prefix := "querylog: "
		if c.args != nil && commands[c.args[0]].run != nil {
			prefix = "querylog " + c.args[0] + ": "
		}
		if c.args != nil && (strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, prefix)) {
			t.Errorf("querylog %s: stderr %q is not one line naming the command", strings.Join(c.args, " "), errOut)
		}
		if out != "" {
			t.Errorf("querylog %s: printed %q", strings.Join(c.args, " "), out)
		}
	}
	for _, cmd := range []string{"tail", "top", "search", "export", "stats"} {
		if out, _, code := querylogCmd(t, cmd, "-h"); code != exitOK || !strings.HasPrefix(out, "Usage: querylog "+cmd) || !strings.Contains(out, "\n  --db PATH\n") {
			t.Errorf("querylog %s -h: exit %d, printed %q", cmd, code, out)
		}
	}
}

// TestTimeout: a command whose query outlasts --timeout stops within about a chunk of it, says
// so in one line, and exits 1: inside SQLite (top's GROUP BY on rows of schema 1) and between
// the chunks of a scan (search and export on the log).
func TestTimeout(t *testing.T) {
	t.Parallel()
	big := filepath.Join(t.TempDir(), "big.db")
	s := startServer(t, big)
	s.send(t, mix)
	s.stop()
	// Enlarged by copies of the rows the plugin wrote, each later than the last.
	for range 15 {
		testutil.SQLite3(t, big, `INSERT INTO log SELECT id + (SELECT max(id) - min(id) + 1 FROM log), name, client, late, a, b, c FROM log`)
	}
	v1 := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, v1, 1_000_000, time.Now().Add(-24*time.Hour).UnixMilli())
	for _, c := range []struct {
		args   []string
		budget time.Duration
	}{
		{[]string{"top", "domains", "--since", "2d", "--db", v1}, 20 * time.Millisecond},
		{[]string{"search", "--name", "nothing.example.", "--db", v1}, 20 * time.Millisecond},
		{[]string{"search", "--name", "nothing.example.", "--db", big}, 20 * time.Millisecond},
		{[]string{"search", "--client", "192.0.2.99", "--db", big}, 20 * time.Millisecond},
		{[]string{"export", "--db", big}, 20 * time.Millisecond},
	} {
		args := append(c.args, "--timeout", c.budget.String())
		start := time.Now()
		out, errOut, code := querylogCmd(t, args...)
		took := time.Since(start)
		want := fmt.Sprintf("querylog %s: query took longer than %s; narrow --since or raise --timeout\n", c.args[0], c.budget)
		if code != exitQuery || errOut != want {
			t.Errorf("querylog %s: exit %d, stderr %q; want 1, %q", strings.Join(args, " "), code, errOut, want)
		}
		if took > c.budget+2*time.Second {
			t.Errorf("querylog %s: stopped after %s", strings.Join(args, " "), took)
		}
		if c.args[0] != "export" && out != "" {
			t.Errorf("querylog %s: printed %q", strings.Join(args, " "), out)
		}
	}
}
