package querylog

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/dustin/go-humanize"
)

// Value parsers for the Corefile options; each error names the option and the value.

func intIn(c *caddy.Controller, name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, c.Errf("%s: invalid value %q: must be an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func durationIn(c *caddy.Controller, name, v string, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > hi {
		return 0, c.Errf("%s: invalid duration %q: must be positive and at most %s", name, v, hi)
	}
	return d, nil
}

// parseRetention accepts Go durations, whole days ("30d") and 0 (keep everything).
func parseRetention(c *caddy.Controller, v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > 100*365 {
			err = strconv.ErrRange
		}
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d < time.Minute {
		return 0, c.Errf("retention: invalid value %q: must be 0, a duration of at least 1m, or days such as 30d", v)
	}
	return d, nil
}

// parseSize accepts byte counts with units: 500MB (10^6), 2GiB (2^30), 1048576.
func parseSize(c *caddy.Controller, name, v string, lo uint64) (int64, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil || n < lo || n > 1<<50 {
		return 0, c.Errf("%s: invalid size %q: must be at least %s, e.g. 500MB or 2GiB", name, v, humanize.IBytes(lo))
	}
	return int64(n), nil
}

// parseMinFree accepts a size (100MB) or a share of the filesystem (1%); 0 turns the guard off.
func parseMinFree(c *caddy.Controller, v string) (bytes int64, percent float64, err error) {
	if v == "0" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		percent, err = strconv.ParseFloat(p, 64)
		if err != nil || percent <= 0 || percent >= 100 {
			return 0, 0, c.Errf("min_free: invalid value %q: a percentage must lie between 0 and 100", v)
		}
		return 0, percent, nil
	}
	bytes, err = parseSize(c, "min_free", v, 1)
	return bytes, 0, err
}

// parseAnonymize reads `anonymize [V4BITS [V6BITS]]` or `anonymize hash [KEYFILE]`.
func parseAnonymize(c *caddy.Controller, f *filter, args []string) error {
	if len(args) > 0 && args[0] == "hash" {
		if len(args) > 2 {
			return c.Errf("anonymize hash takes at most one KEYFILE, got %q", strings.Join(args[1:], " "))
		}
		f.hash = true
		if len(args) == 2 {
			f.keyFile = args[1]
		}
		return nil
	}
	if len(args) > 2 {
		return c.Errf("anonymize takes at most V4BITS V6BITS, got %q", strings.Join(args, " "))
	}
	f.anonV4, f.anonV6 = 24, 56
	var err error
	if len(args) > 0 {
		if f.anonV4, err = intIn(c, "anonymize V4BITS", args[0], 1, 32); err != nil {
			return err
		}
	}
	if len(args) > 1 {
		if f.anonV6, err = intIn(c, "anonymize V6BITS", args[1], 1, 128); err != nil {
			return err
		}
	}
	return nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(v string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
