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
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/logrow"
)

// topKind is what top counts, in the rollups, the log and rows of schema 1.
type topKind struct {
	heading  string
	rollup   string // the rollup table and its key column
	key      string
	logKey   string // the key of a log row l: a dictionary reference for names and clients
	dict     string // the dictionary (and its text column) logKey refers to, if any
	v1Key    string // the column of schema 1
	folded   bool   // rollups fold what is past rollup_limit per period into (other)
	code     func(d *database, code int64) string
	hits     bool   // the rollup table counts cache hits
	pods     bool   // keys are of rows with a pod only: schema 3, no rows of schema 1
	rowsOnly string // no rollups count it: what top says
	// With --namespace: the rollup table that counts within a namespace (namespaceRollup), and
	// the condition top puts on its rows and on the rows of hitsTable.
	byNamespace string
	rollupCond  string
	rollupArgs  []any
	hitsTable   string // counts the hits of the window when the rollup table does not (default rollup_outcomes)
}

// namespaceRollup narrows kind to one namespace in the rollups, if they count kind by
// namespace (domains, clients, namespaces: plugin/querylog/rollup_namespace.go).
func (k *topKind) namespaceRollup(namespace string) bool {
	switch {
	case k.byNamespace != "":
		k.rollup, k.hitsTable = k.byNamespace, "rollup_namespaces"
	case k.rollup == "rollup_namespaces":
	default:
		return false
	}
	k.rollupCond, k.rollupArgs = ` AND namespace = ?`, []any{namespace}
	return true
}

// hourly reports whether kind is read from tables that keep minutes only for the hours not
// summed yet (byHours).
func (k *topKind) hourly() bool { return k.rollup == k.byNamespace && k.byNamespace != "" }

var topKinds = map[string]topKind{
	"domains": {heading: "QNAME", rollup: "rollup_names", key: "name", logKey: "l.name", dict: "names name", v1Key: "q.qname", folded: true,
		byNamespace: "rollup_namespace_names"},
	"clients": {heading: "CLIENT", rollup: "rollup_clients", key: "client", logKey: "l.client", dict: "clients addr", v1Key: "q.client_ip", folded: true,
		byNamespace: "rollup_namespace_clients"},
	"rcodes": {heading: "RCODE", rollup: "rollup_outcomes", key: "rcode", logKey: "(l.a >> 23) & 4095", v1Key: "q.rcode", code: (*database).rcodeName, hits: true},
	"types":  {heading: "TYPE", rollup: "rollup_outcomes", key: "qtype", logKey: "l.a & 65535", v1Key: "q.qtype", code: (*database).typeName, hits: true},
	// The rollups count namespaces of rows with a pod only (plugin/querylog/rollup.go).
	"namespaces": {heading: "NAMESPACE", rollup: "rollup_namespaces", key: "namespace", logKey: "l.pod", dict: "pods namespace", folded: true, hits: true, pods: true},
	// Pods within each namespace (plugin/querylog/rollup_namespace.go), as kubectl names them.
	"pods": {heading: "POD", rollup: "rollup_namespace_pods", key: `CASE WHEN pod = '(other)' THEN pod ELSE namespace || '/' || pod END`,
		logKey: "l.pod", dict: "pods namespace || '/' || name", folded: true, hits: true, pods: true, byNamespace: "rollup_namespace_pods"},
}

// topWhat lists what top counts, for messages.
const topWhat = "domains, clients, rcodes, types, namespaces, pods or upstreams"

// topNotes ends top -h: where each count comes from.
const topNotes = `
What top counts, and from where:
  domains, clients, rcodes, types  from the rollups where they cover the window, from the
                                   rows otherwise
  namespaces                       the same: the Kubernetes namespaces of the clients that
                                   are pods (rows with a namespace only)
  pods                             the same: the client pods within each namespace (a
                                   namespace keeps rollup_limit a period, the rest (other))
  upstreams                        from the rollups where they cover the window, from the
                                   rows otherwise; p50 and p99 as the upper bound of their
                                   reply-time bucket if any count is from the rollups, exact
                                   if all are from rows
With --namespace, domains, clients, namespaces and pods from the rollups too (they count
names, clients and pods within each namespace); the rest, and anything with --pod, from the
rows only (top upstreams takes neither).
Every top but upstreams gives the cache hit ratio (hits of the replies with a cache status);
top namespaces and pods give each one's too.
`

// otherKey is the name and client under which rollups count what is past their limit
// (plugin/querylog/rollup.go).
const otherKey = "(other)"

// openEnd stands for a window without --until, in Unix seconds.
const openEnd = math.MaxInt64 >> 12

func runTop(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var since, until timeFlag
	var pods podMatch
	fs := newFlags("top", "domains|clients|rcodes|types|namespaces|pods|upstreams [--since 24h] [--until T] [--namespace NS] [--pod NAME] [-n 20]", out, &c, defaultTimeout)
	fs.Var(&since, "since", "the window starts at `T`: a duration ago (30m, 1h, 30d) or an RFC 3339 time (default 24h)")
	fs.Var(&until, "until", "the window ends at `T` (default: now)")
	pods.flags(fs)
	n := fs.Int("n", 20, "how many (1 to 10000)")
	help := fs.help
	fs.help = func() { help(); io.WriteString(out, topNotes) }
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("say what to count: top " + topWhat)
	}
	kind, ok := topKinds[pos[0]]
	if !ok && pos[0] != "upstreams" {
		return usageError("cannot count %q: top %s", pos[0], topWhat)
	}
	if pods.set() && pos[0] == "upstreams" {
		return usageError("%s: top upstreams does not narrow by namespace or pod", pods.option())
	}
	if *n < 1 || *n > 10000 {
		return usageError("-n %d: must be from 1 to 10000", *n)
	}
	now := time.Now()
	if !since.set() {
		since.Set("24h")
	}
	if pos[0] == "upstreams" {
		return runTopUpstreams(ctx, c, since, until, *n, out)
	}
	// Rollups count whole minutes: the window is rounded down to them.
	w := window{from: since.t.Unix() / 60 * 60, to: openEnd, now: now.Unix()}
	if until.set() {
		w.to = until.t.Unix() / 60 * 60
	}
	if w.to <= w.from {
		return usageError("--until must be at least a minute after --since")
	}
	d, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	if pods.set() {
		if err := pods.check(d); err != nil {
			return err
		}
		if pods.pod != "" || !kind.namespaceRollup(pods.namespace) {
			kind.rowsOnly = "the rollups do not count " + pos[0] + " by namespace or pod"
		}
	}
	if pos[0] == "pods" && !d.podRollups {
		kind.rowsOnly = "this file's rollups do not count pods (a file of schema 3 written before rollup_namespace_pods)"
	}
	if !pods.set() && kind.pods && !d.pods {
		return usageError("top %s: %s is of schema %d, whose rows do not say their client's namespace and pod (schema 3 does: a server of this version upgrades the file)",
			pos[0], d.path, d.schema)
	}
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	var match *podMatch
	if pods.set() {
		match = &pods
	}
	res, err := d.top(qctx, kind, w, *n, match)
	if err != nil {
		return d.queryError(err)
	}
	res.kind, res.what = kind, pos[0]
	if c.json {
		return res.writeJSON(d, out)
	}
	return res.writeTable(d, out)
}

// window is top's time window in Unix seconds, whole minutes: [from, to); to is openEnd
// without --until. hourly: from was rounded down to the hour (byHours).
type window struct {
	from, to, now int64
	hourly        bool
}

// span is a range of Unix seconds [from, to).
type span struct{ from, to int64 }

// plan says where each part of a window is counted from: whole days, hours and minutes of the
// rollups, and raw rows for the rest: rows written after the rollups last counted (rollup_id),
// rows in minutes that the rollups no longer keep, and rows of schema 1, which rollups never
// count. Every row is counted once: by its id it is either in the rollups or after rollupID.
type plan struct {
	days, hours, minutes []span
	uncovered            []span // minutes the rollups no longer keep: raw rows, if any are left
	rollupID             int64  // rows with a larger id are not in the rollups yet
	oldestMinute         int64  // the oldest minute the rollups keep (openEnd: none)
	oldest               int64  // the oldest period of any span the rollups keep (openEnd: none)
}

// plan finds the largest rollup periods that lie inside w and exist.
func (d *database) plan(ctx context.Context, w window) (*plan, error) {
	p := &plan{oldestMinute: openEnd, oldest: openEnd} // nothing kept, unless found below
	if !d.rollups {
		return p, nil
	}
	var oldest, oldestHour, oldestDay sql.NullInt64
	err := d.row(ctx, `SELECT coalesce((SELECT value FROM state WHERE key = 'rollup_id'), 0),
		(SELECT min(start) FROM rollup_outcomes WHERE span = 60), (SELECT min(start) FROM rollup_outcomes WHERE span = 3600),
		(SELECT min(start) FROM rollup_outcomes WHERE span = 86400)`, nil, &p.rollupID, &oldest, &oldestHour, &oldestDay)
	if err != nil {
		return nil, err
	}
	p.oldest = openEnd
	for _, o := range []sql.NullInt64{oldest, oldestHour, oldestDay} {
		if o.Valid {
			p.oldest = min(p.oldest, o.Int64)
		}
	}
	switch {
	case oldest.Valid:
		p.oldestMinute = oldest.Int64
	case p.rollupID == 0:
		p.oldestMinute = 0 // nothing counted yet: every row is after rollup_id
	}
	var days []int64
	if days, err = d.periods(ctx, 86400, w.from, w.to); err != nil {
		return nil, err
	}
	p.days = merge(days, 86400)
	for _, gap := range gaps(span{w.from, w.to}, p.days) {
		hours, err := d.periods(ctx, 3600, gap.from, gap.to)
		if err != nil {
			return nil, err
		}
		hs := merge(hours, 3600)
		p.hours = append(p.hours, hs...)
		for _, m := range gaps(gap, hs) {
			if m.from < p.oldestMinute {
				p.uncovered = append(p.uncovered, span{m.from, min(m.to, p.oldestMinute)})
				m.from = min(m.to, p.oldestMinute)
			}
			if m.from < m.to {
				p.minutes = append(p.minutes, m)
			}
		}
	}
	return p, nil
}

// periods returns the starts of the periods of span seconds that lie within [from, to) and have
// rollup rows (rollup_outcomes has rows for every period with queries), one index seek each.
func (d *database) periods(ctx context.Context, span, from, to int64) ([]int64, error) {
	var starts []int64
	err := d.each(ctx, `WITH RECURSIVE p(start) AS (
			SELECT (SELECT min(start) FROM rollup_outcomes WHERE span = ?1 AND start >= ?2)
			UNION ALL
			SELECT (SELECT min(start) FROM rollup_outcomes WHERE span = ?1 AND start > p.start) FROM p
			WHERE p.start + ?1 <= ?3)
		SELECT start FROM p WHERE start IS NOT NULL AND start + ?1 <= ?3`, []any{span, from, to}, func(v []driver.Value) error {
		starts = append(starts, logrow.Int(v[0]))
		return nil
	})
	return starts, err
}

// merge makes consecutive periods of size into spans.
func merge(starts []int64, size int64) []span {
	var out []span
	for _, s := range starts {
		if n := len(out); n > 0 && out[n-1].to == s {
			out[n-1].to = s + size
		} else {
			out = append(out, span{s, s + size})
		}
	}
	return out
}

// gaps returns the parts of w that the sorted spans do not cover.
func gaps(w span, covered []span) []span {
	var out []span
	at := w.from
	for _, c := range covered {
		if c.from > at {
			out = append(out, span{at, c.from})
		}
		at = max(at, c.to)
	}
	if at < w.to {
		out = append(out, span{at, w.to})
	}
	return out
}

// Where each count came from.
const (
	srcRollups = 1
	srcAfter   = 2 // log rows after rollup_id
	srcOld     = 3 // log rows in minutes the rollups no longer keep
	srcV1      = 4 // rows of schema 1
	srcRows    = 5 // log rows of the whole window: what no rollup counts
)

// tally is what top counts of a key: queries, cache hits, and replies with a cache status.
type tally struct{ n, hits, status int64 }

func (t *tally) add(u tally) { t.n, t.hits, t.status = t.n+u.n, t.hits+u.hits, t.status+u.status }

type topRow struct {
	key string
	tally
}

type topResult struct {
	kind        topKind
	what        string
	w           window
	plan        *plan
	pods        *podMatch // --namespace, --pod
	rows        []topRow
	total       int64
	bySrc       [6]int64
	other       int64
	rawFrom     int64         // Unix ms from which the rows after the rollups arrived (their first id)
	oldest      sql.NullInt64 // rows only: the oldest row's arrival, Unix ms
	cache       tally         // the window's cache hits and replies with a cache status
	rollupCache tally         // the hits of rollup_outcomes, for kinds whose rollups do not count them
}

// topPart is a query whose rows are a key, a count, cache hits and replies with a cache
// status, of one source.
type topPart struct {
	src   int
	query string
	args  []any
	refs  bool // integer keys are numbers in a dictionary (names, clients and pods of log rows)
}

// windowQueries is the queries of w, counted as top counts them: from the rollups where they
// cover it (a fraction of a second for a month), from the rows after them.
func (d *database) windowQueries(ctx context.Context, w window) (int64, error) {
	t, err := d.top(ctx, topKinds["rcodes"], w, 1, nil)
	if err != nil {
		return 0, err
	}
	return t.total, nil
}

// top counts the n most frequent keys of kind in window w, from one snapshot; with pods, of
// their rows only. Each part is read row by row and summed in a map: SQLite's sorted GROUP BY
// costs three times as much here.
//
// Cache hits: a log row of schema 3 says hit, miss or neither (no cache probed); the rollups
// count hits and misses.
func (d *database) top(ctx context.Context, kind topKind, w window, n int, pods *podMatch) (*topResult, error) {
	res := &topResult{w: w, pods: pods, plan: &plan{oldestMinute: openEnd, oldest: openEnd}}
	var parts []topPart
	cache := `0, 0`
	if d.cluster {
		cache = `l.cache = 1, l.cache IS NOT NULL`
	}
	logPart := func(src int, cond string, args []any) {
		if kind.pods {
			if !d.cluster {
				return // no row has a pod
			}
			cond += ` AND l.pod IS NOT NULL`
		}
		if pods != nil {
			c, a := pods.cond(d)
			cond, args = cond+` AND `+c, append(slices.Clip(args), a...)
		}
		parts = append(parts, topPart{src, `SELECT ` + kind.logKey + `, 1, ` + cache + ` FROM log l WHERE ` + cond, args, kind.dict != ""})
	}
	if kind.rowsOnly != "" {
		if d.log {
			b, err := d.logBounds(ctx, true)
			if err != nil {
				return nil, err
			}
			res.oldest = b.oldest
			cond, args := timeCond(w.from, w.to, 0, math.MaxInt64)
			logPart(srcRows, cond, args)
		}
	} else {
		if kind.hourly() {
			var err error
			if w, err = d.byHours(ctx, w); err != nil {
				return nil, err
			}
			res.w = w
		}
		p, err := d.plan(ctx, w)
		if err != nil {
			return nil, err
		}
		res.plan, res.rawFrom = p, p.rollupID>>8
		hits := `0, 0`
		if kind.hits && d.pods {
			hits = `hits, hits + misses`
		}
		hitsTable := kind.rollup
		if !kind.hits {
			hitsTable = cmp.Or(kind.hitsTable, "rollup_outcomes")
		}
		for _, l := range []struct {
			span  int64
			spans []span
		}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
			for _, s := range l.spans {
				args := append([]any{l.span, s.from, s.to}, kind.rollupArgs...)
				parts = append(parts, topPart{srcRollups, `SELECT ` + kind.key + `, n, ` + hits + ` FROM ` + kind.rollup + ` WHERE span = ? AND start >= ? AND start < ?` + kind.rollupCond, args, false})
				if d.pods && !kind.hits {
					var c tally
					err := d.row(ctx, `SELECT coalesce(sum(hits), 0), coalesce(sum(hits + misses), 0) FROM `+hitsTable+` WHERE span = ? AND start >= ? AND start < ?`+kind.rollupCond, args,
						&c.hits, &c.status)
					res.rollupCache.add(c)
					if err != nil {
						return nil, err
					}
				}
			}
		}
		if d.log {
			// Rows after rollup_id, and rows in minutes the rollups no longer keep (which the
			// rollups once counted): the two never meet.
			cond, args := timeCond(w.from, w.to, p.rollupID+1, math.MaxInt64)
			logPart(srcAfter, cond, args)
			for _, s := range p.uncovered {
				cond, args := timeCond(s.from, s.to, 0, p.rollupID+1)
				logPart(srcOld, cond, args)
			}
		}
		if d.v1 != "" && !kind.pods && pods == nil { // rows of schema 1 have no namespace
			cond, args := `q.ts >= ?`, []any{w.from * 1000}
			if w.to != openEnd {
				cond += ` AND q.ts < ?`
				args = append(args, w.to*1000)
			}
			parts = append(parts, topPart{srcV1, `SELECT ` + kind.v1Key + `, count(*), 0, 0 FROM ` + d.v1 + ` q WHERE ` + cond + ` GROUP BY 1`, args, false})
		}
	}

	texts, codes, refs := map[string]*tally{}, map[int64]*tally{}, map[int64]*tally{}
	at := func(m map[int64]*tally, k int64) *tally {
		t := m[k]
		if t == nil {
			t = &tally{}
			m[k] = t
		}
		return t
	}
	text := func(k string) *tally {
		t := texts[k]
		if t == nil {
			t = &tally{}
			texts[k] = t
		}
		return t
	}
	for _, part := range parts {
		err := d.each(ctx, part.query, part.args, func(v []driver.Value) error {
			c := tally{logrow.Int(v[1]), logrow.Int(v[2]), logrow.Int(v[3])}
			res.bySrc[part.src] += c.n
			switch k := v[0].(type) {
			case int64:
				switch {
				case part.refs:
					at(refs, k).add(c)
				case kind.code != nil:
					at(codes, k).add(c)
				default:
					text(strconv.FormatInt(k, 10)).add(c)
				}
			case nil:
				text("-").add(c)
			default:
				t, _ := logrow.Text(k)
				text(t).add(c)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := d.nameRefs(ctx, kind, refs, text); err != nil {
		return nil, err
	}
	for _, c := range res.bySrc {
		res.total += c
	}
	for _, t := range texts {
		res.cache.add(tally{hits: t.hits, status: t.status})
	}
	for _, t := range codes {
		res.cache.add(tally{hits: t.hits, status: t.status})
	}
	res.cache.add(res.rollupCache) // kinds whose rollup table does not count hits
	if o := texts[otherKey]; o != nil {
		res.other = o.n
		delete(texts, otherKey)
	}
	for k, c := range texts {
		res.rows = append(res.rows, topRow{k, *c})
	}
	byCount := func(a, b topRow) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.key, b.key)) }
	if kind.code != nil {
		keys := slices.Sorted(maps.Keys(codes)) // ties in code order
		for _, k := range keys {
			res.rows = append(res.rows, topRow{kind.code(d, k), *codes[k]})
		}
		byCount = func(a, b topRow) int { return cmp.Compare(b.n, a.n) }
	}
	slices.SortStableFunc(res.rows, byCount)
	res.rows = res.rows[:min(n, len(res.rows))]
	return res, nil
}

// nameRefs adds the counts of dictionary numbers to the counts of their texts, looking every
// number up in one query; a number without its text (never expected) counts as "-".
func (d *database) nameRefs(ctx context.Context, kind topKind, refs map[int64]*tally, text func(string) *tally) error {
	if len(refs) == 0 {
		return nil
	}
	table, col, _ := strings.Cut(kind.dict, " ")
	list, err := json.Marshal(slices.Collect(maps.Keys(refs)))
	if err != nil {
		return err
	}
	err = d.each(ctx, `SELECT id, `+col+` FROM `+table+` WHERE id IN (SELECT value FROM json_each(?))`, []any{string(list)}, func(v []driver.Value) error {
		id := logrow.Int(v[0])
		t, _ := logrow.Text(v[1])
		text(t).add(*refs[id])
		delete(refs, id)
		return nil
	})
	for _, c := range refs {
		text("-").add(*c)
	}
	return err
}

// timeCond selects log rows l that arrived in [from, to) (Unix seconds; to may be openEnd) and
// have ids in [lo, hi): by one range of ids (see where), then by ts.
func timeCond(from, to, lo, hi int64) (string, []any) {
	lo = max(lo, from*1000<<8)
	cond, args := `(l.id >> 8) - l.late >= ?`, []any{from * 1000}
	if to != openEnd {
		hi = min(hi, (to*1000+lateMargin.Milliseconds())<<8)
		cond += ` AND (l.id >> 8) - l.late < ?`
		args = append(args, to*1000)
	}
	return `l.id >= ? AND l.id < ? AND ` + cond, append([]any{lo, hi}, args...)
}

// sources says in words where the counts came from.
func (r *topResult) sources(d *database) []string {
	if r.kind.rowsOnly != "" {
		return r.rowSources(d)
	}
	out := planSources(d, r.plan, r.w.now, r.bySrc, r.rawFrom)
	switch {
	case d.v1 != "" && (r.kind.pods || r.pods != nil):
		out = append(out, "rows of schema 1 have no namespace and are not counted")
	case d.v1 != "":
		out = append(out, "rows of schema 1: "+count(r.bySrc[srcV1]))
	}
	if r.pods != nil && d.log && !d.cluster {
		out = append(out, "no row of this file has a namespace or pod yet")
	}
	return out
}

// planSources says in words what each part of a plan counted: the rollup periods, and the rows
// read (bySrc, by source) after rollup_id, from rawFrom (Unix ms), and in minutes the rollups no
// longer keep; or what the window lost.
func planSources(d *database, p *plan, now int64, bySrc [6]int64, rawFrom int64) []string {
	periods := func(spans []span, size, end int64) int64 {
		var n int64
		for _, s := range spans {
			if to := min(s.to, end); to > s.from {
				n += (to - s.from + size - 1) / size
			}
		}
		return n
	}
	var used, out []string
	for _, l := range []struct {
		n    int64
		unit string
	}{{periods(p.days, 86400, openEnd), "day"}, {periods(p.hours, 3600, openEnd), "hour"}, {periods(p.minutes, 60, now), "minute"}} {
		if l.n > 0 {
			used = append(used, plural(l.n, l.unit))
		}
	}
	if len(used) > 0 {
		out = append(out, "from rollups: "+strings.Join(used, ", "))
	}
	switch {
	case d.log && !d.rollups:
		out = append(out, "from raw rows: "+count(bySrc[srcAfter])+" (this file has no rollups)")
	case d.log:
		what := "raw rows: " + count(bySrc[srcAfter]) + " written after the rollups last counted"
		if p.rollupID > 0 {
			what += " (the last " + ago(now*1000-rawFrom) + ")"
		}
		out = append(out, what)
	}
	if n := bySrc[srcOld]; n > 0 {
		out = append(out, "raw rows: "+count(n)+" in minutes the rollups no longer keep")
	} else {
		// Minutes the window covers but the file keeps only hours or days of: the window takes
		// whole hours and days. Before the oldest rollups the file has nothing to count.
		var lost []span
		for _, s := range p.uncovered {
			if s.to > p.oldest {
				lost = append(lost, span{max(s.from, p.oldest), s.to})
			}
		}
		if mins := periods(lost, 60, now); mins > 0 {
			out = append(out, fmt.Sprintf("not counted: %s from %s to %s (the file keeps only hours and days that old)",
				plural(mins, "minute"), rfc3339(lost[0].from), rfc3339(lost[len(lost)-1].to)))
		}
	}
	return out
}

// rowsKept says what the window lost to the rows the file no longer keeps: oldest is the
// oldest row's arrival (Unix ms), from the window's start (Unix s).
func rowsKept(oldest sql.NullInt64, from int64) string {
	switch {
	case !oldest.Valid:
		return "; the file has no rows of schema 2 or 3"
	case oldest.Int64 > from*1000:
		return "; the file keeps rows from " + time.UnixMilli(oldest.Int64).UTC().Format(time.RFC3339) +
			" on, so the window's queries before then are not counted"
	}
	return ""
}

// rowSources says where the counts came from when only rows count them.
func (r *topResult) rowSources(d *database) []string {
	out := []string{"from raw rows only (" + plural(r.bySrc[srcRows], "row") + "): " + r.kind.rowsOnly + rowsKept(r.oldest, r.w.from)}
	if d.v1 != "" {
		out = append(out, "rows of schema 1 have no namespace or pod and are not counted")
	}
	if r.oldest.Valid && !d.cluster {
		out = append(out, "no row of this file has a namespace or pod yet")
	}
	return out
}

// of says whose queries top counted: of --namespace and --pod.
func (r *topResult) of() string {
	switch m := r.pods; {
	case m == nil:
		return ""
	case m.namespace != "" && m.pod != "":
		return " of pod " + printable(m.namespace+"/"+m.pod)
	case m.namespace != "":
		return " of namespace " + printable(m.namespace)
	}
	return " of pods named " + printable(r.pods.pod)
}

// hitRatio is the share of hits among the replies with a cache status, "-" without any.
func hitRatio(t tally) string { return share(t.hits, t.status) }

// cacheText says the window's cache hit ratio.
func (r *topResult) cacheText() string {
	if r.cache.status == 0 {
		return "cache hits: not known: no reply counted had a cache status (none passed a cache, or the rows are older than schema 3)"
	}
	return fmt.Sprintf("cache hits: %s (%s of %s with a cache status)", hitRatio(r.cache), count(r.cache.hits), plural(r.cache.status, "reply"))
}

// perRowCache reports whether the table and JSON give each row's cache hit ratio: counts of
// clients' namespaces and pods, where the rollups (if any) count hits per key.
func (r *topResult) perRowCache() bool { return r.kind.pods }

func plural(n int64, unit string) string {
	switch {
	case n == 1:
		return "1 " + unit
	case strings.HasSuffix(unit, "ry"), strings.HasSuffix(unit, "ly"): // query, reply
		return count(n) + " " + unit[:len(unit)-1] + "ies"
	}
	return count(n) + " " + unit + "s"
}

// ago says how long ms milliseconds are, roughly: 8 s, 3 min, 2 h.
func ago(ms int64) string {
	s := max(ms, 0) / 1000
	switch {
	case s < 120:
		return strconv.FormatInt(s, 10) + " s"
	case s < 7200:
		return strconv.FormatInt(s/60, 10) + " min"
	}
	return strconv.FormatInt(s/3600, 10) + " h"
}

func rfc3339(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

// windowText is the window as people read it.
func (r *topResult) windowText() string {
	to := "now"
	if r.w.to != openEnd {
		to = rfc3339(r.w.to)
	}
	return "window: " + rfc3339(r.w.from) + " to " + to + " (" + r.w.rounded() + ")"
}

// rounded says how the window was rounded.
func (w window) rounded() string {
	if w.hourly {
		return "rounded to whole hours, as rollups keep a namespace's names and clients once the hour is over"
	}
	return "rounded to whole minutes, as rollups count them"
}

// byHours rounds the start of w down to the hour if that hour is summed in the rollups: an
// hour's sum deletes the minutes of the namespaces' names and clients (plugin/querylog/rollup_namespace.go).
func (d *database) byHours(ctx context.Context, w window) (window, error) {
	var summed sql.NullInt64
	if err := d.row(ctx, `SELECT max(start) FROM rollup_outcomes WHERE span = 3600`, nil, &summed); err != nil {
		return w, err
	}
	if summed.Valid && w.from < summed.Int64+3600 && w.from%3600 != 0 {
		w.from, w.hourly = w.from/3600*3600, true
	}
	return w, nil
}

func share(n, total int64) string {
	if total == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(total), 'f', 1, 64) + "%"
}

func (r *topResult) writeTable(d *database, out io.Writer) error {
	// Numbers aligned right, so tabwriter (which aligns left) is not used here.
	lines := [][]string{{r.kind.heading, "QUERIES", "SHARE"}}
	if r.perRowCache() {
		lines[0] = append(lines[0], "CACHE HITS")
	}
	for _, t := range r.rows {
		l := []string{printable(t.key), count(t.n), share(t.n, r.total)}
		if r.perRowCache() {
			l = append(l, hitRatio(t.tally))
		}
		lines = append(lines, l)
	}
	if err := writeAligned(out, lines); err != nil {
		return err
	}
	if len(r.rows) == 0 {
		io.WriteString(out, "no queries in the window"+r.of()+"\n")
	}
	notes := []string{r.windowText() + "; " + plural(r.total, "query") + r.of(), r.cacheText()}
	notes = append(notes, r.sources(d)...)
	if r.kind.folded && r.other > 0 {
		what := map[string]string{"domains": "names", "clients": "clients", "namespaces": "namespaces"}[r.what]
		notes = append(notes, fmt.Sprintf("%s: %s queries (%s) are of %s past the rollups' limit per period; the counts above are at least these",
			otherKey, count(r.other), share(r.other, r.total), what))
	}
	_, err := io.WriteString(out, strings.Join(notes, "\n")+"\n")
	return err
}

func (r *topResult) writeJSON(d *database, out io.Writer) error {
	type jsonTopRow struct {
		Key     string  `json:"key"`
		Queries int64   `json:"queries"`
		Share   float64 `json:"share"`
	}
	type jsonCacheRow struct {
		jsonTopRow
		jsonCache
	}
	var until *string
	if r.w.to != openEnd {
		t := rfc3339(r.w.to)
		until = &t
	}
	v := struct {
		Top       string    `json:"top"`
		Since     string    `json:"since"`
		Until     *string   `json:"until"`
		Namespace *string   `json:"namespace,omitempty"`
		Pod       *string   `json:"pod,omitempty"`
		Rows      []any     `json:"rows"`
		Total     int64     `json:"total"`
		Other     *int64    `json:"other,omitempty"`
		Cache     jsonCache `json:"cache"`
		Sources   struct {
			RollupQueries int64    `json:"rollup_queries"`
			RawRows       int64    `json:"raw_rows"`
			RawSince      *string  `json:"raw_since"`
			RowsOnly      bool     `json:"rows_only"`
			OldestRow     *string  `json:"oldest_row,omitempty"`
			OldRawRows    int64    `json:"old_raw_rows"`
			Schema1Rows   int64    `json:"schema1_rows"`
			Text          []string `json:"text"`
		} `json:"sources"`
	}{Top: r.what, Since: rfc3339(r.w.from), Until: until, Rows: []any{}, Total: r.total, Cache: cacheJSON(r.cache)}
	if m := r.pods; m != nil {
		if m.namespace != "" {
			v.Namespace = &m.namespace
		}
		if m.pod != "" {
			v.Pod = &m.pod
		}
	}
	for _, t := range r.rows {
		s := 0.0
		if r.total > 0 {
			s = float64(t.n) / float64(r.total)
		}
		if r.perRowCache() {
			v.Rows = append(v.Rows, jsonCacheRow{jsonTopRow{t.key, t.n, s}, cacheJSON(t.tally)})
		} else {
			v.Rows = append(v.Rows, jsonTopRow{t.key, t.n, s})
		}
	}
	if r.kind.folded {
		v.Other = &r.other
	}
	v.Sources.RollupQueries, v.Sources.RawRows = r.bySrc[srcRollups], r.bySrc[srcAfter]+r.bySrc[srcRows]
	v.Sources.RowsOnly = r.kind.rowsOnly != ""
	if r.kind.rowsOnly != "" && r.oldest.Valid {
		t := time.UnixMilli(r.oldest.Int64).UTC().Format("2006-01-02T15:04:05.000Z")
		v.Sources.OldestRow = &t
	}
	v.Sources.OldRawRows, v.Sources.Schema1Rows = r.bySrc[srcOld], r.bySrc[srcV1]
	if r.plan.rollupID > 0 {
		t := time.UnixMilli(r.rawFrom).UTC().Format("2006-01-02T15:04:05.000Z")
		v.Sources.RawSince = &t
	}
	v.Sources.Text = r.sources(d)
	return writeJSON(out, v)
}

// jsonCache is a cache hit ratio in JSON: hits, replies with a cache status, and their ratio
// (null without any).
type jsonCache struct {
	Hits     int64    `json:"hits"`
	Replies  int64    `json:"cache_replies"`
	HitRatio *float64 `json:"hit_ratio"`
}

func cacheJSON(t tally) jsonCache {
	c := jsonCache{Hits: t.hits, Replies: t.status}
	if t.status > 0 {
		r := float64(t.hits) / float64(t.status)
		c.HitRatio = &r
	}
	return c
}
