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
	heading string
	rollup  string // the rollup table and its key column
	key     string
	logKey  string // the key of a log row l: a dictionary reference for names and clients
	dict    string // the dictionary (and its text column) logKey refers to, if any
	v1Key   string // the column of schema 1
	folded  bool   // rollups fold what is past rollup_limit per period into (other)
	code    func(d *database, code int64) string
}

var topKinds = map[string]topKind{
	"domains": {heading: "QNAME", rollup: "rollup_names", key: "name", logKey: "l.name", dict: "names name", v1Key: "q.qname", folded: true},
	"clients": {heading: "CLIENT", rollup: "rollup_clients", key: "client", logKey: "l.client", dict: "clients addr", v1Key: "q.client_ip", folded: true},
	"rcodes":  {heading: "RCODE", rollup: "rollup_outcomes", key: "rcode", logKey: "(l.a >> 23) & 4095", v1Key: "q.rcode", code: (*database).rcodeName},
	"types":   {heading: "TYPE", rollup: "rollup_outcomes", key: "qtype", logKey: "l.a & 65535", v1Key: "q.qtype", code: (*database).typeName},
}

// otherKey is the name and client under which rollups count what is past their limit
// (plugin/querylog/rollup.go).
const otherKey = "(other)"

// openEnd stands for a window without --until, in Unix seconds.
const openEnd = math.MaxInt64 >> 12

func runTop(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var since, until timeFlag
	fs := newFlags("top", "domains|clients|rcodes|types|upstreams [--since 24h] [--until T] [-n 20]", out, &c, defaultTimeout)
	fs.Var(&since, "since", "the window starts at `T`: a duration ago (30m, 1h, 30d) or an RFC 3339 time (default 24h)")
	fs.Var(&until, "until", "the window ends at `T` (default: now)")
	n := fs.Int("n", 20, "how many (1 to 10000)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("say what to count: top domains, clients, rcodes, types or upstreams")
	}
	kind, ok := topKinds[pos[0]]
	if !ok && pos[0] != "upstreams" {
		return usageError("cannot count %q: top domains, clients, rcodes, types or upstreams", pos[0])
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
	d, err := openDatabase(ctx, c.db, c.timeout)
	if err != nil {
		return err
	}
	defer d.close()
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	res, err := d.top(qctx, kind, w, *n)
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
// without --until.
type window struct{ from, to, now int64 }

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
)

type topRow struct {
	key string
	n   int64
}

type topResult struct {
	kind    topKind
	what    string
	w       window
	plan    *plan
	rows    []topRow
	total   int64
	bySrc   [5]int64
	other   int64
	rawFrom int64 // Unix ms from which the rows after the rollups arrived (their first id)
}

// topPart is a query whose rows are a key and a count, of one source.
type topPart struct {
	src   int
	query string
	args  []any
	refs  bool // integer keys are numbers in a dictionary (names and clients of log rows)
}

// top counts the n most frequent keys of kind in window w, from one snapshot. Each part is read
// row by row and summed in a map: SQLite's sorted GROUP BY costs three times as much here.
func (d *database) top(ctx context.Context, kind topKind, w window, n int) (*topResult, error) {
	p, err := d.plan(ctx, w)
	if err != nil {
		return nil, err
	}
	res := &topResult{w: w, plan: p, rawFrom: p.rollupID >> 8}
	var parts []topPart
	for _, l := range []struct {
		span  int64
		spans []span
	}{{86400, p.days}, {3600, p.hours}, {60, p.minutes}} {
		for _, s := range l.spans {
			parts = append(parts, topPart{srcRollups, `SELECT ` + kind.key + `, n FROM ` + kind.rollup + ` WHERE span = ? AND start >= ? AND start < ?`,
				[]any{l.span, s.from, s.to}, false})
		}
	}
	if d.log {
		// Rows after rollup_id, and rows in minutes the rollups no longer keep (which the
		// rollups once counted): the two never meet.
		cond, args := timeCond(w.from, w.to, p.rollupID+1, math.MaxInt64)
		parts = append(parts, topPart{srcAfter, `SELECT ` + kind.logKey + `, 1 FROM log l WHERE ` + cond, args, kind.dict != ""})
		for _, s := range p.uncovered {
			cond, args := timeCond(s.from, s.to, 0, p.rollupID+1)
			parts = append(parts, topPart{srcOld, `SELECT ` + kind.logKey + `, 1 FROM log l WHERE ` + cond, args, kind.dict != ""})
		}
	}
	if d.v1 != "" {
		cond, args := `q.ts >= ?`, []any{w.from * 1000}
		if w.to != openEnd {
			cond += ` AND q.ts < ?`
			args = append(args, w.to*1000)
		}
		parts = append(parts, topPart{srcV1, `SELECT ` + kind.v1Key + `, count(*) FROM ` + d.v1 + ` q WHERE ` + cond + ` GROUP BY 1`, args, false})
	}

	texts, codes, refs := map[string]int64{}, map[int64]int64{}, map[int64]int64{}
	for _, part := range parts {
		err := d.each(ctx, part.query, part.args, func(v []driver.Value) error {
			c := logrow.Int(v[1])
			res.bySrc[part.src] += c
			switch k := v[0].(type) {
			case int64:
				switch {
				case part.refs:
					refs[k] += c
				case kind.code != nil:
					codes[k] += c
				default:
					texts[strconv.FormatInt(k, 10)] += c
				}
			case nil:
				texts["-"] += c
			default:
				t, _ := logrow.Text(k)
				texts[t] += c
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := d.nameRefs(ctx, kind, refs, texts); err != nil {
		return nil, err
	}
	for _, c := range res.bySrc {
		res.total += c
	}
	res.other = texts[otherKey]
	delete(texts, otherKey)
	for k, c := range texts {
		res.rows = append(res.rows, topRow{k, c})
	}
	byCount := func(a, b topRow) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.key, b.key)) }
	if kind.code != nil {
		keys := slices.Sorted(maps.Keys(codes)) // ties in code order
		for _, k := range keys {
			res.rows = append(res.rows, topRow{kind.code(d, k), codes[k]})
		}
		byCount = func(a, b topRow) int { return cmp.Compare(b.n, a.n) }
	}
	slices.SortStableFunc(res.rows, byCount)
	res.rows = res.rows[:min(n, len(res.rows))]
	return res, nil
}

// nameRefs adds the counts of dictionary numbers to the counts of their texts, looking every
// number up in one query; a number without its text (never expected) counts as "-".
func (d *database) nameRefs(ctx context.Context, kind topKind, refs map[int64]int64, texts map[string]int64) error {
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
		texts[t] += refs[id]
		delete(refs, id)
		return nil
	})
	for _, c := range refs {
		texts["-"] += c
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
	p, now := r.plan, r.w.now
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
		out = append(out, "from raw rows: "+count(r.bySrc[srcAfter])+" (this file has no rollups)")
	case d.log:
		what := "raw rows: " + count(r.bySrc[srcAfter]) + " written after the rollups last counted"
		if p.rollupID > 0 {
			what += " (the last " + ago(now*1000-r.rawFrom) + ")"
		}
		out = append(out, what)
	}
	if n := r.bySrc[srcOld]; n > 0 {
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
	if d.v1 != "" {
		out = append(out, "rows of schema 1: "+count(r.bySrc[srcV1]))
	}
	return out
}

func plural(n int64, unit string) string {
	switch {
	case n == 1:
		return "1 " + unit
	case strings.HasSuffix(unit, "ry"): // query
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
	return "window: " + rfc3339(r.w.from) + " to " + to + " (rounded to whole minutes, as rollups count them)"
}

func share(n, total int64) string {
	if total == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(total), 'f', 1, 64) + "%"
}

func (r *topResult) writeTable(d *database, out io.Writer) error {
	// Numbers aligned right, so tabwriter (which aligns left) is not used here.
	kw, nw, sw := len(r.kind.heading), len("QUERIES"), len("SHARE")
	keys := make([]string, len(r.rows))
	for i, t := range r.rows {
		keys[i] = printable(t.key)
		kw, nw, sw = max(kw, len(keys[i])), max(nw, len(count(t.n))), max(sw, len(share(t.n, r.total)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %*s  %*s\n", kw, r.kind.heading, nw, "QUERIES", sw, "SHARE")
	for i, t := range r.rows {
		fmt.Fprintf(&b, "%-*s  %*s  %*s\n", kw, keys[i], nw, count(t.n), sw, share(t.n, r.total))
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	if len(r.rows) == 0 {
		io.WriteString(out, "no queries in the window\n")
	}
	lines := []string{r.windowText() + "; " + plural(r.total, "query")}
	lines = append(lines, r.sources(d)...)
	if r.kind.folded && r.other > 0 {
		what := map[string]string{"domains": "names", "clients": "clients"}[r.what]
		lines = append(lines, fmt.Sprintf("%s: %s queries (%s) are of %s past the rollups' limit per period; the counts above are at least these",
			otherKey, count(r.other), share(r.other, r.total), what))
	}
	_, err := io.WriteString(out, strings.Join(lines, "\n")+"\n")
	return err
}

func (r *topResult) writeJSON(d *database, out io.Writer) error {
	type jsonTopRow struct {
		Key     string  `json:"key"`
		Queries int64   `json:"queries"`
		Share   float64 `json:"share"`
	}
	var until *string
	if r.w.to != openEnd {
		t := rfc3339(r.w.to)
		until = &t
	}
	v := struct {
		Top     string       `json:"top"`
		Since   string       `json:"since"`
		Until   *string      `json:"until"`
		Rows    []jsonTopRow `json:"rows"`
		Total   int64        `json:"total"`
		Other   *int64       `json:"other,omitempty"`
		Sources struct {
			RollupQueries int64    `json:"rollup_queries"`
			RawRows       int64    `json:"raw_rows"`
			RawSince      *string  `json:"raw_since"`
			OldRawRows    int64    `json:"old_raw_rows"`
			Schema1Rows   int64    `json:"schema1_rows"`
			Text          []string `json:"text"`
		} `json:"sources"`
	}{Top: r.what, Since: rfc3339(r.w.from), Until: until, Rows: []jsonTopRow{}, Total: r.total}
	for _, t := range r.rows {
		s := 0.0
		if r.total > 0 {
			s = float64(t.n) / float64(r.total)
		}
		v.Rows = append(v.Rows, jsonTopRow{t.key, t.n, s})
	}
	if r.kind.folded {
		v.Other = &r.other
	}
	v.Sources.RollupQueries, v.Sources.RawRows = r.bySrc[srcRollups], r.bySrc[srcAfter]
	v.Sources.OldRawRows, v.Sources.Schema1Rows = r.bySrc[srcOld], r.bySrc[srcV1]
	if r.plan.rollupID > 0 {
		t := time.UnixMilli(r.rawFrom).UTC().Format("2006-01-02T15:04:05.000Z")
		v.Sources.RawSince = &t
	}
	v.Sources.Text = r.sources(d)
	return writeJSON(out, v)
}
