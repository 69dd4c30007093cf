package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// TestNameOnLabelBoundaries: --name matches on label boundaries of the presentation format, as
// the plugin's ignore does: evil\.x.example.net. is a name directly under example.net. (its
// first label is "evil.x"), not under x.example.net.; a\\.x.example.net. (the label a\) is
// under it. Search (newest first: rows matched in Go, then by SQL on the dictionary once
// matchScan rows are read), export (oldest first) and tail all agree with SQL on the view;
// files of schema 1 are matched by SQL alone.
func TestNameOnLabelBoundaries(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	evil, under := `evil\.x.example.net.`, `a\\.x.example.net.`
	var qs []query
	add := func(n int, name string) {
		for range n {
			qs = append(qs, query{name, dns.TypeTXT, "127.0.0.4", false})
		}
	}
	// Seen more than once, the names go into the dictionary; the noise between them makes the
	// newest and the oldest rows be matched in Go, those in the middle by SQL.
	add(3, evil)
	add(3, under)
	add(8, "x.example.net.")
	add(3, evil)
	add(2, under)
	s.send(t, qs)
	s.stop()

	where := `(qname = 'x.example.net.' OR qname LIKE '%.x.example.net.') AND qname <> '` + evil + `'`
	want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE `+where+` ORDER BY id`)
	if len(want) != 13 {
		t.Fatalf("%d rows under x.example.net. in the file, want 13", len(want))
	}
	newest := make([][]string, len(want))
	for i := range want {
		newest[len(want)-1-i] = want[i]
	}
	for _, n := range []int{2, 100} {
		got, _ := searchPages(t, n, "--db", db, "--name", "x.example.net")
		checkSame(t, fmt.Sprintf("search --name -n %d", n), got, newest)
	}
	checkSame(t, "export --name", csvRecords(t, mustRun(t, "export", "--db", db, "--name", "x.example.net"))[1:], nullsAs(want, ""))
	checkSame(t, "tail --name", jsonRecords(t, mustRun(t, "tail", "--db", db, "--json", "-n", "100", "--name", "x.example.net")), want)
	if out := mustRun(t, "search", "--db", db, "--name", "x.example.net", "-n", "100"); strings.Contains(out, `evil\.`) {
		t.Errorf("search --name x.example.net printed %s:\n%s", evil, out)
	}
	// The evil name is under example.net. itself.
	got, _ := searchPages(t, 100, "--db", db, "--name", "example.net", "--client", "127.0.0.4")
	if len(got) != len(qs) {
		t.Errorf("search --name example.net: %d rows, want %d", len(got), len(qs))
	}

	v1 := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, v1, 50, time.Now().Add(-time.Hour).UnixMilli())
	testutil.SQLite3(t, v1, `INSERT INTO queries SELECT ts + 1000, server, client_ip, proto, '`+evil+`', qtype, qclass, rcode, size, answers, duration_us, "do" FROM queries LIMIT 3;
		INSERT INTO queries SELECT ts + 2000, server, client_ip, proto, '`+under+`', qtype, qclass, rcode, size, answers, duration_us, "do" FROM queries LIMIT 2`)
	want = schema1Rows(t, v1, `qname LIKE '%.x.example.net.' AND qname <> '`+evil+`'`)
	if len(want) != 2 {
		t.Fatalf("%d rows under x.example.net. in the file of schema 1, want 2", len(want))
	}
	checkSame(t, "export --name, schema 1", csvRecords(t, mustRun(t, "export", "--db", v1, "--name", "x.example.net"))[1:], nullsAs(want, ""))
}
