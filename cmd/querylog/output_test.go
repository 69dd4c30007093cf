package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"testing"
)

// oddTexts are texts that need quoting or escaping somewhere.
var oddTexts = []string{"", "plain", "a,b", `say "hi"`, "two\nlines", "cr\rhere", " leading space", "\tleading tab", `\.`, `\`,
	"trailing ", "\u00a0nbsp", "<&>", "\u2028\u2029", "bad \xff utf-8", "\x00\x01\x1f", "ünïcödé", `we\"ird\,name.example.org.`}

// TestCSVLikeEncodingCSV: the CSV appender writes what encoding/csv's Writer writes.
func TestCSVLikeEncodingCSV(t *testing.T) {
	for _, s := range oddTexts {
		var want bytes.Buffer
		w := csv.NewWriter(&want)
		w.Write([]string{s, "x", s})
		w.Flush()
		got := append(appendCSV(append(appendCSV(nil, s), ",x,"...), s), '\n')
		if string(got) != want.String() {
			t.Errorf("%q: got %q, want %q", s, got, want.String())
		}
	}
}

// TestJSONLikeEncodingJSON: the JSON appender writes strings as encoding/json does, but for DEL
// and the C1 controls, which it escapes too, as writeJSON does after encoding/json.
func TestJSONLikeEncodingJSON(t *testing.T) {
	for _, s := range oddTexts {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
	for _, c := range []struct{ s, want string }{
		{"del\x7f", `"del\u007f"`},
		{"csi\u009b2J, nel\u0085, \u0080", `"csi\u009b2J, nel\u0085, \u0080"`},
		{"\u00a0\u00ff\u0100", "\"\u00a0\u00ff\u0100\""}, // not controls: as they are
	} {
		if got := appendJSONString(nil, c.s); string(got) != c.want {
			t.Errorf("%q: got %s, want %s", c.s, got, c.want)
		}
		var buf bytes.Buffer
		if err := writeJSON(&buf, c.s); err != nil || buf.String() != c.want+"\n" {
			t.Errorf("writeJSON(%q): got %s (%v), want %s", c.s, buf.String(), err, c.want)
		}
		var back string
		if err := json.Unmarshal([]byte(c.want), &back); err != nil || back != c.s {
			t.Errorf("%s decodes to %q (%v), want %q", c.want, back, err, c.s)
		}
	}
}

// TestPrintable: texts for people are shown as they are, or quoted (strconv.Quote) when they
// hold anything that does not print or begin with a double quote, so that both never look
// alike and strconv.Unquote gives the stored text back.
func TestPrintable(t *testing.T) {
	for _, c := range []struct{ s, want string }{
		{"www.example.org.", "www.example.org."},
		{`we\"ird\,name.example.org.`, `we\"ird\,name.example.org.`}, // a DNS name's own escapes
		{`evil\.example.org.`, `evil\.example.org.`},
		{"ünïcödé", "ünïcödé"},
		{"a b", "a b"},
		{"", ""},
		{"esc\x1b[31m", `"esc\x1b[31m"`},
		{"bel\a cr\r lf\n tab\t", `"bel\a cr\r lf\n tab\t"`},
		{"del\x7f c1\u009b", `"del\x7f c1\u009b"`},
		{"rlo\u202e nbsp\u00a0", `"rlo\u202e nbsp\u00a0"`},
		{"bad \xff", `"bad \xff"`},
		{`"quoted"`, `"\"quoted\""`},
		{`\x1b`, `\x1b`}, // the text itself: not quoted, so not the escape
	} {
		got := printable(c.s)
		if got != c.want {
			t.Errorf("printable(%q) = %s, want %s", c.s, got, c.want)
		}
		if back, err := strconv.Unquote(got); got != c.s && (err != nil || back != c.s) {
			t.Errorf("printable(%q) = %s unquotes to %q, %v", c.s, got, back, err)
		}
	}
}
