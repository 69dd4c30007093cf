package testutil

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/dblock"

	_ "modernc.org/sqlite" // the driver querylog writes with
)

// fileURI is the SQLite URI of the file at path with the given query: the path is
// percent-encoded, so that any file name opens that very file.
func fileURI(path, query string) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: query}
	return u.String()
}

// OpenRO opens the database at path read-only for the rest of the test. It waits up to 5s for
// locks: a checkpoint or the writer's WAL reset can make a reader wait a moment.
func OpenRO(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", fileURI(path, "mode=ro&_pragma=busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Exec runs stmts on the database at path (created if absent) through a connection of its own,
// waiting up to 5s for locks, and closes it.
func Exec(t testing.TB, path, stmts string) {
	t.Helper()
	db, err := sql.Open("sqlite", fileURI(path, "_pragma=busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmts); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// CountRows counts the rows of the queries table at path, with an optional WHERE clause.
func CountRows(t testing.TB, path, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := OpenRO(t, path).QueryRow("SELECT count(*) FROM queries "+where, args...).Scan(&n); err != nil {
		t.Fatalf("counting rows in %s: %v", path, err)
	}
	return n
}

// WaitRows waits until the queries table at path holds n rows (with an optional WHERE clause).
// A reply reaches the client before querylog queues its row, so a test that reads rows in the
// order it asked waits for each row before it sends the next query.
func WaitRows(t testing.TB, path string, n int64, where string, args ...any) {
	t.Helper()
	what := fmt.Sprintf("%d rows in %s", n, path)
	if where != "" {
		what += " " + where
	}
	WaitFor(t, 5*time.Second, what, func() bool {
		return CountRows(t, path, where, args...) >= n
	})
}

// Names reads the qname of every row at path, with its number of rows.
func Names(t testing.TB, path string) map[string]int {
	t.Helper()
	rows, err := OpenRO(t, path).Query("SELECT qname FROM queries")
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	defer rows.Close()
	names := map[string]int{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names[n]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// Lock takes the write lock of the database at path (BEGIN EXCLUSIVE, waiting up to 10s for
// it) on a connection of its own, and holds it until unlock is called or the test ends.
func Lock(t testing.TB, path string) (unlock func()) {
	t.Helper()
	release, err := dblock.Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	unlock = func() {
		if err := release(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// Throttle slows every other writer of the database at path on purpose: on a connection of its
// own it takes the write lock (BEGIN IMMEDIATE), holds it for held, releases it for free, and
// again, until stop is called or the test ends. A held under querylog's 1s busy timeout makes
// its flushes wait instead of fail, so the writer keeps writing, at most about
// free/(held+free) of the time.
func Throttle(t testing.TB, path string, held, free time.Duration) (stop func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", fileURI(path, "_pragma=busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				t.Errorf("throttling %s: %v", path, err)
				return
			}
			select {
			case <-done:
			case <-time.After(held):
			}
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("throttling %s: %v", path, err)
				return
			}
			select {
			case <-done:
				return
			case <-time.After(free):
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			<-finished
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// NeedSQLite3 skips the test when the sqlite3 command-line tool is missing.
func NeedSQLite3(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 command-line tool not installed (apt-get install sqlite3)")
	}
}

// SQLite3 runs sql on the database at path with the sqlite3 command-line tool, another SQLite
// than the one querylog is built with, and returns its output.
func SQLite3(t testing.TB, path, sql string) string {
	t.Helper()
	NeedSQLite3(t)
	out, err := exec.Command("sqlite3", path, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v: %s", path, sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// CLI is an interactive sqlite3 session on a pipe: another process that can hold a transaction
// open.
type CLI struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// StartCLI starts sqlite3 on the database at path; it is killed at the end of the test.
func StartCLI(t testing.TB, path string) *CLI {
	t.Helper()
	NeedSQLite3(t)
	cmd := exec.Command("sqlite3", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &CLI{cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// Run sends sql and waits for the output line marker, which sql must print; it returns the
// lines before it.
func (c *CLI) Run(t testing.TB, sql, marker string) []string {
	t.Helper()
	if _, err := io.WriteString(c.in, sql+"\n"); err != nil {
		t.Fatal(err)
	}
	var out []string
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("sqlite3 exited; output %q", out)
			}
			if l == marker {
				return out
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("sqlite3: no %q after %q; output %q", marker, sql, out)
		}
	}
}

// Quit ends the session and waits for the process.
func (c *CLI) Quit(t testing.TB) {
	t.Helper()
	io.WriteString(c.in, ".quit\n")
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("sqlite3 did not exit")
	}
}

// CheckpointTruncate runs PRAGMA wal_checkpoint(TRUNCATE) on the database at path through a
// connection of its own, waiting up to 100ms for locks, and reports whether it completed, which
// leaves the WAL empty. It does not while any reader's snapshot still needs the WAL (a reader
// that holds a read transaction open), nor while another checkpoint or the writer holds a lock
// for longer than the wait: callers poll it.
func CheckpointTruncate(t testing.TB, path string) bool {
	t.Helper()
	db, err := sql.Open("sqlite", fileURI(path, "_pragma=busy_timeout(100)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, frames, copied int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied); err != nil {
		t.Logf("checkpointing %s: %v", path, err)
		return false
	}
	return busy == 0
}

// Column returns the first column of every row query returns, in order.
func Column[T any](t testing.TB, db *sql.DB, query string, args ...any) []T {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// QueryPlan is what EXPLAIN QUERY PLAN says of query with args, one step after another (a
// subquery's number left out).
func QueryPlan(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		rows.Scan(&id, &parent, &notused, &detail)
		plan += detail + ";"
	}
	return regexp.MustCompile(`SUBQUERY \d+`).ReplaceAllString(plan, "SUBQUERY")
}
