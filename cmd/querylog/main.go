// Command querylog reads a database written by the querylog CoreDNS plugin (schema 1 to 6)
// and answers the usual questions about it: the newest rows, the most asked names, clients,
// rcodes and types, the upstreams, the names first seen, the retransmissions, what the search list costs, a
// search, an export, and what the file holds. It never slows the writer: it opens the file
// read-only, reads each command's answer from one WAL snapshot, and gives a query a time
// budget. See the README, "Asking the log".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `Usage: querylog COMMAND [flags]

Reads a querylog database (schema 1 to 6) without slowing the server writing it: a read-only
connection, one snapshot per command, and a time budget per query.

Commands:
  tail [-f] [-n 10] [filters]          the newest rows, oldest first; -f follows new ones
  top domains|clients|rcodes|types|namespaces [--since 24h] [--until T] [-n 20]
                                       the most frequent, from the rollups where they cover
                                       the window, from the rows otherwise; with the cache
                                       hit ratio (namespaces: each one's too)
  top pods [--since 24h] [--until T] [-n 20]
                                       the client pods (namespace/pod) and their cache hit
                                       ratio, from the rollups where they cover the window
  top upstreams [--since 24h] [--until T] [-n 20]
                                       per upstream: queries, SERVFAIL share, reply time p50
                                       and p99, from the rollups where they cover the window
                                       (p50, p99: their bucket's bound), from the rows otherwise
  new [--since 1h] [--namespace NS] [--exact] [-n 20]
                                       names and registered domains first seen in the
                                       window: in no dictionary entry or rollup before it
                                       (--exact: nor in any row before it; slower);
                                       --namespace: those NS never asked before; windows
                                       over 1h (with --namespace, or 300,000 queries): the
                                       names the rollups counted, and the rows where they
                                       do not cover it (--exact: the rows)
  retries [--since 1h] [--until T] [--namespace NS] [-n 20]
                                       the queries clients sent again (same port, id, name
                                       and type within 5.5 s): the clients, namespaces, names
                                       and upstreams with the most, and whether the first
                                       query was answered before the client asked again
  search [filters] [-n 50] [--after CURSOR]
                                       matching rows, newest first, a page at a time
  export [--format csv|jsonl] [filters]
                                       every matching row, oldest first, streamed; exact
                                       texts for programs (a spreadsheet may run a CSV
                                       field that begins with =, +, - or @ as a formula)
  stats                                rows, time span, file size, rows per day, rollups,
                                       schema version, cache hit ratio, retransmissions,
                                       namespaces and pods
  searchpath [--since 1h] [--namespace NS] [--search SUFFIX,...] [-n 20]
                                       the A and AAAA queries of each lookup folded into the
                                       name asked, per namespace or client: what the search
                                       list cost, and would cost with ndots 1 to 5 (windows
                                       over 1h or 300,000 queries: the namespaces' names,
                                       from the rollups)
  version                              querylog's version, Go's, and the commit it was
                                       built from (also --version)

Flags of every command:
  --db PATH        the database (default ./querylog.db)
  --timeout D      time budget of the command's query (default 10s; export: none); 0: none
  --json           JSON instead of a table (export: JSON lines)
  --max-memory S   stop once the command's resident memory passes S (e.g. 48MiB; 0: none;
                   default $QUERYLOG_MAX_MEMORY, which the Kubernetes manifests set; unset: none)

Filters (search and export; tail takes all but --since and --until; top takes --namespace
and --pod):
  --name SUFFIX    the name and every name under it (example.org: www.example.org. too),
                   on label boundaries (not evil\.example.org., a name under org.)
  --client A       a client address or network (192.0.2.1, 10.0.0.0/8, 2001:db8::/32), or
                   an anonymized client (anon-...), matched exactly
  --rcode R        NOERROR, NXDOMAIN, SERVFAIL, ... or a number
  --type T         A, AAAA, HTTPS, ... or a number
  --slower-than D  answered in more than D (e.g. 100ms)
  --namespace NS   clients in Kubernetes namespace NS, as the kubernetes plugin named them
                   (schema 3: the pods table; refused on older files)
  --pod NAME       clients that are pod NAME, of any namespace unless --namespace
  --since T        arrived at or after T: a duration ago (30m, 1h, 30d) or an RFC 3339 time
  --until T        arrived before T

Tables show a text holding a control character, a character that does not print or bytes
that are not UTF-8 (or beginning with ") in double quotes, escaped as Go does: "a\x1b[2Jb".

Exit status: 0 done; 1 the query failed, took longer than --timeout or passed --max-memory;
2 bad usage; 3 the database cannot be read (no such file, not a querylog database, a schema
newer than this build).

'querylog COMMAND -h' lists a command's flags.
`

// Exit statuses (documented in usage and the README).
const (
	exitOK       = 0
	exitQuery    = 1 // the query failed or ran out of time
	exitUsage    = 2 // bad command line
	exitDatabase = 3 // the file is missing, not a querylog database, or too new
)

// exitError is an error with the exit status it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

func databaseError(format string, args ...any) error {
	return &exitError{exitDatabase, fmt.Errorf(format, args...)}
}

// command is one subcommand: run gets the arguments after its name, stdout, and stderr for
// notes while it runs (its error, if any, goes to stderr after it returns).
type command struct {
	run func(ctx context.Context, args []string, out, notes io.Writer) error
}

var commands = map[string]command{
	"tail":   {runTail},
	"top":    {runTop},
	"search": {runSearch},
	"export": {runExport},
	"stats":  {runStats},
	"new":    {runNew},

	"retries": {runRetries},

	"searchpath": {runSearchpath},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status; errors go to stderr as one
// line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprint(stdout, versionText(debug.ReadBuildInfo()))
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "querylog: unknown command %q (tail, top, new, retries, search, export, stats, searchpath or version; querylog -h for help)\n", args[0])
		return exitUsage
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		return exitOK
	}
	// One line: SQLite's messages can span several.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintf(stderr, "querylog %s: %s\n", args[0], msg)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitQuery
}
