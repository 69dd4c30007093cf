package logrow_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/testutil"
)

// logDDL is the part of schema 2 (plugin/querylog/schema.go) that Reader reads.
const logDDL = `CREATE TABLE log (id INTEGER PRIMARY KEY, name, client, late INTEGER NOT NULL,
		a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL, metadata TEXT, answer_data TEXT, pod, cache);
	CREATE TABLE pods (id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL);
	CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
	CREATE TABLE clients (id INTEGER PRIMARY KEY, addr TEXT NOT NULL);
	CREATE TABLE labels (kind INTEGER NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL,
		PRIMARY KEY (kind, n), UNIQUE (kind, text)) WITHOUT ROWID;`

// packed is a log row's columns a, b and c, packed as plugin/querylog/codec.go packs them.
func packed(f logrow.Fields) (a, b, c int64) {
	a = f.Qtype | f.Flags<<16 | f.Rcode<<23 | (f.Qclass^1)<<35
	b = f.Plugin | f.Server<<8 | f.Proto<<16 | f.Upstream<<19 | f.Answers<<27 | (f.EDE+1)<<39
	c = f.Size | f.DurationUS<<24
	return a, b, c
}

// insertRow adds a log row arrived at ts, with name and client as stored (a dictionary number
// or a text).
func insertRow(t *testing.T, path string, id, ts int64, name, client any, f logrow.Fields, meta string) {
	t.Helper()
	a, b, c := packed(f)
	testutil.Exec(t, path, fmt.Sprintf(`INSERT INTO log VALUES (%d, %s, %s, %d, %d, %d, %d, %s, NULL, NULL, NULL)`,
		id, sqlValue(name), sqlValue(client), id>>8-ts, a, b, c, sqlValue(meta)))
}

func sqlValue(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "NULL"
		}
		return "'" + v + "'"
	default:
		return fmt.Sprint(v)
	}
}

// withConn runs f on a driver connection to path.
func withConn(t *testing.T, path string, f func(dc driver.Conn)) {
	t.Helper()
	conn, err := testutil.OpenRO(t, path).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(c any) error { f(c.(driver.Conn)); return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestReaderRead reads rows back: the fields packed, names and clients stored as dictionary
// numbers or as text, labels, including one added after the reader cached the table, and a
// number the dictionary no longer has.
func TestReaderRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	testutil.Exec(t, path, logDDL+`
		INSERT INTO names VALUES (1, 'a.example.'), (1024, 'b.example.');
		INSERT INTO clients VALUES (5, '192.0.2.1');
		INSERT INTO labels VALUES (0, 1, 'dns://:53'), (1, 1, 'forward');`)
	f1 := logrow.Fields{TS: 1000, Qtype: 28, Qclass: 1, Rcode: 3, Flags: logrow.FlagRD | logrow.FlagDO,
		Plugin: 1, Server: 1, Proto: 2, Answers: 2, Size: 120, DurationUS: 1500, EDE: -1}
	f2 := logrow.Fields{TS: 1990, Qtype: 1, Qclass: 3, Rcode: 0, Flags: logrow.FlagAA, Plugin: 0, Server: 1,
		Upstream: 1, Proto: 7, Answers: 0, Size: 1 << 20, DurationUS: 1 << 30, EDE: 18}
	insertRow(t, path, 1000<<8, 1000, 1, 5, f1, `{"k":"v"}`)
	insertRow(t, path, 2000<<8, 1990, "inline.example.", "198.51.100.7", f2, "")
	insertRow(t, path, 2000<<8+1, 2000, 1024, 6, f1, "") // client 6: pruned
	insertRow(t, path, 2000<<8+2, 2000, -3, "", f1, "")  // hostile: a negative number, a NULL client
	testutil.Exec(t, path, `INSERT INTO pods VALUES (1, 'team-a', 'web-1')`)
	testutil.Exec(t, path, `UPDATE log SET pod = 1, cache = 1 WHERE id = 1000 << 8`)
	testutil.Exec(t, path, `UPDATE log SET pod = 7, cache = 0 WHERE id = 2000 << 8`) // pod 7: pruned

	r := logrow.NewReader(10_000)
	var rows []logrow.Row
	withConn(t, path, func(dc driver.Conn) {
		var err error
		if rows, err = r.Read(context.Background(), dc, 0, 3, logrow.Layout{Meta: true, Cluster: true}, nil); err != nil {
			t.Fatal(err)
		}
		// A label added since the cache was read is read at the next Read.
		testutil.Exec(t, path, `INSERT INTO labels VALUES (2, 1, '192.0.2.53:53')`)
		if rows, err = r.Read(context.Background(), dc, 1000<<8, 10, logrow.Layout{Meta: true, Cluster: true}, rows[:1]); err != nil {
			t.Fatal(err)
		}
	})
	want := []logrow.Row{
		{ID: 1000 << 8, Fields: f1, QName: "a.example.", ClientIP: "192.0.2.1", ServerLabel: "dns://:53", PluginLabel: "forward", Metadata: `{"k":"v"}`,
			Namespace: "team-a", Pod: "web-1", Cache: logrow.CacheHit},
		{ID: 2000 << 8, Fields: f2, QName: "inline.example.", ClientIP: "198.51.100.7", ServerLabel: "dns://:53", UpstreamLabel: "192.0.2.53:53",
			Cache: logrow.CacheMiss},
		{ID: 2000<<8 + 1, Fields: f1, QName: "b.example.", ServerLabel: "dns://:53", PluginLabel: "forward", Cache: logrow.CacheNone},
		{ID: 2000<<8 + 2, Fields: f1, ServerLabel: "dns://:53", PluginLabel: "forward", Cache: logrow.CacheNone},
	}
	want[2].TS, want[3].TS = 2000, 2000
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, rows[i], want[i])
		}
	}
}

// TestDict reads texts across blocks, finds a number added after its block was read, and
// stays within its limit of blocks.
func TestDict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dict.db")
	testutil.Exec(t, path, logDDL+`INSERT INTO clients VALUES (1023, 'x'), (1024, 'y'), (5000, 'z')`)
	d := logrow.NewDict(logrow.ClientsTable, 1) // one block at a time
	ctx := context.Background()
	text := func(dc driver.Conn, n int64) string {
		s, ok, err := d.Text(ctx, dc, n)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "<none>"
		}
		return s
	}
	withConn(t, path, func(dc driver.Conn) {
		got := []string{text(dc, 1023), text(dc, 1024), text(dc, 5000), text(dc, 1022), text(dc, -1)}
		testutil.Exec(t, path, `INSERT INTO clients VALUES (1022, 'w')`)
		got = append(got, text(dc, 1022), text(dc, 1023))
		if fmt.Sprint(got) != "[x y z <none> <none> w x]" {
			t.Errorf("texts %v", got)
		}
		for _, v := range []driver.Value{int64(1024), "203.0.113.9", nil} {
			s, ok, err := d.Ref(ctx, dc, v)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s/%v", s, ok))
		}
		if fmt.Sprint(got[7:]) != "[y/true 203.0.113.9/true /false]" {
			t.Errorf("refs %v", got[7:])
		}
	})
}
