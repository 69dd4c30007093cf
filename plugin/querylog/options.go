package querylog

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/dustin/go-humanize"

	"github.com/querylog/querylog/internal/bytesize"
)

// options is one querylog directive, validated.
type options struct {
	path            string
	bufferSize      int
	batchSize       int
	flushInterval   time.Duration
	adaptive        bool
	minInterval     time.Duration
	maxInterval     time.Duration
	watermark       int           // percent of bufferSize
	blockFor        time.Duration // 0: drop when full
	shutdownTimeout time.Duration
	retention       time.Duration // 0 keeps everything
	rollupRetention time.Duration // hour and day rollups; 0 keeps them
	rollupLimit     int           // names and clients per rollup period; 0: no rollups
	maxSize         int64         // bytes; 0: no cap
	minFreeBytes    int64         // free space the filesystem must keep, or
	minFreePercent  float64       // the same as a share of the filesystem
	bufferBytes     int64         // byte budget of the buffer (entry.cost)
	answersMax      int           // cap of answer_data per row, in bytes (answers MAXBYTES)
	ship            shipOptions   // ship_options.go; zero: no shipping
}

const (
	defaultPath     = "querylog.db"
	minBufferSize   = 10000
	maxBufferSize   = 200000
	maxBatchSize    = 50000
	maxBlock        = 5 * time.Second
	maxDuration     = time.Hour
	maxShutdownWait = 10 * time.Minute
	maxRetention    = 100 * 365 * 24 * time.Hour
	// defaultRollupLimit keeps a top-domains question over 30 days of rollups, in hours and
	// days, to about 50,000 rows (bench/README.md: 0.11 s).
	defaultRollupLimit = 1000
	minRollupLimit     = 10
	maxRollupLimit     = 100_000
	// min_free as a share: below 0.01% the guard would in effect be off (use 0 for that).
	minFreeMinPercent = 0.01
	minFreeMaxPercent = 99.99
	// defaultBufferBytes fits the default 50,000 entries at 671 bytes each: a query name of 30
	// bytes with answer_data at its default cap of 512 (and a typical entry, about 200 bytes
	// with answers, 100 without, three times over).
	defaultBufferBytes = 32 << 20
	minBufferBytes     = 1_000_000
	maxBufferBytes     = 16 << 30
	defaultAnswersMax  = 512
	minAnswersMax      = 64 // an IPv6 address and the marker of what is left out
	maxAnswersMax      = 65536
	// metadataValueMax caps each metadata value (cutValue).
	metadataValueMax = 256
)

func defaults() options {
	return options{
		path:            defaultPath,
		bufferSize:      50000,
		batchSize:       1000,
		flushInterval:   time.Second,
		adaptive:        true,
		minInterval:     100 * time.Millisecond,
		maxInterval:     5 * time.Second,
		watermark:       80,
		shutdownTimeout: 5 * time.Second,
		retention:       7 * 24 * time.Hour,
		rollupRetention: 400 * 24 * time.Hour,
		rollupLimit:     defaultRollupLimit,
		minFreeBytes:    100_000_000,
		bufferBytes:     defaultBufferBytes,
		answersMax:      defaultAnswersMax,
	}
}

// sameOptions compares the options a writer uses: all but the spelling of the path and the
// answers cap, which is each handler's own, as the answers option is.
func sameOptions(a, b options) bool {
	a.path, a.answersMax = b.path, b.answersMax
	return a == b
}

// parse reads one server block's querylog directive and checks that its database can be used
// (checkPath: it creates and removes a probe file beside the database, and changes nothing
// else). The database is opened in OnStartup.
func parse(c *caddy.Controller) (options, filter, error) {
	o, f, err := parseBlock(c)
	if err != nil {
		return o, f, err
	}
	if f.hash && f.keyFile == "" {
		f.keyFile = o.path + ".key"
	}
	return o, f, nil
}

func parseBlock(c *caddy.Controller) (options, filter, error) {
	o := defaults()
	f := filter{}
	seen := false
	// lines holds the line of the directive ("querylog") and of each option given, so that
	// checks made after the whole block is read point at the line to change.
	lines := map[string]int{}
	for c.Next() {
		if seen {
			return o, f, errAt(c, c.Line(), plugin.ErrOnce)
		}
		seen = true
		lines["querylog"] = c.Line()
		args := c.RemainingArgs()
		switch len(args) {
		case 0:
		case 1:
			o.path = args[0]
		default:
			return o, f, c.Errf("querylog takes at most one PATH, got %q", strings.Join(args, " "))
		}
		for c.NextBlock() {
			name := c.Val()
			if first, ok := lines[name]; ok && !listOptions[name] {
				return o, f, c.Errf("%s is given twice, at %s:%d and %s:%d; keep one", name, c.File(), first, c.File(), c.Line())
			}
			lines[name] = c.Line()
			if err := parseOption(c, &o, &f); err != nil {
				return o, f, err
			}
		}
	}
	// The line of the first of names that was given, else of the directive.
	lineOf := func(names ...string) int {
		for _, n := range names {
			if l, ok := lines[n]; ok {
				return l
			}
		}
		return lines["querylog"]
	}
	if o.adaptive && (o.flushInterval < o.minInterval || o.flushInterval > o.maxInterval) {
		return o, f, errAt(c, lineOf("flush_interval", "adaptive"), fmt.Errorf("flush_interval %s must lie within the adaptive bounds %s..%s (widen them with adaptive MIN MAX, or set adaptive off)", o.flushInterval, o.minInterval, o.maxInterval))
	}
	if o.batchSize > o.bufferSize {
		return o, f, errAt(c, lineOf("batch_size", "buffer_size"), fmt.Errorf("batch_size %d must not exceed buffer_size %d", o.batchSize, o.bufferSize))
	}
	if o.batchSize > o.bufferSize/2 {
		// Accepted (a test may want a buffer that fills without flushing), but under load the
		// buffer then has less room than one batch while a batch is written, and drops.
		log.Warningf("batch_size %d is more than half of buffer_size %d: under load, entries may be dropped while a batch is written", o.batchSize, o.bufferSize)
	}
	if !o.ship.Enabled() && (o.ship.Node != "" || o.ship.passwordFrom != "" || o.ship.caFile != "") {
		return o, f, errAt(c, lineOf("node", "ship_password", "ship_ca"), errors.New("node, ship_password and ship_ca need a ship line"))
	}
	if err := checkShip(c, &o.ship); err != nil {
		return o, f, err
	}
	var err error
	if o.path, err = resolvePath(c, "querylog PATH", o.path); err != nil {
		return o, f, errAt(c, lineOf(), err)
	}
	if err := checkPath(o.path); err != nil {
		return o, f, errAt(c, lineOf(), err)
	}
	if f.keyFile != "" {
		if f.keyFile, err = resolvePath(c, "anonymize hash KEYFILE", f.keyFile); err != nil {
			return o, f, errAt(c, lineOf("anonymize"), err)
		}
		if err := checkKeyFolder(f.keyFile); err != nil {
			return o, f, errAt(c, lineOf("anonymize"), err)
		}
	}
	return o, f, nil
}

// listOptions may be given on several lines, each adding to the list.
var listOptions = map[string]bool{"ignore": true, "ignore_clients": true, "metadata": true}

// blockOptions are the options of a querylog block, for suggestions.
var blockOptions = []string{"buffer_size", "buffer_bytes", "batch_size", "flush_interval", "adaptive", "watermark",
	"on_full", "shutdown_timeout", "retention", "rollup_retention", "rollup_limit", "max_size", "min_free",
	"ship", "node", "ship_password", "ship_ca", "anonymize", "ignore", "ignore_clients", "metadata", "answers"}

// checkKeyFolder checks at parse time, where the error can point at the anonymize line, that
// the key file's folder exists; the key itself is read or created at startup.
func checkKeyFolder(key string) error {
	dir := filepath.Dir(key)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("anonymize hash KEYFILE %q: folder %s does not exist", key, dir)
	case err != nil:
		return fmt.Errorf("anonymize hash KEYFILE %q: folder %s: %w", key, dir, pathErr(err))
	case !fi.IsDir():
		return fmt.Errorf("anonymize hash KEYFILE %q: %s is not a folder", key, dir)
	}
	return nil
}

// errAt is c.Err for a given line of the Corefile, in caddy's format; it wraps err.
func errAt(c *caddy.Controller, line int, err error) error {
	return fmt.Errorf("%s:%d - Error during parsing: %w", c.File(), line, err)
}

// parseOption reads one line of the querylog block, handing it to the parser of its group.
func parseOption(c *caddy.Controller, o *options, f *filter) error {
	name := c.Val()
	args := c.RemainingArgs()
	switch name {
	case "buffer_size", "buffer_bytes", "batch_size", "flush_interval", "adaptive", "watermark", "on_full", "shutdown_timeout":
		return parseBufferOption(c, o, name, args)
	case "retention", "rollup_retention", "rollup_limit", "max_size", "min_free":
		return parseStorageOption(c, o, name, args)
	case "ship", "node", "ship_password", "ship_ca":
		return parseShipOption(c, &o.ship, name, args)
	case "anonymize", "ignore", "ignore_clients":
		return parsePrivacyOption(c, f, name, args)
	case "metadata", "answers":
		return parseRecordedOption(c, o, f, name, args)
	}
	if near := nearest(name, blockOptions); near != "" {
		return c.Errf("unknown property %q (did you mean %s?)", name, near)
	}
	return c.Errf("unknown property %q", name)
}

// wantArgs checks that option name has n arguments.
func wantArgs(c *caddy.Controller, name string, args []string, n int) error {
	if len(args) != n {
		return c.Errf("%s needs %d argument(s), got %d: %q%s", name, n, len(args), strings.Join(args, " "), suggest(name, args))
	}
	return nil
}

// parseBufferOption reads the options of the buffer and of flushing: how much is held in
// memory, how it is written, and what happens when it is full or the server stops.
func parseBufferOption(c *caddy.Controller, o *options, name string, args []string) error {
	var err error
	switch name {
	case "buffer_size":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.bufferSize, err = intIn(c, name, args[0], minBufferSize, maxBufferSize)
		}
	case "buffer_bytes":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.bufferBytes, err = parseSize(c, name, args[0], minBufferBytes, maxBufferBytes)
		}
	case "batch_size":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.batchSize, err = intIn(c, name, args[0], 1, maxBatchSize)
		}
	case "flush_interval":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.flushInterval, err = durationIn(c, name, args[0], maxDuration)
		}
	case "adaptive":
		if len(args) == 1 && args[0] == "off" {
			o.adaptive = false
			return nil
		}
		if len(args) != 2 {
			return c.Errf("adaptive needs MIN MAX or off, got %q", strings.Join(args, " "))
		}
		o.adaptive = true
		if o.minInterval, err = durationIn(c, name, args[0], maxDuration); err != nil {
			return err
		}
		if o.maxInterval, err = durationIn(c, name, args[1], maxDuration); err != nil {
			return err
		}
		if o.minInterval > o.maxInterval {
			return c.Errf("adaptive MIN %s is greater than MAX %s", args[0], args[1])
		}
	case "watermark":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.watermark, err = intIn(c, name, strings.TrimSuffix(args[0], "%"), 1, 99)
			if err != nil {
				err = c.Errf("watermark: invalid value %q: must be a percentage from 1 to 99", args[0])
			}
		}
	case "on_full":
		switch {
		case len(args) == 1 && args[0] == "drop":
			o.blockFor = 0
		case len(args) == 2 && args[0] == "block":
			o.blockFor, err = durationIn(c, "on_full block", args[1], maxBlock)
		default:
			return c.Errf("on_full needs drop or block DURATION, got %q", strings.Join(args, " "))
		}
	case "shutdown_timeout":
		if err = wantArgs(c, name, args, 1); err == nil {
			o.shutdownTimeout, err = durationIn(c, name, args[0], maxShutdownWait)
		}
	}
	return err
}

// parseStorageOption reads the options that bound what the database keeps: retention of rows
// and rollups, the rollups' size, and the caps on the file and on the filesystem's free space.
func parseStorageOption(c *caddy.Controller, o *options, name string, args []string) error {
	if err := wantArgs(c, name, args, 1); err != nil {
		return err
	}
	var err error
	switch name {
	case "retention":
		o.retention, err = parseRetention(c, name, args[0])
	case "rollup_retention":
		o.rollupRetention, err = parseRetention(c, name, args[0])
	case "rollup_limit":
		if args[0] == "0" {
			o.rollupLimit = 0 // no rollups
		} else if o.rollupLimit, err = strconv.Atoi(args[0]); err != nil || o.rollupLimit < minRollupLimit || o.rollupLimit > maxRollupLimit {
			err = c.Errf("%s: invalid value %q: must be 0 (no rollups) or an integer from %d to %d", name, args[0], minRollupLimit, maxRollupLimit)
		}
	case "max_size":
		o.maxSize, err = parseSize(c, name, args[0], 1<<20, 1<<50)
	case "min_free":
		o.minFreeBytes, o.minFreePercent, err = parseMinFree(c, args[0])
	}
	return err
}

// parsePrivacyOption reads the options that decide which replies are logged and how clients
// appear: anonymize, ignore and ignore_clients.
func parsePrivacyOption(c *caddy.Controller, f *filter, name string, args []string) error {
	switch name {
	case "anonymize":
		return parseAnonymize(c, f, args)
	case "ignore":
		if len(args) == 0 {
			return c.Errf("ignore needs at least one NAME")
		}
		f.ignoreNames = append(f.ignoreNames, plugin.OriginsFromArgsOrServerBlock(args, nil)...)
	case "ignore_clients":
		if len(args) == 0 {
			return c.Errf("ignore_clients needs at least one CIDR")
		}
		for _, a := range args {
			p, err := parsePrefix(a)
			if err != nil {
				return c.Errf("ignore_clients: invalid CIDR %q: %v", a, err)
			}
			f.ignoreClients = append(f.ignoreClients, p)
		}
	}
	return nil
}

// parseRecordedOption reads the options that add to each row: metadata labels and answers.
func parseRecordedOption(c *caddy.Controller, o *options, f *filter, name string, args []string) error {
	switch name {
	case "metadata":
		if len(args) == 0 {
			return c.Errf("metadata needs at least one LABEL, e.g. kubernetes/client-label/app")
		}
		for _, a := range args {
			if !metadata.IsLabel(a) {
				return c.Errf("metadata: invalid label %q: must look like plugin/name", a)
			}
			// The client's namespace and pod are logged in columns of their own, always.
			if !slices.Contains(f.metadata, a) && a != namespaceLabel && a != podLabel {
				f.metadata = append(f.metadata, a)
			}
		}
	case "answers":
		switch len(args) {
		case 0:
		case 1:
			n, err := strconv.Atoi(args[0])
			if err != nil || n < minAnswersMax || n > maxAnswersMax {
				return c.Errf("answers: invalid MAXBYTES %q: must be an integer from %d to %d (bytes of answer_data per row)", args[0], minAnswersMax, maxAnswersMax)
			}
			o.answersMax = n
		default:
			return c.Errf("answers takes at most MAXBYTES, got %q", strings.Join(args, " "))
		}
		f.answers = true
	}
	return nil
}

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
	if n, aerr := strconv.Atoi(v); aerr == nil && n > 0 {
		return 0, c.Errf("%s: invalid duration %q: missing unit, e.g. %ds", name, v, n)
	}
	if err != nil || d <= 0 || d > hi {
		return 0, c.Errf("%s: invalid duration %q: must be positive and at most %s", name, v, hi)
	}
	return d, nil
}

// parseRetention accepts Go durations, whole days ("30d") and 0 (keep everything), up to 100
// years.
func parseRetention(c *caddy.Controller, name, v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		if n < 0 || n > int(maxRetention/(24*time.Hour)) { // before multiplying, which could wrap
			err = strconv.ErrRange
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d < time.Minute || d > maxRetention {
		return 0, c.Errf("%s: invalid value %q: must be 0, a duration from 1m, or days such as 30d, up to 36500d%s", name, v, suggest(name, []string{v}))
	}
	return d, nil
}

// durationUnits are the words people write after a number, with what retention accepts
// instead: the unit and the multiplier.
var durationUnits = map[string]struct {
	unit string
	n    int
}{
	"minute": {"m", 1}, "minutes": {"m", 1}, "min": {"m", 1}, "mins": {"m", 1},
	"hour": {"h", 1}, "hours": {"h", 1},
	"day": {"d", 1}, "days": {"d", 1},
	"week": {"d", 7}, "weeks": {"d", 7}, "w": {"d", 7},
	"m": {"m", 1}, "h": {"h", 1}, "d": {"d", 1}, // "7 d"
}

// sizeOptions take a size (parseSize).
var sizeOptions = map[string]bool{"max_size": true, "min_free": true, "buffer_bytes": true}

// suggest returns " (did you mean 7d?)" for a retention written in words, as "7 days" or
// "7days", " (did you mean 2GB?)" for a size written in two words, as "2 GB", and "" otherwise.
func suggest(name string, args []string) string {
	if sizeOptions[name] {
		if len(args) == 2 && decimal(args[0]) {
			if _, err := humanize.ParseBytes(args[0] + args[1]); err == nil && args[1] != "" {
				return fmt.Sprintf(" (did you mean %s%s?)", args[0], args[1])
			}
		}
		return ""
	}
	if name != "retention" && name != "rollup_retention" {
		return ""
	}
	var num, word string
	switch len(args) {
	case 1:
		word = strings.TrimLeft(args[0], "0123456789")
		num = strings.TrimSuffix(args[0], word)
	case 2:
		num, word = args[0], args[1]
	}
	u, ok := durationUnits[strings.ToLower(word)]
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n <= 0 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %d%s?)", n*u.n, u.unit)
}

// parseSize reads a byte count with its units (bytesize.Parse) from lo to hi.
func parseSize(c *caddy.Controller, name, v string, lo, hi uint64) (int64, error) {
	n, err := bytesize.Parse(v)
	if err != nil || n < lo || n > hi {
		return 0, c.Errf("%s: invalid size %q: must be from %s to %s, e.g. 500MB or 2GiB (no comma)", name, v, sizeText(lo), sizeText(hi))
	}
	return int64(n), nil
}

// sizeText writes a bound in the units it was chosen in: 1 MiB, 1 MB.
func sizeText(n uint64) string {
	if n%1024 == 0 {
		return humanize.IBytes(n)
	}
	return humanize.Bytes(n)
}

// nearest returns the name among names closest to s by edit distance, if it is close enough to
// be a typo (at most 2 edits, and fewer than a third of s), else "".
func nearest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD && d*3 < max(len(s), 3) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string alignment) of a and b: the
// insertions, deletions, substitutions and swaps of adjacent bytes that turn a into b.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// parseMinFree accepts a size (100MB) or a share of the filesystem (1%, 2.5%); 0 turns the
// guard off.
func parseMinFree(c *caddy.Controller, v string) (bytes int64, percent float64, err error) {
	if v == "0" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		// Plain decimals only: ParseFloat also takes NaN, Inf, exponents and hex, and a NaN
		// share passes every comparison below unnoticed and turns the guard off.
		if decimal(p) {
			percent, err = strconv.ParseFloat(p, 64)
		}
		if !decimal(p) || err != nil || !(percent >= minFreeMinPercent && percent <= minFreeMaxPercent) {
			return 0, 0, c.Errf("min_free: invalid value %q: a share must be a decimal percentage from %v%% to %v%%, e.g. 1%% or 2.5%%", v, minFreeMinPercent, minFreeMaxPercent)
		}
		return 0, percent, nil
	}
	bytes, err = parseSize(c, "min_free", v, 1, 1<<50)
	return bytes, 0, err
}

// decimal reports whether s is digits with an optional fraction, such as 2 or 2.5.
func decimal(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	digits := func(s string) bool {
		return s != "" && strings.Trim(s, "0123456789") == ""
	}
	return digits(whole) && (!dot || digits(frac))
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

// parsePrefix accepts a CIDR or a single address. An IPv4-mapped prefix (::ffff:10.0.0.0/104)
// becomes the IPv4 prefix (10.0.0.0/8), as clients are matched unmapped. Zones are refused:
// clients are matched without theirs (see clientAddr).
func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "%") {
		return netip.Prefix{}, errors.New("IPv6 zones are not supported: clients are matched without their zone, write the address alone")
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return netip.Prefix{}, errors.New("not an address or CIDR")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix must be at least /96")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
