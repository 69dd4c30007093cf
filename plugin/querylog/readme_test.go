package querylog

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// exampleRe finds the Corefile examples of the README and the querylog block in each.
var (
	exampleRe       = regexp.MustCompile("(?s)~~~ corefile\n(.*?)~~~")
	querylogBlockRe = regexp.MustCompile(`(?s)\n(\s*querylog\b[^\n{]*(?:\{.*?\n\s*\})?)`)
)

// TestREADMEExamples parses the querylog block of every Corefile example in the README, with
// its folders (/var/lib/coredns, /etc/coredns) made in a temporary folder, so that an example
// an operator copies is accepted as written.
func TestREADMEExamples(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := exampleRe.FindAllStringSubmatch(string(b), -1)
	if len(examples) < 4 {
		t.Fatalf("found %d Corefile examples in README.md, want at least 4", len(examples))
	}
	for i, ex := range examples {
		block := querylogBlockRe.FindStringSubmatch(ex[1])
		if block == nil {
			t.Errorf("example %d has no querylog block:\n%s", i+1, ex[1])
			continue
		}
		dir := t.TempDir()
		for _, d := range []string{"var/lib/coredns", "etc/coredns"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "etc/coredns/clickhouse.password"), []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		input := strings.NewReplacer("/var/lib/coredns", filepath.Join(dir, "var/lib/coredns"),
			"/etc/coredns", filepath.Join(dir, "etc/coredns")).Replace(block[1])
		if _, _, err := parse(caddy.NewTestController("dns", input)); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, input)
		}
	}
}
