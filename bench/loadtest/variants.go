package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// variant is one Corefile the harness runs: none (no logging), log (the log plugin writing to
// stdout), dnstap (the dnstap plugin sending full messages to golang-dnstap's receiver on a
// unix socket), or a querylog block: querylog itself, or a variant named with -variant, whose
// options follow -querylog-options in the block.
type variant struct {
	Name     string
	Querylog bool
	Options  string // the querylog block's extra lines, ';'-separated
}

// defaultVariants is what compare runs without -variant or -variants.
const defaultVariants = "none,querylog,log,dnstap"

var variantNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// namedVariants is the repeatable -variant NAME=OPTIONS flag.
type namedVariants []variant

func (n *namedVariants) String() string {
	var parts []string
	for _, v := range *n {
		parts = append(parts, v.Name+"="+v.Options)
	}
	return strings.Join(parts, " ")
}

func (n *namedVariants) Set(s string) error {
	name, opts, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	switch {
	case !ok:
		return errors.New("want NAME=OPTIONS")
	case !variantNameRE.MatchString(name):
		return fmt.Errorf("name %q: letters, digits, '.', '_' and '-' only", name)
	case slices.Contains(strings.Split(defaultVariants, ","), name):
		return fmt.Errorf("%q is a built-in variant", name)
	case n.find(name) != nil:
		return fmt.Errorf("%q given twice", name)
	}
	*n = append(*n, variant{Name: name, Querylog: true, Options: opts})
	return nil
}

func (n namedVariants) find(name string) *variant {
	for i := range n {
		if n[i].Name == name {
			return &n[i]
		}
	}
	return nil
}

// resolveVariants sets c.variants: for rate and max the querylog variant alone; for compare the
// list of -variants in its order, by default none,querylog,log,dnstap, or querylog and the -variant
// ones when there are any.
func (c *config) resolveVariants() error {
	querylog := variant{Name: "querylog", Querylog: true, Options: c.qlOptions}
	if c.scenario != "compare" {
		if len(c.named) > 0 || c.variantList != "" {
			return errors.New("-variant and -variants are for -scenario compare")
		}
		c.variants = []variant{querylog}
		return nil
	}
	list := c.variantList
	if list == "" {
		list = defaultVariants
		if len(c.named) > 0 {
			list = "querylog"
			for _, v := range c.named {
				list += "," + v.Name
			}
		}
	}
	c.variants = nil
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		var v variant
		switch name {
		case "none", "log", "dnstap":
			v = variant{Name: name}
		case "querylog":
			v = querylog
		default:
			named := c.named.find(name)
			if named == nil {
				return fmt.Errorf("-variants: %q is neither none, querylog, log, dnstap nor a -variant NAME", name)
			}
			v = *named
			v.Options = joinOptions(c.qlOptions, named.Options)
		}
		if slices.ContainsFunc(c.variants, func(o variant) bool { return o.Name == name }) {
			return fmt.Errorf("-variants: %q listed twice", name)
		}
		c.variants = append(c.variants, v)
	}
	for _, v := range c.named {
		if !slices.ContainsFunc(c.variants, func(o variant) bool { return o.Name == v.Name }) {
			return fmt.Errorf("-variant %s is not in -variants %s", v.Name, list)
		}
	}
	return nil
}

// joinOptions joins ';'-separated option lists, skipping empty ones.
func joinOptions(lists ...string) string {
	var parts []string
	for _, l := range lists {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// variantNames lists the names of vs, in order.
func variantNames(vs []variant) []string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return names
}
