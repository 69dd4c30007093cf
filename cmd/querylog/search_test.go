package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// searchPages runs search with args a page of n rows at a time, following the cursors, and
// returns every row (as text in exportColumns' order) and the number of pages.
func searchPages(t *testing.T, n int, args ...string) ([][]string, int) {
	t.Helper()
	var all [][]string
	after := ""
	for pages := 1; ; pages++ {
		a := append([]string{"search", "--json", "-n", fmt.Sprint(n)}, args...)
		if after != "" {
			a = append(a, "--after", after)
		}
		var page struct {
			Rows []json.RawMessage `json:"rows"`
			Next *string           `json:"next"`
		}
		out := mustRun(t, a...)
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("search output is not JSON: %v\n%s", err, out)
		}
		if len(page.Rows) > n {
			t.Fatalf("page of %d rows, asked for %d", len(page.Rows), n)
		}
		var lines []string
		for _, r := range page.Rows {
			lines = append(lines, string(r))
		}
		all = append(all, jsonRecords(t, strings.Join(lines, "\n"))...)
		if page.Next == nil {
			return all, pages
		}
		if len(page.Rows) != n {
			t.Fatalf("a page of %d rows (not full) has a next cursor", len(page.Rows))
		}
		after = *page.Next
	}
}

// TestSearchMatchesViews: search returns what SQL on queries_readable selects, newest first,
// every row once across pages; the table for people has readable names and times.
func TestSearchMatchesViews(t *testing.T) {
	t.Parallel()
	db := loggedFile(t)
	for _, c := range []struct {
		args  []string
		where string
	}{
		{nil, `1`},
		{[]string{"--name", "example.org"}, `qname = 'example.org.' OR qname LIKE '%.example.org.'`},
		{[]string{"--name", "www.example.org", "--type", "A"}, `qname = 'www.example.org.' AND qtype = 'A'`},
		{[]string{"--client", "127.0.0.0/30", "--rcode", "NXDOMAIN"}, `client_ip IN ('127.0.0.2', '127.0.0.3') AND rcode = 'NXDOMAIN'`},
		{[]string{"--slower-than", "0.1s", "--since", "30m"}, `duration_us > 100000`},
		{[]string{"--name", "nothing.invalid"}, `0`},
	} {
		want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable WHERE `+c.where+` ORDER BY id DESC`)
		for _, n := range []int{1, 4, 100} {
			got, pages := searchPages(t, n, append([]string{"--db", db}, c.args...)...)
			checkSame(t, fmt.Sprintf("search %s, -n %d", strings.Join(c.args, " "), n), got, want)
			if wantPages := max(1, (len(want)+n-1)/n); pages != wantPages && pages != wantPages+1 {
				t.Errorf("search %s -n %d: %d pages for %d rows", c.args, n, pages, len(want))
			}
		}
	}

	out := mustRun(t, "search", "--db", db, "--name", "example.net", "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], "next page: --after ") {
		t.Fatalf("search table: header, 2 rows, next page line; got\n%s", out)
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	if strings.Join(head, " ") != strings.Join(tableColumns, " ") {
		t.Errorf("header %q, want %q", head, tableColumns)
	}
	want := strs(t, db, `SELECT time, client_ip, proto, qtype, rcode, size FROM queries_readable WHERE qname = 'x.example.net.' ORDER BY id DESC LIMIT 1`)[0]
	if got := []string{row[0], row[1], row[2], row[3], row[4], row[5]}; strings.Join(got, " ") != strings.Join(want, " ") || row[len(row)-1] != "x.example.net." {
		t.Errorf("table row %q, want it to begin %q and end with the name", row, want)
	}
	if _, err := time.Parse(time.RFC3339, row[0]); err != nil {
		t.Errorf("time %q is not RFC 3339: %v", row[0], err)
	}
	if out := mustRun(t, "search", "--db", db, "--name", "nothing.invalid"); out != "no rows match\n" {
		t.Errorf("search with no match printed %q", out)
	}
}

// TestSearchSchema1: on a file of schema 1 the cursor carries the ts and rowid of the last row.
func TestSearchSchema1(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "v1.db")
	schema1File(t, db, 500, time.Now().Add(-time.Hour).UnixMilli())
	want := schema1Rows(t, db, `client_ip = '10.0.7.1'`)
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	got, pages := searchPages(t, 1, "--db", db, "--client", "10.0.7.1")
	checkSame(t, "search --client", got, want)
	if pages < 2 {
		t.Errorf("%d pages", pages)
	}
}
