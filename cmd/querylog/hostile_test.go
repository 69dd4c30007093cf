package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/querylog/querylog/internal/testutil"
)

// hostileSQL is an SQL expression of a text a tampered file may hold: terminal escapes (a title
// change ending in BEL, a screen clear), a lone CR, a line break and a forged line, a
// right-to-left override, DEL and a byte that is not UTF-8. No CR LF pair: encoding/csv's reader
// (not the command) reads it as LF.
const hostileSQL = `(char(27) || ']0;owned' || char(7) || char(13) || 'x' || char(10) || 'FAKE LINE' || char(27) || '[2J' || char(8238) || char(127) || CAST(x'ff' AS TEXT))`

// TestHostileTexts: texts of a tampered file reach no terminal raw. Every table for people
// (tail, search, top, stats) prints only printable characters and line ends, one line per row,
// and shows such a text quoted as strconv.Quote does, so strconv.Unquote gives back the stored
// bytes; a client beginning with a double quote is quoted too, so quoted and plain texts never
// look alike. CSV and JSON stay exact (JSON gives U+FFFD for the byte that is not UTF-8, as
// encoding/json does) and valid, JSON with every control character escaped.
func TestHostileTexts(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "answers")
	s.send(t, mix)
	s.stop()
	testutil.Exec(t, db, `UPDATE names SET name = `+hostileSQL+` || name;
		UPDATE log SET name = `+hostileSQL+` || name WHERE typeof(name) = 'text';
		UPDATE name_firsts SET name = `+hostileSQL+` || name;
		UPDATE domains_seen SET domain = `+hostileSQL+` || domain;
		UPDATE clients SET addr = '"' || addr || `+hostileSQL+`;
		UPDATE log SET client = '"' || client || `+hostileSQL+` WHERE typeof(client) = 'text';
		UPDATE labels SET text = text || `+hostileSQL+`;
		UPDATE log SET answer_data = `+hostileSQL+` || coalesce(answer_data, '');
		UPDATE rollup_names SET name = `+hostileSQL+` || name;
		UPDATE rollup_clients SET client = '"' || client || `+hostileSQL+`;
		UPDATE qtype_names SET name = name || char(7);
		UPDATE rcode_names SET name = name || char(27) || '[31m'`)
	want := strs(t, db, `SELECT `+readableColumns+` FROM queries_readable ORDER BY id`)
	if len(want) != len(mix) || !strings.Contains(want[0][6], "\x1b]0;owned") || !strings.HasPrefix(want[0][4], `"`) {
		t.Fatalf("the tampered file has %d rows, the first %q", len(want), want[0])
	}
	qname := exportColumns[6]

	// Tables for people.
	tailOut := mustRun(t, "tail", "--db", db, "-n", "100")
	searchOut := mustRun(t, "search", "--db", db, "-n", "100")
	for what, out := range map[string]string{"tail": tailOut, "search": searchOut} {
		checkPrintable(t, what, out)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want)+1 {
			t.Fatalf("%s: %d lines for %d rows:\n%s", what, len(lines), len(want), out)
		}
		for i, line := range lines[1:] {
			j := i // tail: oldest first
			if what == "search" {
				j = len(want) - 1 - i
			}
			shown := line[strings.LastIndex(line, `  "`)+2:]
			if got, err := strconv.Unquote(shown); err != nil || got != want[j][6] {
				t.Errorf("%s: line %d shows %s %s, which unquotes to %q (%v), stored %q", what, i+1, qname, shown, got, err, want[j][6])
			}
		}
	}
	if !strings.Contains(tailOut, `"\"127.0.0.2\x1b]0;owned\a\rx\nFAKE LINE\x1b[2J\u202e\x7f\xff"`) {
		t.Errorf("tail: no client quoted as expected:\n%s", tailOut)
	}
	for _, what := range []string{"domains", "clients", "types", "rcodes"} {
		out := mustRun(t, "top", what, "--db", db)
		checkPrintable(t, "top "+what, out)
		if !strings.Contains(out, `\x1b`) && !strings.Contains(out, `\a`) {
			t.Errorf("top %s shows no escaped text:\n%s", what, out)
		}
	}
	checkPrintable(t, "stats", mustRun(t, "stats", "--db", db))
	checkPrintable(t, "top upstreams", mustRun(t, "top", "upstreams", "--db", db))
	newOut := mustRun(t, "new", "--db", db, "-n", "100")
	checkPrintable(t, "new", newOut)
	if !strings.Contains(newOut, `\x1b]0;owned\a\rx\nFAKE LINE`) {
		t.Errorf("new shows no escaped name:\n%s", newOut)
	}

	// Data for machines: exact, and valid.
	checkSame(t, "export csv", csvRecords(t, mustRun(t, "export", "--db", db))[1:], nullsAs(want, ""))
	wantJSON := make([][]string, len(want))
	for i, r := range want {
		wantJSON[i] = make([]string, len(r))
		for j, v := range r {
			wantJSON[i][j] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	checkSame(t, "export jsonl", jsonRecords(t, mustRun(t, "export", "--db", db, "--json")), wantJSON)
	checkSame(t, "tail --json", jsonRecords(t, mustRun(t, "tail", "--db", db, "--json", "-n", "100")), wantJSON)
	got, _ := searchPages(t, 7, "--db", db)
	for i := range got {
		j := len(got) - 1 - i
		if j >= 0 && j < len(wantJSON) && strings.Join(got[i], "|") != strings.Join(wantJSON[j], "|") {
			t.Errorf("search --json: row %d\n got %q\nwant %q", i, got[i], wantJSON[j])
			break
		}
	}
	for _, args := range [][]string{{"export", "--json"}, {"tail", "--json", "-n", "100"}, {"search", "--json", "-n", "100"},
		{"top", "domains", "--json"}, {"top", "clients", "--json"}, {"top", "types", "--json"}, {"top", "upstreams", "--json"},
		{"new", "--json"}, {"stats", "--json"}} {
		out := mustRun(t, append(args, "--db", db)...)
		for i, r := range out {
			if r != '\n' && unicode.IsControl(r) {
				t.Errorf("%s: %U at byte %d of the output", strings.Join(args, " "), r, i)
				break
			}
		}
	}
}

// checkPrintable fails the test unless out is UTF-8 of printable characters (strconv.IsPrint:
// no control characters, no U+202E, no DEL) and line ends.
func checkPrintable(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: output is not UTF-8: %q", what, out)
		return
	}
	for i, r := range out {
		if r != '\n' && !strconv.IsPrint(r) {
			t.Errorf("%s: %U at byte %d of the output: %q", what, r, i, out)
			return
		}
	}
}
