package dnsname

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// RegisteredDomain is the registered domain of a name, fully qualified (example.org. for
// www.example.org.), or "" if it has none (a public suffix itself, the root, not a name). A
// label with an escape (evil\.example, a label with a dot in it) is in no public suffix: the
// domain is found right of it, or is that label and the suffix right of it.
func RegisteredDomain(name string) string {
	if strings.Contains(name, `\`) {
		from, tail := "", "" // the last label with an escape, on, and what is right of it
		for s := name; s != ""; {
			parent := Parent(s)
			if strings.Contains(s[:len(s)-len(parent)], `\`) {
				from, tail = s, parent
			}
			s = parent
		}
		if tail == "" {
			return "" // a top-level label of its own
		}
		if d := RegisteredDomain(tail); d != "" {
			return d
		}
		return from
	}
	trimmed := strings.TrimSuffix(name, ".")
	d, err := publicsuffix.EffectiveTLDPlusOne(trimmed)
	switch {
	case err != nil || d == "":
		return ""
	case len(trimmed) < len(name): // d is a suffix of trimmed: the name's own bytes, no copy
		return name[len(name)-len(d)-1:]
	}
	return d + "."
}
