package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// singleDashWordRe finds a flag of more than one letter spelled with one dash (-db, -slower-than)
// where a flag can begin: after a space, a bracket or a backquote.
var singleDashWordRe = regexp.MustCompile("(?:^|[\\s\\[(`])-([a-z][a-z-]+)")

// TestHelpSpellsFlagsOneWay: querylog -h, every command's -h and the flag errors spell a flag of
// a word with two dashes (--db), as the README does, and a flag of a letter with one (-n).
func TestHelpSpellsFlagsOneWay(t *testing.T) {
	helps := map[string]string{"querylog -h": mustRun(t, "-h")}
	for name := range commands {
		out := mustRun(t, name, "-h")
		helps["querylog "+name+" -h"] = out
		if !strings.Contains(out, "\n  --db PATH\n") || !strings.Contains(out, "\n  --timeout duration\n") {
			t.Errorf("querylog %s -h does not list --db and --timeout:\n%s", name, out)
		}
		for _, bad := range [][]string{{"--nope"}, {"--db"}, {"--json=maybe"}} {
			_, errOut, _ := querylogCmd(t, append([]string{name}, bad...)...)
			helps["querylog "+name+" "+bad[0]] = errOut
		}
	}
	if out := helps["querylog tail -h"]; !strings.Contains(out, "\n  -f\tfollow") || !strings.Contains(out, "\n  -n int\n") {
		t.Errorf("querylog tail -h: want -f and -n with one dash:\n%s", out)
	}
	for what, text := range helps {
		for _, m := range singleDashWordRe.FindAllStringSubmatch(text, -1) {
			t.Errorf("%s spells a flag -%s; want --%s:\n%s", what, m[1], m[1], text)
		}
	}
}

// TestDocsSpellFlagsOneWay: the querylog command lines of the READMEs and docs spell a flag of a
// word with two dashes, as the help does.
func TestDocsSpellFlagsOneWay(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append(docs, "../../README.md", "../../plugin/querylog/README.md", "../../deploy/README.md")
	commandRe := regexp.MustCompile("querylog (?:tail|top|new|retries|searchpath|search|export|stats|version)\\b[^`\\n]*")
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range commandRe.FindAllString(string(b), -1) {
			for _, m := range singleDashWordRe.FindAllStringSubmatch(line, -1) {
				t.Errorf("%s: %q spells a flag -%s; want --%s", doc, line, m[1], m[1])
			}
		}
	}
}

// TestDocsShowUsage: the querylog -h of docs/command.md is the command's.
func TestDocsShowUsage(t *testing.T) {
	b, err := os.ReadFile("../../docs/command.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "$ ./querylog -h\n")
	shown, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("docs/command.md shows no querylog -h in a code block")
	}
	if got := mustRun(t, "-h"); shown != got {
		t.Errorf("docs/command.md shows a querylog -h that is not the command's; it prints:\n%s", got)
	}
}
