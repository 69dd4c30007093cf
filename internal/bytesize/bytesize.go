// Package bytesize reads byte counts as querylog's Corefile options and command flags take
// them.
package bytesize

import (
	"errors"
	"strings"

	"github.com/dustin/go-humanize"
)

// Parse accepts byte counts with units, in either case: K, M, G, T, P with or without B are
// powers of 1000 (500MB and 500mb are 500*10^6, 2G is 2*10^9), Ki, Mi, ... with or without B
// powers of 1024 (2GiB is 2^31); a decimal fraction is allowed (1.5GB is 1,500,000,000) and
// the result rounded down to a byte; no unit is bytes. A comma is refused: humanize would drop
// it, reading 1,5GB as 15GB.
func Parse(v string) (uint64, error) {
	if strings.Contains(v, ",") {
		return 0, errors.New("a comma in a size")
	}
	return humanize.ParseBytes(v)
}
