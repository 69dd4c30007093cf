package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestTail: tail prints the newest rows oldest first; with -f it then prints every row the
// server writes, once, in id order, as it is written, until interrupted (exit 0); filters
// apply to both.
func TestTail(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	s.send(t, mix)

	want := strs(t, db, `SELECT `+readableColumns+` FROM (SELECT * FROM queries_readable ORDER BY id DESC LIMIT 5) ORDER BY id`)
	checkSame(t, "tail -n 5", jsonRecords(t, mustRun(t, "tail", "--db", db, "-n", "5", "--json")), want)
	out := mustRun(t, "tail", "--db", db, "-n", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != strings.Join(tableColumns, " ") {
		t.Errorf("tail -n 3: want a header and 3 lines, got\n%s", out)
	}

	for _, c := range []struct {
		args  []string
		where string
	}{
		{nil, `1`},
		{[]string{"--name", "example.net", "-n", "1"}, `qname LIKE '%.example.net.'`},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		buf, errBuf := testutil.NewLogBuffer(), testutil.NewLogBuffer()
		done := make(chan int)
		args := append([]string{"tail", "-f", "--json", "--interval", "50ms", "--db", db}, c.args...)
		go func() { done <- run(ctx, args, buf, errBuf) }()
		// The rows before -f started, then two more rounds written while it follows.
		first := strs(t, db, `SELECT max(id) FROM queries`)[0][0]
		time.Sleep(200 * time.Millisecond)
		s.send(t, mix)
		s.send(t, mix[:5])
		want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE id > ? AND (`+c.where+`) ORDER BY id`, first)
		testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("tail -f %s to print %d new rows", c.args, len(want)), func() bool {
			return strings.Count(buf.String(), "\n") >= len(want)+tailInitial(c.args)
		})
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("tail -f %s exited %d after the interrupt: %s", c.args, code, errBuf)
		}
		got := jsonRecords(t, buf.String())
		checkSame(t, fmt.Sprint("tail -f ", c.args, ", rows followed"), got[tailInitial(c.args):], want)
	}
}

// tailInitial is the number of rows tail prints before following, for these args.
func tailInitial(args []string) int {
	for i, a := range args {
		if a == "-n" {
			var n int
			fmt.Sscan(args[i+1], &n)
			return n
		}
	}
	return 10
}

// TestTailSchema1: tail -f follows a file of schema 1 by rowid.
func TestTailSchema1(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, db, 100, time.Now().Add(-time.Hour).UnixMilli())
	ctx, cancel := context.WithCancel(context.Background())
	buf := testutil.NewLogBuffer()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"tail", "-f", "--json", "-n", "2", "--interval", "50ms", "--db", db}, buf, buf)
	}()
	testutil.WaitFor(t, 5*time.Second, "the first rows", func() bool { return strings.Count(buf.String(), "\n") == 2 })
	testutil.SQLite3(t, db, `INSERT INTO queries SELECT ts + 1000, server, client_ip, proto, 'new.example.', qtype, qclass, rcode, size, answers, duration_us, "do" FROM queries LIMIT 3`)
	testutil.WaitFor(t, 5*time.Second, "3 more rows", func() bool { return strings.Count(buf.String(), "\n") == 5 })
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("tail -f exited with %d after its context ended, want %d:\n%s", code, exitOK, buf)
	}
	got := jsonRecords(t, buf.String())
	want := schema1Rows(t, db, `ts >= (SELECT ts FROM queries WHERE rowid = 99)`)
	checkSame(t, "tail -f", got, want)
}

// blockedWriter is a stdout nobody reads (a pipe to a stopped less, Ctrl-S): Write blocks until
// release; written is closed at the first Write.
type blockedWriter struct {
	written, released chan struct{}
	once              sync.Once
}

func newBlockedWriter() *blockedWriter {
	return &blockedWriter{written: make(chan struct{}), released: make(chan struct{})}
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.written) })
	<-w.released
	return len(p), nil
}

// TestTailHoldsNoSnapshot: tail -f holds no read transaction while its stdout blocks, nor
// between polls, so the WAL can be checkpointed and emptied meanwhile (a snapshot held makes a
// TRUNCATE checkpoint busy: the WAL then grows without end under a busy server).
func TestTailHoldsNoSnapshot(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	s.send(t, mix)
	walEmpty := func() bool {
		fi, err := os.Stat(db + "-wal")
		return err == nil && fi.Size() == 0
	}

	t.Run("stdout blocked", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		out := newBlockedWriter()
		done := make(chan int)
		go func() { done <- run(ctx, []string{"tail", "-f", "--db", db, "--interval", "50ms"}, out, io.Discard) }()
		defer func() { cancel(); close(out.released); <-done }()
		<-out.written
		s.send(t, mix[:5]) // frames its snapshot would keep from being checkpointed
		testutil.WaitFor(t, 20*time.Second, "a TRUNCATE checkpoint to empty the WAL while tail's stdout blocks", func() bool {
			return testutil.CheckpointTruncate(t, db) && walEmpty()
		})
	})

	t.Run("between polls", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		buf := testutil.NewLogBuffer()
		done := make(chan int)
		// Polls 10 s apart: the checkpoint must succeed before the first, when tail would end a
		// snapshot it held.
		go func() { done <- run(ctx, []string{"tail", "-f", "--db", db, "--interval", "10s"}, buf, io.Discard) }()
		defer func() { cancel(); <-done }()
		testutil.WaitFor(t, 10*time.Second, "tail's first rows", func() bool { return strings.Count(buf.String(), "\n") == 11 })
		firstPoll := time.Now().Add(10 * time.Second)
		s.send(t, mix[:5])
		// Before the poll, or a snapshot held would end and let the checkpoint through.
		left := time.Until(firstPoll) - time.Second
		if left < time.Second {
			t.Skip("too slow to tell: tail polls before a checkpoint can be tried")
		}
		testutil.WaitFor(t, left, "a TRUNCATE checkpoint to empty the WAL between tail's polls", func() bool {
			return testutil.CheckpointTruncate(t, db) && walEmpty()
		})
	})
}

// TestTailFollowsRotation: tail -f notices, within its interval, that the file was renamed away
// (log rotation) and says so on stderr; once the server has noticed too (within 10 s) and
// created a new file at the path, tail reads the old file to its end, says it follows the new
// one, and prints the new file's rows from its first: every row written after tail started,
// in either file, once.
func TestTailFollowsRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, rotated := filepath.Join(dir, "q.db"), filepath.Join(dir, "q.db.1")
	s := startServer(t, db)
	s.send(t, mix[:5])
	sent := 5
	exchange := func(qs []query) { s.exchange(t, qs); sent += len(qs) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, notes := testutil.NewLogBuffer(), testutil.NewLogBuffer()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"tail", "-f", "--json", "-n", "0", "--interval", "50ms", "--db", db}, out, notes)
	}()
	// tail has its file open once it prints the rows written after it started.
	testutil.WaitFor(t, 10*time.Second, "tail to follow", func() bool {
		exchange(mix[:1])
		time.Sleep(100 * time.Millisecond)
		return strings.Count(out.String(), "\n") > 0
	})

	if err := os.Rename(db, rotated); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "tail to say the file was renamed", func() bool {
		return strings.Contains(notes.String(), "q.db was renamed or deleted")
	})
	// Queries go on: into the old file until the server notices, then into a new one, which
	// tail then follows.
	testutil.WaitFor(t, 30*time.Second, "the server to create a new file, and tail to say it follows it", func() bool {
		exchange(mix[:2])
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(notes.String(), "q.db was rotated or replaced: following the new file")
	})
	exchange(mix[:3])
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("the %d queries sent to be rows of either file", sent), func() bool {
		time.Sleep(20 * time.Millisecond)
		return rowCount(t, rotated)+rowCount(t, db) == int64(sent)
	})

	// Every row after the first tail printed: the old file's, then the new file's.
	first := jsonRecords(t, out.String())[0][0]
	want := strs(t, rotated, `SELECT `+readableColumns+` FROM queries_readable WHERE id >= ? ORDER BY id`, first)
	want = append(want, strs(t, db, `SELECT `+readableColumns+` FROM queries_readable ORDER BY id`)...)
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("tail to print %d rows", len(want)), func() bool {
		return strings.Count(out.String(), "\n") >= len(want)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("tail -f exited %d: %s", code, notes)
	}
	checkSame(t, "rows followed across the rotation", jsonRecords(t, out.String()), want)
	if n := strings.Count(notes.String(), "\n"); n != 2 {
		t.Errorf("tail said %d things on stderr, want 2:\n%s", n, notes)
	}
}

// TestTailColumnsFitPseudonyms: with anonymize hash, tail's CLIENT column holds the pseudonyms
// (anon- and 16 hex digits) and the columns after it stay under their headings, as they do for
// IPv4 clients.
func TestTailColumnsFitPseudonyms(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "anonymize hash")
	s.send(t, mix[:8])
	out := mustRun(t, "tail", "--db", db, "-n", "8")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	proto := strings.Index(lines[0], "PROTO")
	if len(lines) != 9 || proto < 0 {
		t.Fatalf("tail -n 8: want a header and 8 lines, got\n%s", out)
	}
	for _, l := range lines[1:] {
		client := strings.Fields(l)[1]
		if !strings.HasPrefix(client, "anon-") || len(client) != len("anon-")+16 {
			t.Errorf("client %q is not a pseudonym", client)
		}
		if l[proto-2:proto] != "  " || !strings.HasPrefix(l[proto:], "udp ") && !strings.HasPrefix(l[proto:], "tcp ") {
			t.Errorf("the protocol is not under PROTO:\n%s\n%s", lines[0], l)
		}
	}
}
