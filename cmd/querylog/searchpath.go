package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/searchfold"
)

// searchpath folds the queries of one lookup by a stub resolver with a search list (glibc's
// res_nsearch, as getaddrinfo uses it) back into the name the program asked for, and says what
// the search list cost and what other ndots values would have cost. See docs/command.md.

// maxNdots is the largest ndots searchpath gives a what-if count for.
const maxNdots = searchfold.MaxNdots

// lookupGapMS is the longest time between two queries of one lookup, in ms: glibc asks the next
// name once the reply to the last one came, and gives up on a reply after 5 s (timeout:5).
// Queries of one client that extend each other by a suffix within it teach a suffix too.
const lookupGapMS = 5000

// learnBack is how many earlier queries of the same client a query is compared with when
// learning suffixes: a lookup's names come one after the other, A and AAAA together.
const learnBack = 32

// spOptions are searchpath's flags, checked.
type spOptions struct {
	namespace string
	search    []string // given with --search, fully qualified and lower-cased; nil: learn them
	n         int
}

func runSearchpath(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var since timeFlag
	fs := newFlags("searchpath", "[--since 1h] [--namespace NS] [--search SUFFIX,...] [-n 20]", out, &c, defaultTimeout)
	fs.Var(&since, "since", "the queries that arrived at or after `T`: a duration ago (30m, 1h) or an RFC 3339 time (default 1h)")
	ns := fs.String("namespace", "", "only the lookups of pods in namespace `NS`")
	search := fs.String("search", "", "the search list, comma-separated `SUFFIXES` in the resolvers' order (default: learned from the log)")
	n := fs.Int("n", 20, "how many names (1 to 10000)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	opt := spOptions{namespace: *ns, n: *n}
	if *n < 1 || *n > 10000 {
		return usageError("-n %d: must be from 1 to 10000", *n)
	}
	if opt.namespace != "" {
		if _, ok := dns.IsDomainName(opt.namespace); !ok || strings.Contains(opt.namespace, ".") {
			return usageError("--namespace %q is not a namespace name (one DNS label)", opt.namespace)
		}
	}
	if *search != "" {
		for _, s := range strings.Split(*search, ",") {
			name := dns.CanonicalName(strings.TrimSpace(s))
			if _, ok := dns.IsDomainName(name); !ok || name == "." {
				return usageError("--search %q: %q is not a domain name", *search, s)
			}
			if slices.Contains(opt.search, name) {
				return usageError("--search %q: %q is given twice", *search, s)
			}
			opt.search = append(opt.search, name)
		}
	}
	if !since.set() {
		since.Set("1h")
	}
	d, w, err := openFiltered(ctx, c, &filter{since: since})
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.namespaceKnown("--namespace", opt.namespace); err != nil {
		return err
	}
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	var res *spResult
	// Rollups count whole minutes: their window is rounded down to them.
	now := time.Now()
	rw := window{from: since.t.Unix() / 60 * 60, to: openEnd, now: now.Unix()}
	// --since 1h (the flag's "now" a moment ago) is an hour of rows: a minute's slack.
	long := now.Sub(since.t) > spRowsWindow*time.Second+time.Minute
	busy := int64(0) // the window's queries, when too many to fold from the rows
	if !long && d.rollups && d.pods {
		q, err := d.windowQueries(qctx, rw)
		if err != nil {
			return d.queryError(err)
		}
		if q > spRowsMax {
			busy = q
		}
	}
	if long || busy > 0 {
		res, err = d.searchpathRollups(qctx, rw, opt)
	} else {
		res, err = d.searchpath(qctx, w, opt)
	}
	if err != nil {
		return d.queryError(err)
	}
	if busy > 0 {
		res.rollups.busy = busy
	}
	res.since = since.t.UnixMilli()
	if res.rollups != nil {
		res.since = res.rollups.w.from * 1000
		res.sources = res.rollups.sources(d)
	}
	if c.json {
		return res.writeJSON(out, opt.n)
	}
	return res.writeTable(out, opt.n)
}

// spResult is searchpath's answer.
type spResult struct {
	a       *spAnalysis
	since   int64      // Unix ms
	rollups *spRollups // folded from the rollups (searchpath_rollups.go); nil: from the rows
	sources []string   // from the rollups: where the counts came from, in words
}

// searchpath reads the A and AAAA rows w selects and folds them: rows of the log by a range
// of ids, then by arrival, a chunk at a time, as every command reads a window (spScan); rows of
// schema 1 by ts.
func (d *database) searchpath(ctx context.Context, w *where, opt spOptions) (*spResult, error) {
	sc := &spScan{d: d, a: newSPAnalysis(), opt: opt, streams: map[[2]string]*spStream{}, groups: map[[2]string]int32{},
		namespaces: newNamespaces(d), nameRefs: map[int64]int32{}, clientRefs: map[int64]string{}}
	if d.log {
		if err := sc.log(ctx, w); err != nil {
			return nil, err
		}
	}
	if d.v1 != "" {
		q := w.v1Query()
		q.conds = append(q.conds, `q.qtype IN (?, ?)`)
		q.args = append(q.args, int64(dns.TypeA), int64(dns.TypeAAAA))
		err := d.v1Rows(ctx, q, func(r *row) error {
			if r.qtype == int64(dns.TypeA) || r.qtype == int64(dns.TypeAAAA) {
				sc.add(r.ts, sc.a.intern(strings.ToLower(r.qname.String)), r.client.String, "", r.qtype == int64(dns.TypeAAAA),
					uint16(r.rcode), r.rcode == dns.RcodeSuccess && r.answers > 0)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sc.a.analyse(opt.search)
	return &spResult{a: sc.a}, nil
}

// spScan reads rows into an spAnalysis. Log rows mostly hold numbers of the names and clients
// dictionaries: each number is looked up once, and only the columns searchpath needs are read
// (logRows decodes and names every column of every row, which cost half as much again).
type spScan struct {
	d          *database
	a          *spAnalysis
	opt        spOptions
	streams    map[[2]string]*spStream // by namespace and client
	groups     map[[2]string]int32     // by namespace, or client without namespace
	namespaces *namespaces             // a row's namespace, by pod or metadata
	nameRefs   map[int64]int32         // names dictionary number -> name index
	clientRefs map[int64]string        // clients dictionary number -> address
}

func (sc *spScan) log(ctx context.Context, w *where) error {
	d := sc.d
	var first, last sql.NullInt64
	if err := d.row(ctx, `SELECT (SELECT min(id) FROM log), (SELECT max(id) FROM log)`, nil, &first, &last); err != nil || !first.Valid {
		return err
	}
	q := w.logQuery(first.Int64, last.Int64+1)
	// The namespace: by the pod column, else (rows of older files) by the metadata.
	pod, meta := `NULL`, `NULL`
	if d.cluster {
		pod = `l.pod`
	}
	if d.extra {
		meta = `l.metadata`
	}
	cols := `l.name, l.client, ` + pod + `, ` + meta
	// Arrival, type, rcode and "answered" in one integer (logrow.Decode's fields, worked out in
	// SQL, where & | << >> have one precedence, left to right): each column read costs more
	// than the arithmetic.
	query := `SELECT (((l.id >> 8) - l.late) << 14) | ((l.a & 65535 = 28) << 12) | ((((l.a >> 23) & 4095) = 0 AND ((l.b >> 27) & 4095) > 0) << 13) | ((l.a >> 23) & 4095), ` +
		cols + ` FROM log l WHERE l.id >= ? AND l.id < ? AND l.a & 65535 IN (1, 28) AND ` + conj(q.conds)
	err := chunks(ctx, q.lo, q.hi, chunkIDs, false, func(from, to int64) error {
		return d.each(ctx, query, append([]any{from, to}, q.args...), func(v []driver.Value) error {
			packed := logrow.Int(v[0])
			var name int32
			switch n := v[1].(type) {
			case int64:
				var ok bool
				if name, ok = sc.nameRefs[n]; !ok {
					// named once the scan is done (resolveNames)
					name = int32(len(sc.a.names))
					sc.a.names = append(sc.a.names, "")
					sc.nameRefs[n] = name
				}
			default:
				text, _ := logrow.Text(n)
				name = sc.a.intern(strings.ToLower(text))
			}
			var client string
			switch c := v[2].(type) {
			case int64:
				var ok bool
				if client, ok = sc.clientRefs[c]; !ok {
					text, _, err := d.reader.Clients.Text(ctx, d.dc, c)
					if err != nil {
						return err
					}
					client = text
					sc.clientRefs[c] = text
				}
			default:
				client, _ = logrow.Text(c)
			}
			ns, _, err := sc.namespaces.of(ctx, v[3], v[4])
			if err != nil {
				return err
			}
			sc.add(packed>>14, name, client, ns, packed>>12&1 == 1, uint16(packed&4095), packed>>13&1 == 1)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return sc.resolveNames(ctx)
}

// resolveNames gives the names dictionary numbers the scan met their texts, all in one query
// (a lookup of each number as rows meet it costs three times as much), and makes the rows that
// refer to a text met twice (by text, or under two numbers) use one index.
func (sc *spScan) resolveNames(ctx context.Context) error {
	if len(sc.nameRefs) == 0 {
		return nil
	}
	a := sc.a
	list, err := json.Marshal(slices.Collect(maps.Keys(sc.nameRefs)))
	if err != nil {
		return err
	}
	same := map[int32]int32{} // placeholder index -> the index its text already has
	err = sc.d.each(ctx, `SELECT id, name FROM names WHERE id IN (SELECT value FROM json_each(?))`, []any{string(list)}, func(v []driver.Value) error {
		i := sc.nameRefs[logrow.Int(v[0])]
		text, _ := logrow.Text(v[1])
		text = strings.ToLower(text)
		if j, ok := a.nameIdx[text]; ok {
			same[i] = j
			return nil
		}
		a.names[i] = text
		a.nameIdx[text] = i
		return nil
	})
	if err != nil || len(same) == 0 {
		return err
	}
	for _, s := range a.streams {
		for k := range s.rows {
			if j, ok := same[s.rows[k].name]; ok {
				s.rows[k].name = j
			}
		}
	}
	return nil
}

// add adds an A or AAAA query: its arrival, name index, client, namespace (or ""), type, rcode,
// and whether it was answered (NOERROR with answers). Rows come in the order written: within a
// millisecond, the order they are taken in.
func (sc *spScan) add(ts int64, name int32, client, ns string, aaaa bool, rcode uint16, ok bool) {
	if sc.opt.namespace != "" && ns != sc.opt.namespace {
		return
	}
	a := sc.a
	key := [2]string{ns, client}
	s := sc.streams[key]
	if s == nil {
		gkey := [2]string{ns, ""}
		if ns == "" {
			gkey[1] = client
		}
		g, ok := sc.groups[gkey]
		if !ok {
			g = int32(len(a.groups))
			sc.groups[gkey] = g
			a.groups = append(a.groups, &spGroup{namespace: gkey[0], client: gkey[1]})
		}
		s = &spStream{client: client, group: g}
		sc.streams[key] = s
		a.streams = append(a.streams, s)
	}
	s.rows = append(s.rows, spQuery{ts: ts, seq: a.rows, name: name, aaaa: aaaa, rcode: rcode, ok: ok})
	a.rows++
}

// spLine is one line of the answer.
type spLine struct {
	key spKey
	*spStat
}

func (r *spResult) lines(n int) []spLine {
	a := r.a
	// Only the lines that can be among the first n are sorted: those with at least as many
	// queries as the nth most.
	counts := make([]int64, 0, len(a.stats))
	for _, st := range a.stats {
		counts = append(counts, st.Queries)
	}
	least := int64(0)
	if len(counts) > n {
		slices.Sort(counts)
		least = counts[len(counts)-n]
	}
	var lines []spLine
	for k, st := range a.stats {
		if st.Queries >= least {
			lines = append(lines, spLine{k, st})
		}
	}
	slices.SortFunc(lines, func(x, y spLine) int {
		gx, gy := a.groups[x.key.group], a.groups[y.key.group]
		return cmp.Or(cmp.Compare(y.Queries, x.Queries), cmp.Compare(y.Lookups, x.Lookups),
			strings.Compare(a.names[x.key.name], a.names[y.key.name]),
			strings.Compare(gx.namespace, gy.namespace), strings.Compare(gx.client, gy.client))
	})
	return lines[:min(n, len(lines))]
}

// asked is a name as the program asked for it: without the final dot (but "." for the root).
func asked(name string) string {
	if name == "." {
		return name
	}
	return strings.TrimSuffix(name, ".")
}

func (r *spResult) totals() (st spStat) {
	for _, s := range r.a.stats {
		st.Add(s)
	}
	return st
}

func perLookup(st *spStat) string {
	if st.Lookups == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(st.Queries)/float64(st.Lookups), 'f', 1, 64)
}

func (r *spResult) writeTable(out io.Writer, n int) error {
	a := r.a
	// NAME, NAMESPACE and CLIENT aligned left, the numbers right.
	cells := [][]string{{"NAME", "NAMESPACE", "CLIENT", "LOOKUPS", "QUERIES", "PER LOOKUP", "NXDOMAIN"}}
	for nd := 1; nd <= maxNdots; nd++ {
		cells[0] = append(cells[0], "NDOTS:"+strconv.Itoa(nd))
	}
	lines := r.lines(n)
	for _, l := range lines {
		g := a.groups[l.key.group]
		c := []string{printable(asked(a.names[l.key.name])), cmp.Or(printable(g.namespace), "-"), "-",
			count(l.Lookups), count(l.Queries), perLookup(l.spStat), count(l.NXDomain)}
		if g.namespace == "" {
			c[2] = cmp.Or(printable(g.client), "-")
		}
		for _, w := range l.WhatIf {
			c = append(c, count(w))
		}
		cells = append(cells, c)
	}
	widths := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, t := range c {
			widths[i] = max(widths[i], utf8.RuneCountInString(t))
		}
	}
	var b strings.Builder
	for _, c := range cells {
		for i, t := range c {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(t))
			switch {
			case i < 3:
				b.WriteString(t + pad)
			default:
				b.WriteString(pad + t)
			}
			if i < len(c)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
	}
	if len(lines) == 0 {
		b.Reset()
		b.WriteString("no A or AAAA queries in the window\n")
	}
	t := r.totals()
	rounded, of, learnedFrom := "", "", "lookup"
	if r.rollups != nil {
		rounded, of, learnedFrom = " ("+r.rollups.w.rounded()+")", " of pods", "name"
	}
	fmt.Fprintf(&b, "window: %s to now%s; %s A and AAAA queries%s in %s lookups of %s names (%s per lookup), %s NXDOMAIN to expanded names\n",
		time.UnixMilli(r.since).UTC().Format(time.RFC3339), rounded, count(a.rows), of, count(t.Lookups), count(int64(len(a.stats))), perLookup(&t), count(t.NXDomain))
	var whatIf []string
	for _, w := range t.WhatIf {
		whatIf = append(whatIf, count(w))
	}
	fmt.Fprintf(&b, "the same lookups with ndots 1 to %d: %s queries (A and AAAA each; a name not tried taken as not answering)\n", maxNdots, strings.Join(whatIf, ", "))
	none := 0
	for _, g := range a.groups {
		what := "namespace " + printable(g.namespace)
		if g.namespace == "" {
			what = "client " + cmp.Or(printable(g.client), "-")
		}
		switch {
		case g.given:
		case len(g.suffixes) == 0:
			none++
		default:
			fmt.Fprintf(&b, "search list of %s, learned from %s: %s\n", what, plural(int64(g.seenIn), learnedFrom), strings.Join(printables(g.suffixes), " "))
		}
	}
	if len(a.groups) > 0 && a.groups[0].given {
		fmt.Fprintf(&b, "search list (--search): %s\n", strings.Join(printables(a.groups[0].suffixes), " "))
	}
	if none > 0 {
		what := "1 namespace or client: its"
		if none > 1 {
			what = count(int64(none)) + " namespaces or clients: their"
		}
		fmt.Fprintf(&b, "no search list learned for %s queries are counted as asked (give --search)\n", what)
	}
	if r.rollups != nil {
		fmt.Fprintf(&b, "folded from counts by name (the window is longer than 1h or busier than %s queries): lookups are the most A or AAAA queries of any name of a lookup\n", count(spRowsMax))
		for _, line := range r.sources {
			b.WriteString(line + "\n")
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func printables(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = printable(s)
	}
	return out
}

func (r *spResult) writeJSON(out io.Writer, n int) error {
	type jsonLine struct {
		Name      string          `json:"name"`
		Namespace *string         `json:"namespace"`
		Client    *string         `json:"client"`
		Lookups   int64           `json:"lookups"`
		Queries   int64           `json:"queries"`
		NXDomain  int64           `json:"nxdomain"`
		Ndots     [maxNdots]int64 `json:"queries_with_ndots"`
	}
	type jsonList struct {
		Namespace *string  `json:"namespace"`
		Client    *string  `json:"client"`
		Suffixes  []string `json:"suffixes"`
		Learned   bool     `json:"learned"`
		Lookups   int      `json:"learned_from_lookups"`
	}
	a := r.a
	who := func(g *spGroup) (ns, client *string) {
		if g.namespace != "" {
			return &g.namespace, nil
		}
		return nil, &g.client
	}
	t := r.totals()
	v := struct {
		Since    string          `json:"since"`
		Rows     int64           `json:"rows"`
		Lookups  int64           `json:"lookups"`
		Queries  int64           `json:"queries"`
		NXDomain int64           `json:"nxdomain"`
		Ndots    [maxNdots]int64 `json:"queries_with_ndots"`
		Names    []jsonLine      `json:"names"`
		Lists    []jsonList      `json:"search_lists"`
		From     string          `json:"from"`    // rows, or rollups (counts by name)
		Sources  []string        `json:"sources"` // from the rollups: where the counts came from
	}{Since: time.UnixMilli(r.since).UTC().Format("2006-01-02T15:04:05.000Z"), Rows: a.rows, Lookups: t.Lookups, Queries: t.Queries,
		NXDomain: t.NXDomain, Ndots: t.WhatIf, Names: []jsonLine{}, Lists: []jsonList{}, From: "rows", Sources: []string{}}
	if r.rollups != nil {
		v.From, v.Sources = "rollups", r.sources
	}
	for _, l := range r.lines(n) {
		ns, client := who(a.groups[l.key.group])
		v.Names = append(v.Names, jsonLine{asked(a.names[l.key.name]), ns, client, l.Lookups, l.Queries, l.NXDomain, l.WhatIf})
	}
	for _, g := range a.groups {
		ns, client := who(g)
		v.Lists = append(v.Lists, jsonList{ns, client, append([]string{}, g.suffixes...), !g.given, g.seenIn})
	}
	return writeJSON(out, v)
}
