package dnsname

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestInZone: the cases of issue 19 (an escaped dot is no boundary), by hand.
func TestInZone(t *testing.T) {
	for _, c := range []struct {
		name, zone string
		want       bool
	}{
		{"example.org.", "example.org.", true},
		{"www.example.org.", "example.org.", true},
		{`evil\.example.org.`, "example.org.", false},
		{`a\\.example.org.`, "example.org.", true},   // the label a\, then example.org.
		{`a\\\.example.org.`, "example.org.", false}, // a\ and an escaped dot: one label
		{`evil\046example.org.`, "example.org.", false},
		{"notexample.org.", "example.org.", false},
		{"org.", "example.org.", false},
		{"anything.", ".", true},
	} {
		if got := InZone(c.name, c.zone); got != c.want {
			t.Errorf("InZone(%q, %q) = %v, want %v", c.name, c.zone, got, c.want)
		}
	}
}

// escapedNames are the names of up to three labels made of labels with escapes.
func escapedNames() []string {
	labels := []string{"a", "org", `a\.b`, `a\\`, `\\`, `\.`, `\\\.`, `\046`, "b", `x\ y`}
	var names []string
	var build func(prefix []string, depth int)
	build = func(prefix []string, depth int) {
		names = append(names, strings.Join(prefix, ".")+".")
		if depth == 0 {
			return
		}
		for _, l := range labels {
			build(append([]string{l}, prefix...), depth-1)
		}
	}
	for _, l := range labels {
		build([]string{l}, 2)
	}
	return names
}

// TestInZoneLikeIsSubDomain: InZone decides as dns.IsSubDomain (plugin.Zones.Matches, the
// plugin's ignore) on every pair of names made of labels with escapes.
func TestInZoneLikeIsSubDomain(t *testing.T) {
	names := escapedNames()
	for _, name := range names {
		for _, zone := range names {
			if got, want := InZone(name, zone), dns.IsSubDomain(zone, name); got != want {
				t.Fatalf("InZone(%q, %q) = %v, dns.IsSubDomain says %v", name, zone, got, want)
			}
		}
	}
	t.Logf("%d names, every pair", len(names))
}

// TestParentLikeSplit: Parent drops the first label as dns.Split counts labels, escapes and
// all, on every name of escapedNames; a name of one label has none.
func TestParentLikeSplit(t *testing.T) {
	for _, name := range escapedNames() {
		want := ""
		if starts := dns.Split(name); len(starts) > 1 {
			want = name[starts[1]:]
		}
		if got := Parent(name); got != want {
			t.Fatalf("Parent(%q) = %q, want %q", name, got, want)
		}
	}
	if got := Parent("org"); got != "" {
		t.Errorf("Parent(%q) = %q, want none", "org", got)
	}
}
