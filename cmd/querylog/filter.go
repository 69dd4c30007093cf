package main

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"modernc.org/sqlite"

	"github.com/querylog/querylog/internal/dnsname"
)

// filter selects rows: the flags of search, export and tail.
type filter struct {
	name         string // a name, fully qualified and lower-cased; its subdomains match too
	client       string // an address, a network (CIDR) or an anon- pseudonym, as given
	rcode, qtype string
	pods         podMatch
	slower       durationFlag
	since, until timeFlag
}

func (f *filter) flags(fs flagSet, times bool) {
	fs.StringVar(&f.name, "name", "", "the name `SUFFIX` and every name under it")
	fs.StringVar(&f.client, "client", "", "client `IP`, CIDR network, or anon- pseudonym")
	fs.StringVar(&f.rcode, "rcode", "", "response code `NAME` (NXDOMAIN) or number")
	fs.StringVar(&f.qtype, "type", "", "query `TYPE` (AAAA) or number")
	f.pods.flags(fs)
	fs.Var(&f.slower, "slower-than", "answered in more than this `DURATION`")
	if times {
		fs.Var(&f.since, "since", "rows that arrived at or after `T`: a duration ago (30m, 1h, 30d) or an RFC 3339 time")
		fs.Var(&f.until, "until", "rows that arrived before `T`")
	}
}

// lateMargin is how much later than its arrival a row is looked for by --until. A row's id
// carries the newest arrival of its batch (plugin/querylog/writestate.go), so a row is written "late"
// by the spread of its batch: the replies answered together (a slow reply among fast ones; at
// most the flush interval, 5 s when idle), more after a storage outage at a low query rate, or
// a clock stepped back. --until T reads ids up to T plus this margin.
const lateMargin = time.Minute

// where is a filter made into SQL conditions on the log table (l) and on a table of schema 1
// (q). The log's conditions on id are kept apart, as one range [lo, hi): SQLite searches the
// primary key by one lower and one upper bound, and given two (--until and a cursor) it may
// take the looser one and scan the rows between.
type where struct {
	lo, hi  int64     // ids of the log: lo <= id < hi
	name    string    // log rows: this name or a name under it
	client  *client   // log rows: this client
	pods    *podMatch // log rows: of these pods
	log, v1 []string
	logArgs []any
	v1Args  []any
}

func newWhere() *where { return &where{hi: math.MaxInt64} }

func (w *where) add(logCond string, logArgs []any, v1Cond string, v1Args ...any) {
	if logCond != "" {
		w.log = append(w.log, logCond)
		w.logArgs = append(w.logArgs, logArgs...)
	}
	if v1Cond != "" {
		w.v1 = append(w.v1, v1Cond)
		w.v1Args = append(w.v1Args, v1Args...)
	}
}

// ids narrows the range of log ids to [lo, hi).
func (w *where) ids(lo, hi int64) {
	w.lo, w.hi = max(w.lo, lo), min(w.hi, hi)
}

// logQuery is a rowQuery of the log rows w selects with ids in [lo, hi) too.
func (w *where) logQuery(lo, hi int64) rowQuery {
	return rowQuery{lo: max(w.lo, lo), hi: min(w.hi, hi), conds: slices.Clip(w.log), args: slices.Clip(w.logArgs), name: w.name, client: w.client, pods: w.pods}
}

// v1Query is a rowQuery of the rows of schema 1 w selects.
func (w *where) v1Query() rowQuery {
	return rowQuery{conds: slices.Clip(w.v1), args: slices.Clip(w.v1Args)}
}

func conj(conds []string) string {
	if len(conds) == 0 {
		return "1"
	}
	return strings.Join(conds, " AND ")
}

// openFiltered opens the database c names and turns f into its where clause, which depends on
// the database (its schema and dictionaries). The caller closes the database.
func openFiltered(ctx context.Context, c common, f *filter) (*database, *where, error) {
	d, err := c.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	w, err := f.sql(d)
	if err != nil {
		d.close()
		return nil, nil, err
	}
	return d, w, nil
}

// sql makes the filter into conditions, each pushed down to what SQLite can use: time bounds
// become bounds on the log's id (its primary key, which carries the arrival time) and on ts of
// schema 1 (indexed). Names and clients of log rows, mostly numbers in a dictionary, are matched
// by logRows.
func (f *filter) sql(d *database) (*where, error) {
	w := newWhere()
	if f.since.set() {
		ms := f.since.t.UnixMilli()
		w.ids(ms<<8, math.MaxInt64)
		w.add(`(l.id >> 8) - l.late >= ?`, []any{ms}, `q.ts >= ?`, ms)
	}
	if f.until.set() {
		ms := f.until.t.UnixMilli()
		w.ids(0, (ms+lateMargin.Milliseconds())<<8)
		w.add(`(l.id >> 8) - l.late < ?`, []any{ms}, `q.ts < ?`, ms)
	}
	if f.name != "" {
		name := dns.CanonicalName(f.name)
		if _, ok := dns.IsDomainName(name); !ok {
			return nil, usageError("--name %q is not a domain name", f.name)
		}
		if name != "." {
			// Log rows mostly hold a dictionary number: their names are matched as they are
			// read (logRows), the dictionary being read a block at a time. Matching the whole
			// dictionary first would cost as much for the first page as for a full scan.
			w.name = name
			cond, args := nameCond("q.qname", name)
			w.add("", nil, cond, args...)
		}
	}
	if f.client != "" {
		c, err := parseClient(f.client)
		if err != nil {
			return nil, err
		}
		// Log rows: matched like names (logRows).
		w.client = &c
		if c.exact != "" {
			w.add("", nil, `q.client_ip = ?`, c.exact)
		} else {
			w.add("", nil, `querylog_in_prefix(q.client_ip, ?)`, c.prefix.String())
		}
	}
	if f.rcode != "" {
		code, err := parseCode(f.rcode, "--rcode", d.rcodes, "RCODE")
		if err != nil {
			return nil, err
		}
		w.add(`(l.a >> 23) & 4095 = ?`, []any{code}, `q.rcode = ?`, code)
	}
	if f.qtype != "" {
		code, err := parseCode(f.qtype, "--type", d.qtypes, "TYPE")
		if err != nil {
			return nil, err
		}
		w.add(`l.a & 65535 = ?`, []any{code}, `q.qtype = ?`, code)
	}
	if f.pods.set() {
		if err := f.pods.check(d); err != nil {
			return nil, err
		}
		// Log rows: by the pods dictionary (logScan.read); rows of schema 1 have no pod.
		w.pods = &f.pods
		w.add("", nil, `0`)
	}
	if f.slower.d > 0 {
		us := f.slower.d.Microseconds()
		w.add(`l.c >> 24 > ?`, []any{us}, `q.duration_us > ?`, us)
	}
	return w, nil
}

// podMatch is a --namespace and --pod filter: the clients of a Kubernetes namespace, a pod of
// it, or pods of a name in any namespace.
type podMatch struct {
	namespace, pod string
}

func (m *podMatch) flags(fs flagSet) {
	fs.StringVar(&m.namespace, "namespace", "", "clients in Kubernetes namespace `NS` (the kubernetes plugin's client metadata)")
	fs.StringVar(&m.pod, "pod", "", "clients that are the pod `NAME` (of any namespace, or of --namespace)")
}

func (m *podMatch) set() bool { return m.namespace != "" || m.pod != "" }

// option names the flags given, with their values, for messages.
func (m *podMatch) option() string {
	var opts []string
	if m.namespace != "" {
		opts = append(opts, fmt.Sprintf("--namespace %q", m.namespace))
	}
	if m.pod != "" {
		opts = append(opts, fmt.Sprintf("--pod %q", m.pod))
	}
	return strings.Join(opts, " ")
}

// check refuses a file whose schema has no pods: no row of it can match, and an operator who
// gets nothing should know why. A file of schema 3 whose log has no pod column yet (added with
// the first row that has a pod or a cache status) has no matching row so far, and may get
// some: tail -f waits for them.
func (m *podMatch) check(d *database) error {
	if !d.pods {
		return usageError("%s: %s is of schema %d, whose rows do not say their client's namespace and pod (schema 3 does: a server of this version upgrades the file)",
			m.option(), d.path, d.schema)
	}
	return nil
}

// cond is the SQL condition on log rows l of d: their pod is in the pods dictionary with this
// namespace and name, whichever epoch gave it its number. The subquery is read once per
// statement (the dictionary holds one entry per pod and epoch), never once per row.
func (m *podMatch) cond(d *database) (string, []any) {
	if !d.cluster {
		return `0`, nil
	}
	var conds []string
	var args []any
	if m.namespace != "" {
		conds, args = append(conds, `namespace = ?`), append(args, m.namespace)
	}
	if m.pod != "" {
		conds, args = append(conds, `name = ?`), append(args, m.pod)
	}
	return `l.pod IN (SELECT id FROM pods WHERE ` + conj(conds) + `)`, args
}

// nameCond is an SQL condition that col is zone or a name under it, on label boundaries
// (dnsname.InZone): the suffix, which SQLite compares fast, then querylog_in_zone on the few
// texts that end with it, since a dot there may be escaped (evil\.example.org. is not under
// example.org.).
func nameCond(col, zone string) (string, []any) {
	return `(` + col + ` = ? OR (substr(` + col + `, ?) = ? AND querylog_in_zone(` + col + `, ?)))`,
		[]any{zone, -len(zone) - 1, "." + zone, zone}
}

// client is a --client filter: an exact text (an address as stored, or an anon- pseudonym), or
// a network.
type client struct {
	exact  string
	prefix netip.Prefix
}

// match reports whether a client as stored is c.
func (c *client) match(text string) bool {
	if c.exact != "" {
		return text == c.exact
	}
	a, err := netip.ParseAddr(text)
	return err == nil && c.prefix.Contains(a.Unmap())
}

// parseClient reads --client the way the plugin stores clients: IPv4-mapped addresses as IPv4,
// without zone.
func parseClient(s string) (client, error) {
	if strings.HasPrefix(s, "anon-") {
		return client{exact: s}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return client{}, usageError("--client %q: %v", s, err)
		}
		if a := p.Addr(); a.Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return client{}, usageError("--client %q: an IPv4-mapped network needs at least 96 bits", s)
			}
			p = netip.PrefixFrom(a.Unmap(), bits)
		}
		return client{prefix: p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return client{}, usageError("--client %q is neither an address, a network (CIDR) nor an anon- pseudonym", s)
	}
	return client{exact: a.WithZone("").Unmap().String()}, nil
}

// parseCode reads a type or rcode given by name (as the database's name table has it, in any
// case, or miekg/dns's) or number; prefix is the name of an unnamed code (TYPE65, RCODE23).
func parseCode(s, flagName string, names map[int64]string, prefix string) (int64, error) {
	up := strings.ToUpper(s)
	for code, name := range names {
		if strings.ToUpper(name) == up {
			return code, nil
		}
	}
	if prefix == "TYPE" {
		if t, ok := dns.StringToType[up]; ok {
			return int64(t), nil
		}
	} else if r, ok := dns.StringToRcode[up]; ok {
		return int64(r), nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(up, prefix), 10, 16)
	if err != nil || (prefix == "RCODE" && n > 4095) {
		return 0, usageError("%s %q: unknown name, and not a number", flagName, s)
	}
	return int64(n), nil
}

// querylog_in_prefix(addr, prefix) tells whether the address text addr lies in the network
// prefix: SQLite has no address type. The prefix is parsed once per distinct text.
// It is registered on this command's own driver (sqliteDriver), not on every connection of the
// process.
func init() {
	var mu sync.Mutex
	prefixes := map[string]netip.Prefix{}
	err := sqliteDriver.RegisterDeterministicScalarFunction("querylog_in_prefix", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		addr, ok1 := args[0].(string)
		ptext, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return int64(0), nil
		}
		mu.Lock()
		p, ok := prefixes[ptext]
		if !ok {
			p, _ = netip.ParsePrefix(ptext)
			prefixes[ptext] = p
		}
		mu.Unlock()
		a, err := netip.ParseAddr(addr)
		if err != nil || !p.IsValid() {
			return int64(0), nil
		}
		if p.Contains(a.Unmap()) {
			return int64(1), nil
		}
		return int64(0), nil
	})
	if err != nil {
		panic(err)
	}
}

// querylog_in_zone(name, zone) tells whether the name text is zone or under it, on label
// boundaries (nameCond).
func init() {
	err := sqliteDriver.RegisterDeterministicScalarFunction("querylog_in_zone", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		name, ok1 := args[0].(string)
		zone, ok2 := args[1].(string)
		if ok1 && ok2 && dnsname.InZone(name, zone) {
			return int64(1), nil
		}
		return int64(0), nil
	})
	if err != nil {
		panic(err)
	}
}
