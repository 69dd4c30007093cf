package dnsname

import "testing"

// TestRegisteredDomain: the label left of the public suffix, with the final dot, taken from the
// name as written (a name without its final dot gets one); none for a suffix or the root.
func TestRegisteredDomain(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"www.example.org.":        "example.org.",
		"example.org.":            "example.org.",
		"www.example.org":         "example.org.",
		"a.b.example.co.uk.":      "example.co.uk.",
		"Mail.Example.ORG.":       "Example.ORG.",
		"x.cluster.local.":        "cluster.local.",
		"org.":                    "",
		"co.uk.":                  "",
		".":                       "",
		"":                        "",
		"evil\\.example.org.":     "evil\\.example.org.", // a label "evil.example" under org.
		"a\\.b.www.example.org.":  "example.org.",
		"www.evil\\.example.org.": "evil\\.example.org.",
		"evil\\.com.":             "",
		"a\\032b.example.org.":    "example.org.",
		"host.example.invalid.":   "example.invalid.",
	} {
		if got := RegisteredDomain(name); got != want {
			t.Errorf("RegisteredDomain(%q) = %q, want %q", name, got, want)
		}
	}
}
