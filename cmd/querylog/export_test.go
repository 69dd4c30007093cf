package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// readableColumns selects exportColumns from queries_readable.
const readableColumns = `id, ts, time, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do",
	plugin, flags, ede, upstream, metadata, answer_data, namespace, pod, cache`

// schema1Rows reads exportColumns of the rows of a file of schema 1 that where selects, by ts:
// from its queries_readable view, which has neither the id (the rowid of the queries table)
// nor the columns schema 2 added (NULL, flags ”). The fixture's ts are unique.
func schema1Rows(t *testing.T, db, where string, args ...any) [][]string {
	t.Helper()
	ids := strs(t, db, `SELECT rowid FROM queries WHERE `+where+` ORDER BY ts`, args...)
	rows := strs(t, db, `SELECT NULL, ts, time, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do",
		NULL AS plugin, '' AS flags, NULL AS ede, NULL AS upstream, NULL AS metadata, NULL AS answer_data,
		NULL AS namespace, NULL AS pod, NULL AS cache
		FROM queries_readable WHERE `+where+` ORDER BY ts`, args...)
	if len(ids) != len(rows) {
		t.Fatalf("%d ids, %d rows", len(ids), len(rows))
	}
	for i := range rows {
		rows[i][0] = ids[i][0]
	}
	return rows
}

// csvRecords parses CSV output, header first.
func csvRecords(t *testing.T, out string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, out)
	}
	return recs
}

// jsonRecords parses JSON lines into rows of text in exportColumns' order, null as "<nil>".
func jsonRecords(t *testing.T, out string) [][]string {
	t.Helper()
	var recs [][]string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if len(m) != len(exportColumns) {
			t.Fatalf("%d keys, want %d: %s", len(m), len(exportColumns), line)
		}
		rec := make([]string, len(exportColumns))
		for i, c := range exportColumns {
			switch v := m[c].(type) {
			case nil:
				rec[i] = "<nil>"
			case float64:
				rec[i] = fmt.Sprint(int64(v))
			default:
				rec[i] = fmt.Sprint(v)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

// nullsAs replaces "<nil>" in rows with s (CSV has no NULL).
func nullsAs(rows [][]string, s string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			if v == "<nil>" {
				v = s
			}
			out[i][j] = v
		}
	}
	return out
}

func checkSame(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: row %d:\n got %q\nwant %q", what, i, got[i], want[i])
			return
		}
	}
}

// TestExportMatchesViews: export, in CSV and JSON lines, gives exactly the rows of
// queries_readable in id order, field for field, on a file written by the plugin; with filters,
// exactly the rows SQL on the view selects. The file is left as it was.
func TestExportMatchesViews(t *testing.T) {
	t.Parallel()
	db := loggedFile(t)
	before := fileState(t, db)
	want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable ORDER BY id`)
	if len(want) != 2*len(mix) {
		t.Fatalf("the file has %d rows, want %d", len(want), 2*len(mix))
	}
	recs := csvRecords(t, mustRun(t, "export", "--db", db))
	if !reflect.DeepEqual(recs[0], exportColumns) {
		t.Errorf("CSV header %q, want %q", recs[0], exportColumns)
	}
	checkSame(t, "csv", recs[1:], nullsAs(want, ""))
	checkSame(t, "jsonl", jsonRecords(t, mustRun(t, "export", "--db", db, "--format", "jsonl")), want)
	checkSame(t, "--json", jsonRecords(t, mustRun(t, "export", "--db", db, "--json")), want)

	// The second copy of the mix arrived a second after the first.
	ts := strs(t, db, `SELECT ts FROM queries ORDER BY ts`)
	mid := time.UnixMilli(atoi(t, ts[len(mix)][0])).UTC().Format(time.RFC3339Nano)
	for _, c := range []struct {
		args  []string
		where string
	}{
		{[]string{"--name", "example.org"}, `qname = 'example.org.' OR qname LIKE '%.example.org.'`},
		{[]string{"--name", "EXAMPLE.org."}, `qname = 'example.org.' OR qname LIKE '%.example.org.'`},
		{[]string{"--name", "b.example.org"}, `qname LIKE '%b.example.org.'`},
		{[]string{"--client", "127.0.0.4"}, `client_ip = '127.0.0.4'`},
		{[]string{"--client", "127.0.0.4/31"}, `client_ip IN ('127.0.0.4', '127.0.0.5')`},
		{[]string{"--client", "::ffff:127.0.0.3"}, `client_ip = '127.0.0.3'`},
		{[]string{"--rcode", "nxdomain"}, `rcode = 'NXDOMAIN'`},
		{[]string{"--rcode", "0"}, `rcode = 'NOERROR'`},
		{[]string{"--type", "AAAA", "--client", "127.0.0.3"}, `qtype = 'AAAA'`},
		{[]string{"--type", "TYPE16"}, `qtype = 'TXT'`},
		{[]string{"--slower-than", "100ms"}, `duration_us > 100000`},
		{[]string{"--since", mid}, fmt.Sprintf(`ts >= %s`, ts[len(mix)][0])},
		{[]string{"--until", mid}, fmt.Sprintf(`ts < %s`, ts[len(mix)][0])},
		{[]string{"--since", "1h", "--until", "2026-01-01T00:00:00Z"}, `0`},
		{[]string{"--name", "example.org", "--rcode", "NOERROR", "--since", "1h"}, `(qname = 'example.org.' OR qname LIKE '%.example.org.') AND rcode = 'NOERROR'`},
	} {
		want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE `+c.where+` ORDER BY id`)
		got := csvRecords(t, mustRun(t, append([]string{"export", "--db", db}, c.args...)...))
		checkSame(t, strings.Join(c.args, " "), got[1:], nullsAs(want, ""))
		if len(want) == 0 && c.where != "0" {
			t.Errorf("%s: no rows to compare; the test's mix should have some", c.args)
		}
	}
	if after := fileState(t, db); after != before {
		t.Errorf("reading changed the database file: %s, was %s", after, before)
	}
}

// TestExportSchema1: on a file of schema 1, export gives the rows of its queries_readable view,
// oldest first, filters included.
func TestExportSchema1(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "v1.db")
	start := time.Now().Add(-time.Hour).UnixMilli()
	schema1File(t, db, 2000, start)
	want := schema1Rows(t, db, `1`)
	checkSame(t, "csv", csvRecords(t, mustRun(t, "export", "--db", db))[1:], nullsAs(want, ""))
	checkSame(t, "jsonl", jsonRecords(t, mustRun(t, "export", "--db", db, "--json")), want)
	want = schema1Rows(t, db, `(qname = 'example.org.' OR qname LIKE '%.example.org.') AND client_ip = '10.0.17.1' AND ts >= ?`, start+500)
	got := csvRecords(t, mustRun(t, "export", "--db", db, "--name", "example.org", "--client", "10.0.17.0/24",
		"--since", time.UnixMilli(start+500).UTC().Format(time.RFC3339Nano)))
	checkSame(t, "filtered", got[1:], nullsAs(want, ""))
	if len(want) == 0 {
		t.Error("no rows to compare")
	}
}

func atoi(t testing.TB, s string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
