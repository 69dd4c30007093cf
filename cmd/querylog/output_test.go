package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
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

// TestJSONLikeEncodingJSON: the JSON appender writes strings as encoding/json does.
func TestJSONLikeEncodingJSON(t *testing.T) {
	for _, s := range oddTexts {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}
