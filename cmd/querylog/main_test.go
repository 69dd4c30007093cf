package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	_ "embed"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/template"
	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
	"github.com/querylog/querylog/plugin/querylog"
)

// The tests write real files with the real plugin, in an in-process CoreDNS fed real DNS
// queries, then run the command (run, as main does) and check its output against SQL on the
// same file, through the views the plugin defines (queries, queries_readable).

func init() {
	if err := dnsserver.SetDirectives(querylog.WithDirective(dnsserver.Directives)); err != nil {
		panic(err)
	}
	caddy.Quiet = true
	dnsserver.Quiet = true
	// Small, so that the tests' files, of some tens of rows over a second or two, are read in
	// several chunks, and searches by name or client match rows both ways (logRows).
	matchScan, chunkIDs, chunkMS = 3, 20<<8, 20
}

// querylogCmd runs the command with args and returns its stdout, stderr and exit status.
func querylogCmd(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustRun runs the command and fails the test unless it exits 0; it returns stdout.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := querylogCmd(t, args...)
	if code != 0 {
		t.Fatalf("querylog %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// server is an in-process CoreDNS logging to db: A queries under example.org. are answered,
// AAAA under it, and anything under example.net. or notexample.org., are NXDOMAIN, and
// slow.example.com. is forwarded to an upstream that answers after 150 ms.
type server struct {
	db       string
	udp, tcp string // 127.0.0.1:port
	stop     func()
}

func startServer(t *testing.T, db string) *server { return startServerWith(t, db, "") }

// startServerWith is startServer with more querylog options (lines of its block).
func startServerWith(t *testing.T, db, opts string) *server { return startServerBlock(t, db, opts, "") }

// startServerBlock is startServerWith with more lines in the server block (plugins).
func startServerBlock(t *testing.T, db, opts, lines string) *server {
	t.Helper()
	upstream := slowUpstream(t)
	inst, stop := testutil.StartCoreDNS(t, fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    %s
    querylog %s {
        flush_interval 50ms
        adaptive 10ms 100ms
        %s
    }
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN AAAA example.org {
        rcode NXDOMAIN
    }
    template ANY ANY example.net notexample.org {
        rcode NXDOMAIN
    }
    forward slow.example.com %s
}
`, lines, db, opts, upstream))
	s := &server{db: db, udp: inst.Servers()[0].LocalAddr().String(), tcp: inst.Servers()[0].Addr().String()}
	s.stop = func() {
		stop()
		// A final shutdown keeps the database open a few seconds more for late replies
		// (plugin/querylog/writer.go, tailGrace), then writes the rollups' last counts: wait for
		// it to close the file, so the rollups are complete and the folder can go.
		testutil.WaitFor(t, 20*time.Second, "the server to close "+db, func() bool {
			time.Sleep(50 * time.Millisecond)
			return testutil.Conns(0, db) == 0
		})
	}
	t.Cleanup(s.stop)
	return s
}

// slowUpstream serves A answers after 150 ms on a loopback UDP port, until the test ends.
func slowUpstream(t *testing.T) string {
	return fakeUpstream(t, 150*time.Millisecond, dns.RcodeSuccess)
}

// fakeUpstream serves replies with rcode (NOERROR ones with an A record) after delay on a
// loopback UDP port, until the test ends.
func fakeUpstream(t *testing.T, delay time.Duration, rcode int) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(delay)
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		if rcode == dns.RcodeSuccess {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 9)})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// query is one DNS query of a test: a name and type, sent from a loopback address over udp or
// tcp.
type query struct {
	name   string
	qtype  uint16
	client string // 127.0.0.x
	tcp    bool
}

// mix is the queries the tests send: names under example.org. and beside it, a name with a
// comma and a quote (CSV and JSON must quote them), upper case (stored lower-cased), four
// clients, udp and tcp, NOERROR and NXDOMAIN, and slow forwarded replies.
var mix = func() []query {
	var qs []query
	add := func(n int, q query) {
		for range n {
			qs = append(qs, q)
		}
	}
	add(6, query{"www.example.org.", dns.TypeA, "127.0.0.2", false})
	add(3, query{"example.org.", dns.TypeA, "127.0.0.2", false})
	add(2, query{"a.b.example.org.", dns.TypeA, "127.0.0.2", false})
	add(2, query{"notexample.org.", dns.TypeA, "127.0.0.2", false})
	add(1, query{"WWW.Example.ORG.", dns.TypeA, "127.0.0.2", false})
	add(2, query{"www.example.org.", dns.TypeAAAA, "127.0.0.3", true})
	add(3, query{"x.example.net.", dns.TypeTXT, "127.0.0.4", false})
	add(2, query{"slow.example.com.", dns.TypeA, "127.0.0.4", false})
	add(1, query{`we"ird,name.example.org.`, dns.TypeA, "127.0.0.5", false})
	return qs
}()

// send sends the queries to s and waits until the database holds rows more rows than before.
func (s *server) send(t *testing.T, qs []query) {
	t.Helper()
	before := rowCount(t, s.db)
	s.exchange(t, qs)
	want := before + int64(len(qs))
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%d rows in %s", want, s.db), func() bool {
		time.Sleep(20 * time.Millisecond)
		return rowCount(t, s.db) == want
	})
}

// exchange sends the queries to s and waits for their replies.
func (s *server) exchange(t *testing.T, qs []query) {
	t.Helper()
	for _, q := range qs {
		network, addr := "udp", s.udp
		var local net.Addr = &net.UDPAddr{IP: net.ParseIP(q.client)}
		if q.tcp {
			network, addr, local = "tcp", s.tcp, &net.TCPAddr{IP: net.ParseIP(q.client)}
		}
		c := &dns.Client{Net: network, Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}}
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("%s %s from %s: %v", q.name, dns.TypeToString[q.qtype], q.client, err)
		}
	}
}

// loggedFile returns a database written by the plugin with the mix sent twice, a second apart,
// and the server stopped (so every row is in the minute rollups too).
func loggedFile(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServer(t, db)
	s.send(t, mix)
	time.Sleep(1100 * time.Millisecond)
	s.send(t, mix)
	s.stop()
	return db
}

//go:embed testdata/schema1.sql
var schema1DDL string

// schema1File writes a database as schema 1 of the plugin left it, with rows rows a millisecond
// apart from ms, with the sqlite3 tool.
func schema1File(t *testing.T, path string, rows int, ms int64) {
	t.Helper()
	testutil.SQLite3(t, path, fmt.Sprintf(`PRAGMA journal_mode = WAL;
		BEGIN;
		%s
		INSERT INTO qtype_names VALUES (1, 'A'), (28, 'AAAA'), (16, 'TXT');
		INSERT INTO rcode_names VALUES (0, 'NOERROR'), (2, 'SERVFAIL'), (3, 'NXDOMAIN');
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %d)
		INSERT INTO queries SELECT %d + i, 'dns://:53', '10.0.' || (i %% 250) || '.1', iif(i %% 7 = 0, 'tcp', 'udp'),
			iif(i %% 11 = 0, 'old' || (i %% 3) || '.example.org.', 'host' || (i %% 500) || '.example.'),
			iif(i %% 3 = 0, 28, 1), 1, iif(i %% 10 = 0, 3, 0), 60 + i %% 200,
			iif(i %% 10 = 0, 0, 1), 100 + i %% 900, i %% 2 FROM n;
		PRAGMA application_id = %d; PRAGMA user_version = 1;
		COMMIT;`, schema1DDL, rows, ms, logrow.ApplicationID))
}

// strs reads the rows of query on the database at path as text, NULL as "<nil>", through a
// connection of its own, closed when done.
func strs(t testing.TB, path, query string, args ...any) [][]string {
	t.Helper()
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
			if !v.Valid {
				row[i] = "<nil>"
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rowCount is the number of rows in the queries view (or table) of the database at path, 0 if
// it has none yet.
func rowCount(t testing.TB, path string) int64 {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	return atoi(t, strs(t, path, `SELECT count(*) FROM queries`)[0][0])
}

// fileState is what a read must leave unchanged: the database file's content and time.
func fileState(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256 %x, modified %s", sha256.Sum256(b), fi.ModTime())
}
