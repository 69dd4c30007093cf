package querylog

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
)

// testStore opens the store at path for the rest of the test (closing it sooner is fine).
func testStore(t testing.TB, path string) *store {
	t.Helper()
	s, err := openStore(path)
	if err != nil {
		t.Fatalf("openStore(%s): %v", path, err)
	}
	s.use(&testLabels, &keyring{})
	t.Cleanup(func() { s.close() })
	return s
}

// schema lists the database's schema objects as "type name", in order.
func schema(t *testing.T, db *sql.DB) []string {
	t.Helper()
	var list string
	if err := db.QueryRow(`SELECT group_concat(type || ' ' || name, ',' ORDER BY type, name)
		FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'`).Scan(&list); err != nil {
		t.Fatal(err)
	}
	return strings.Split(list, ",")
}

// The runbook tells an operator which indexes querylog made, so that any other can be dropped
// (QueryBufferHighUtilization): it names every index of a new file.
func TestRunbookListsIndexes(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	doc, err := os.ReadFile("../../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i := strings.Index(text, ".indexes` should list only")
	if i < 0 {
		t.Fatal("docs/runbook.md no longer says which indexes .indexes should list")
	}
	list := text[i:]
	list = list[:strings.Index(list, "**Do:**")]
	for _, name := range testutil.Column[string](t, s.db, `SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name`) {
		if !strings.Contains(list, "`"+name+"`") {
			t.Errorf("the runbook's list of querylog's indexes leaves out %s: %q", name, list)
		}
	}
}

func pragma(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	var v int64
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func checkSchema(t *testing.T, s *store) {
	t.Helper()
	want := []string{
		"index names_name",
		"index rollup_names_name",
		"table batches",
		"table clients",
		"table dict_epochs",
		"table domains_seen",
		"table labels",
		"table log",
		"table log_texts",
		"table name_firsts",
		"table name_firsts_gaps",
		"table names",
		"table pods",
		"table qtype_names",
		"table rcode_names",
		"table retries",
		"table rollup_clients",
		"table rollup_names",
		"table rollup_namespace_clients",
		"table rollup_namespace_names",
		"table rollup_namespace_pods",
		"table rollup_namespaces",
		"table rollup_outcomes",
		"table rollup_searchpath",
		"table rollup_searchpath_suffixes",
		"table rollup_upstreams",
		"table state",
		"view queries",
		"view queries_readable",
	}
	if got := schema(t, s.db); !slices.Equal(got, want) {
		t.Errorf("schema = %q, want %q", got, want)
	}
	if v := pragma(t, s.db, "user_version"); v != schemaVersion {
		t.Errorf("user_version = %d, want %d", v, schemaVersion)
	}
	if v := pragma(t, s.db, "application_id"); v != logrow.ApplicationID {
		t.Errorf("application_id = %#x, want %#x", v, logrow.ApplicationID)
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM qtype_names").Scan(&n); err != nil || n != len(dns.TypeToString) {
		t.Errorf("qtype_names has %d rows (%v), want %d", n, err, len(dns.TypeToString))
	}
	if err := s.db.QueryRow("SELECT count(*) FROM rcode_names").Scan(&n); err != nil || n != len(dns.RcodeToString) {
		t.Errorf("rcode_names has %d rows (%v), want %d", n, err, len(dns.RcodeToString))
	}
	// A time window bounded by id reads only its rows, through the primary key, and looks up
	// nothing it does not show.
	for query, want := range map[string]string{
		"SELECT count(*) FROM queries WHERE id >= 5 << 8 AND ts >= 5": "SEARCH l USING INTEGER PRIMARY KEY (rowid>?);",
		"SELECT qname, count(*) FROM queries WHERE id >= 5 << 8 GROUP BY qname": "SEARCH l USING INTEGER PRIMARY KEY (rowid>?);" +
			"USE TEMP B-TREE FOR GROUP BY;CORRELATED SCALAR SUBQUERY;SEARCH names USING INTEGER PRIMARY KEY (rowid=?);",
	} {
		if plan := testutil.QueryPlan(t, s.db, query); plan != want {
			t.Errorf("%s\nis planned as %s\nwant         %s", query, plan, want)
		}
	}
}

func TestStoreFreshFile(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	checkSchema(t, s)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o640 {
		t.Errorf("database mode %v, want 0640", m)
	}
	if err := s.write([]entry{entryOf(&testLabels, queryRow{server: "dns://:53", qname: "a.example.", client: "192.0.2.1"})}); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(path + "-wal")
	if err != nil {
		t.Fatalf("no WAL after a write: %v", err)
	}
	if m := fi.Mode().Perm(); m != 0o640 {
		t.Errorf("WAL mode %v, want 0640", m)
	}
	if s.size() < fi.Size() {
		t.Errorf("size() = %d, less than the WAL alone (%d)", s.size(), fi.Size())
	}
}

func TestStoreEmptyFile(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := testStore(t, path)
	checkSchema(t, s)
}

// A valid SQLite file with nothing in it (application_id 0, no schema) is adopted.
func TestStoreBlankSQLiteFile(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	testutil.Exec(t, path, `CREATE TABLE x (a); DROP TABLE x`)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("blank database not created: %v", err)
	}
	s := testStore(t, path)
	checkSchema(t, s)
}

// Reopening keeps the rows and does not migrate again.
func TestStoreReopen(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.write([]entry{{qname: "a.example."}, {qname: "b.example."}}); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s = testStore(t, path)
	checkSchema(t, s)
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM queries").Scan(&n); err != nil || n != 2 {
		t.Errorf("rows after reopening = %d (%v), want 2", n, err)
	}
}

func TestStoreRefusesForeignFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		create func(t *testing.T, path string)
		want   string
	}{
		{"text file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("hello, I am not a database\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a readable SQLite database"},
		{"binary junk", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 2048), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a readable SQLite database"},
		{"another application's database", func(t *testing.T, path string) { createOtherDB(t, path, false) }, "not a querylog database"},
		{"another application's database in WAL mode", func(t *testing.T, path string) { createOtherDB(t, path, true) }, "not a querylog database"},
		{"empty schema, foreign application_id", func(t *testing.T, path string) {
			testutil.Exec(t, path, "PRAGMA application_id = 1234; CREATE TABLE x (a); DROP TABLE x")
		}, "not a querylog database"},
		{"querylog database from a newer build", func(t *testing.T, path string) {
			createQuerylogDB(t, path, schemaVersion+1)
		}, fmt.Sprintf("schema version %d", schemaVersion+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "q.db")
			tc.create(t, path)
			before := dirState(t, dir)
			original, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			for name, open := range map[string]func(string) error{
				"checkDatabase": checkDatabase,
				"openStore": func(p string) error {
					s, err := openStore(p)
					if err == nil {
						s.close()
					}
					return err
				},
			} {
				err := open(path)
				if err == nil {
					t.Fatalf("%s accepted the file", name)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: error %q, want it to name %s and say %q", name, err, path, tc.want)
				}
				if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, original) {
					t.Errorf("%s changed the refused file (%v)", name, err)
				}
				// Nothing else may appear either: a read-only open of a WAL database leaves
				// -wal and -shm files behind unless told otherwise.
				if after := dirState(t, dir); after != before {
					t.Errorf("%s left the folder changed:\nbefore %s\nafter  %s", name, before, after)
				}
			}
		})
	}
}

// dirState describes every file in dir with its mode and content hash.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := fnv.New32a()
		h.Write(data)
		fmt.Fprintf(&b, "%s %v %d %08x; ", e.Name(), fi.Mode(), len(data), h.Sum32())
	}
	return b.String()
}

// queryRow is one row of the queries view, with schema 1's columns.
type queryRow struct {
	ts                                      int64
	server, client, proto, qname            string
	qtype, qclass, rcode, size, answers, us int64
	do                                      bool
}

// testLabels numbers the labels of entries that tests write through testStore.
var testLabels labels

// protoOf is the transport named p, as String gives it; udp for an unknown name.
func protoOf(p string) proto {
	for i, name := range logrow.Protos {
		if name == p {
			return proto(i)
		}
	}
	return protoUDP
}

// entryOf is the entry that the handler makes for a reply that must be stored as r (a
// nanosecond start within r's millisecond, as a real one has), with l's label numbers.
func entryOf(l *labels, r queryRow) entry {
	e := entry{start: r.ts*1e6 + 123456, qname: r.qname, qtype: uint16(r.qtype), qclass: uint16(r.qclass),
		rcode: uint16(r.rcode), size: uint32(r.size), answers: uint16(r.answers), duration: uint32(r.us),
		server: uint8(l.id(labelServer, r.server))}
	if r.do {
		e.flags |= flagDO
	}
	if r.client != "" {
		e.setAddr(netip.MustParseAddr(r.client))
	}
	e.setProto(protoOf(r.proto))
	return e
}

// rowOf is the row e must be stored as (codec.go's maxima applied), with l's label numbers.
func rowOf(l *labels, e entry) queryRow {
	return queryRow{e.start / 1e6, l.text(labelServer, uint16(e.server)), clientText(&e, nil), e.proto().String(), e.qname,
		int64(e.qtype), int64(e.qclass), int64(e.rcode & 0xfff), int64(min(e.size, maxSize)), int64(min(e.answers, maxAnswers)),
		int64(e.duration), e.flags&flagDO != 0}
}

// readRows reads the rows of the queries table that clause (WHERE, ORDER BY, LIMIT) selects.
func readRows(t *testing.T, db *sql.DB, clause string, args ...any) []queryRow {
	t.Helper()
	rows, err := db.Query(`SELECT ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do"
		FROM queries `+clause, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []queryRow
	for rows.Next() {
		var r queryRow
		if err := rows.Scan(&r.ts, &r.server, &r.client, &r.proto, &r.qname, &r.qtype, &r.qclass, &r.rcode, &r.size, &r.answers, &r.us, &r.do); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// longName is a name of 255 octets on the wire.
func longName() string {
	l63 := strings.Repeat("a", 63)
	name := l63 + "." + l63 + "." + l63 + "." + strings.Repeat("b", 61) + "."
	return name
}

// longEscapedName is a 255-octet name whose octets are all escaped: 1000 characters of text.
func longEscapedName() string {
	l := strings.Repeat(`\255`, 63)
	return l + "." + l + "." + l + "." + strings.Repeat(`\000`, 61) + "."
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, name := range []string{longName(), longEscapedName()} {
		buf := make([]byte, 512)
		if n, err := dns.PackDomainName(name, buf, 0, nil, false); err != nil || n != 255 {
			t.Fatalf("test name is %d octets on the wire (%v), want 255", n, err)
		}
	}
	const ms = 1700000000123
	row := func(r queryRow) entry { return entryOf(&testLabels, r) }
	largest := row(queryRow{0, "grpc://.:443", "255.255.255.255", "grpc", "big.example.", 65535, 65535, 4095, 0, 0, 0, true})
	largest.start, largest.size, largest.answers, largest.duration = math.MaxInt64, math.MaxUint32, math.MaxUint16, math.MaxUint32
	zoned := row(queryRow{ms, "https://.:443", "", "doh", longEscapedName(), 65, 1, 0, 100, 0, 0, false})
	zoned.setAddr(netip.MustParseAddr("fe80::1%eth0"))
	tests := []struct {
		name string
		e    entry
		want queryRow // ts, server, client, proto, qname, qtype, qclass, rcode, size, answers, duration_us, do
	}{
		{"udp, escaped bytes", row(queryRow{ms, "dns://.:53", "10.240.0.1", "udp", `a\000b\.c.example.`, 1, 1, 0, 512, 1, 1234, false}),
			queryRow{ms, "dns://.:53", "10.240.0.1", "udp", `a\000b\.c.example.`, 1, 1, 0, 512, 1, 1234, false}},
		{"tcp, SQL in the name", row(queryRow{ms + 1, "dns://.:53", "192.0.2.200", "tcp", `a'); DROP TABLE queries;--.example.`, 16, 3, 3, 40, 0, 0, true}),
			queryRow{ms + 1, "dns://.:53", "192.0.2.200", "tcp", `a'); DROP TABLE queries;--.example.`, 16, 3, 3, 40, 0, 0, true}},
		{"dot, 255-octet name, IPv6", row(queryRow{ms, "tls://.:853", "2001:db8::53", "dot", longName(), 28, 1, 0, 1232, 2, 1, true}),
			queryRow{ms, "tls://.:853", "2001:db8::53", "dot", longName(), 28, 1, 0, 1232, 2, 1, true}},
		{"doh, 255-octet escaped name, link-local with zone", zoned,
			queryRow{ms, "https://.:443", "fe80::1", "doh", longEscapedName(), 65, 1, 0, 100, 0, 0, false}},
		{"doh3, quotes and spaces", row(queryRow{ms, "https3://.:443", "::1", "doh3", `sp\032ace"quote.example.`, 15, 1, 0, 0, 0, 0, false}),
			queryRow{ms, "https3://.:443", "::1", "doh3", `sp\032ace"quote.example.`, 15, 1, 0, 0, 0, 0, false}},
		{"doq, root name", row(queryRow{ms, "quic://.:853", "192.0.2.1", "doq", ".", 2, 1, 0, 0, 0, 0, false}),
			queryRow{ms, "quic://.:853", "192.0.2.1", "doq", ".", 2, 1, 0, 0, 0, 0, false}},
		{"grpc, largest values (size, answers and duration stored as codec.go's maxima)", largest,
			queryRow{int64(math.MaxInt64) / 1e6, "grpc://.:443", "255.255.255.255", "grpc", "big.example.", 65535, 65535, 4095, maxSize, maxAnswers, math.MaxUint32, true}},
		{"zero values", row(queryRow{client: "0.0.0.0"}),
			queryRow{0, "", "0.0.0.0", "udp", "", 0, 0, 0, 0, 0, 0, false}},
		{"a number as the name (inline text is never read as a dictionary number)", row(queryRow{ms, "dns://.:53", "192.0.2.1", "udp", "1", 1, 1, 0, 0, 0, 0, false}),
			queryRow{ms, "dns://.:53", "192.0.2.1", "udp", "1", 1, 1, 0, 0, 0, 0, false}},
	}

	s := testStore(t, tempDB(t))
	var all []entry
	for _, tc := range tests {
		all = append(all, tc.e)
	}
	// Twice: the second time, every repeated name and client comes from the dictionaries.
	for range 2 {
		if err := s.write(all[:3], all[3:]); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	got := readRows(t, s.db, "ORDER BY id")
	if len(got) != 2*len(tests) {
		t.Fatalf("read %d rows, want %d", len(got), 2*len(tests))
	}
	for i, tc := range tests {
		for _, g := range []queryRow{got[i], got[len(tests)+i]} {
			if g != tc.want {
				t.Errorf("%s:\n got %+v\nwant %+v", tc.name, g, tc.want)
			}
		}
	}
}

// Many rows, split over two segments (a wrapped ring) and several multi-row INSERTs, arrive
// complete and in order.
func TestStoreWriteSegments(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	for _, split := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {64, 0}, {63, 2}, {70, 30}, {200, 129}, {1, 300}} {
		var first, second []entry
		for i := range split[0] + split[1] {
			e := entryOf(&testLabels, queryRow{ts: int64(i), qname: fmt.Sprintf("n%d.example.", i), server: fmt.Sprint(split)})
			if i < split[0] {
				first = append(first, e)
			} else {
				second = append(second, e)
			}
		}
		if err := s.write(first, second); err != nil {
			t.Fatalf("write %v: %v", split, err)
		}
		rows, err := s.db.Query(`SELECT qname, ts FROM queries WHERE server = ? ORDER BY id`, fmt.Sprint(split))
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var q string
			var ts int64
			rows.Scan(&q, &ts)
			if q != fmt.Sprintf("n%d.example.", i) || ts != int64(i) {
				t.Errorf("split %v: row %d is %s/%d", split, i, q, ts)
			}
			i++
		}
		rows.Close()
		if i != split[0]+split[1] {
			t.Errorf("split %v: %d rows, want %d", split, i, split[0]+split[1])
		}
	}
}

// failRowsNamed makes a batch fail, as a full disk would, when a row of it holds name as text
// (a trigger aborts the INSERT): the first time the writer sees name in an epoch, and again
// after the failure, which empties the dictionaries' caches.
func failRowsNamed(t *testing.T, s *store, name string) {
	t.Helper()
	quoted := "'" + strings.ReplaceAll(name, "'", "''") + "'" // a trigger takes no parameters
	if _, err := s.db.Exec(`CREATE TRIGGER no_bad BEFORE INSERT ON log WHEN NEW.name = ` + quoted + ` BEGIN SELECT RAISE(ABORT, 'bad row'); END`); err != nil {
		t.Fatal(err)
	}
}

// A batch is one transaction: when it fails, nothing of it is stored.
func TestStoreWriteAtomic(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	failRowsNamed(t, s, "bad.")
	var batch []entry
	for i := range 100 {
		batch = append(batch, entry{start: int64(i) * 1e6, qname: fmt.Sprintf("n%d.", i)})
	}
	batch[90].qname = "bad."
	if err := s.write(batch[:50], batch[50:]); err == nil {
		t.Fatal("write succeeded despite a failing row")
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM queries").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows stored from a failed batch (%v)", n, err)
	}
	batch[90].qname = "good."
	if err := s.write(batch[:50], batch[50:]); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow("SELECT count(*) FROM queries").Scan(&n); err != nil || n != 100 {
		t.Errorf("%d rows after the retry, want 100 (%v)", n, err)
	}
}

func TestStoreReadableView(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	tests := []struct {
		qtype, qclass, rcode uint16
		qtypeName            string
		qclassName           string
		rcodeName            string
	}{
		{1, 1, 0, "A", "IN", "NOERROR"},
		{28, 1, 3, "AAAA", "IN", "NXDOMAIN"},
		{65, 1, 2, "HTTPS", "IN", "SERVFAIL"},
		{64, 1, 5, "SVCB", "IN", "REFUSED"},
		{16, 3, 0, "TXT", "CH", "NOERROR"},
		{255, 4, 4, "ANY", "HS", "NOTIMP"},
		{252, 254, 9, "AXFR", "NONE", "NOTAUTH"},
		{6, 255, 1, "SOA", "ANY", "FORMERR"},
		{65280, 2, 23, "TYPE65280", "CLASS2", "BADCOOKIE"},
		{12345, 65535, 4095, "TYPE12345", "CLASS65535", "RCODE4095"},
	}
	var batch []entry
	for i, tc := range tests {
		batch = append(batch, entryOf(&testLabels, queryRow{1700000000123 + int64(i)*1000, "dns://.:53", "192.0.2.1", "tcp", "x.example.",
			int64(tc.qtype), int64(tc.qclass), int64(tc.rcode), 99, 3, 5, true}))
	}
	if err := s.write(batch); err != nil {
		t.Fatal(err)
	}
	rows, err := s.db.Query(`SELECT time, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do"
		FROM queries_readable ORDER BY time`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var tm, server, client, proto, qname, qtype, qclass, rcode string
		var size, answers, us, do int
		if err := rows.Scan(&tm, &server, &client, &proto, &qname, &qtype, &qclass, &rcode, &size, &answers, &us, &do); err != nil {
			t.Fatal(err)
		}
		if i >= len(tests) {
			break
		}
		tc := tests[i]
		if want := fmt.Sprintf("2023-11-14T22:13:%02d.123Z", 20+i); tm != want {
			t.Errorf("row %d: time %q, want %q", i, tm, want)
		}
		if qtype != tc.qtypeName || qclass != tc.qclassName || rcode != tc.rcodeName {
			t.Errorf("qtype %d, class %d, rcode %d shown as %s %s %s; want %s %s %s", tc.qtype, tc.qclass, tc.rcode,
				qtype, qclass, rcode, tc.qtypeName, tc.qclassName, tc.rcodeName)
		}
		if server != "dns://.:53" || client != "192.0.2.1" || proto != "tcp" || qname != "x.example." || size != 99 || answers != 3 || us != 5 || do != 1 {
			t.Errorf("row %d: other columns %v", i, []any{server, client, proto, qname, size, answers, us, do})
		}
	}
	if i != len(tests) {
		t.Errorf("view has %d rows, want %d", i, len(tests))
	}
}

func TestStoreCheckDatabaseAbsentOrEmpty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := checkDatabase(filepath.Join(dir, "absent.db")); err != nil {
		t.Errorf("absent file: %v", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkDatabase(empty); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if err := checkDatabase(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "absent.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkDatabase created the absent file")
	}
}
