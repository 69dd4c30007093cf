package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/logrow"
)

// retries: the queries clients sent again because no reply came in time (a stub resolver
// waits 5 s, then asks again with the same id from the same socket), who sent them, for which
// names, and which upstream the first query went to. The writer marks each retransmission in
// the retries table (schema 3), by the row ids of the retransmission and of the first query;
// they are rare, so the command reads that table's rows of the window, by its primary key, and
// joins each to its two log rows. Only the window's queries are counted row by row, for the
// share.

// retryCount is how many retransmissions one client, namespace, name or upstream had.
type retryCount struct {
	key            string // the client address, namespace, name or upstream
	namespace, pod string // of a client, when known
	n              int64
}

type retriesResult struct {
	from, to   int64 // the window, Unix seconds; to is openEnd without --until
	namespace  string
	clients    []*retryCount
	namespaces []*retryCount
	names      []*retryCount
	upstreams  []*retryCount
	total      int64    // retransmissions in the window
	queries    int64    // queries in the window (of --namespace)
	counted    []string // where queries was counted from, as top says it (empty: the rows)
	after      int64    // first queries answered only after the retransmission arrived
	before     int64    // first queries answered before it (the reply was lost, or came too late for the client)
	unlogged   int64    // first queries with no row in the file (deleted since)
	forwarded  int64    // first queries with an upstream
	oldest     sql.NullInt64
	schema     int
	table      bool // the file has the retries table
}

func runRetries(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var since, until timeFlag
	fs := newFlags("retries", "[--since 1h] [--until T] [--namespace NS] [-n 20]", out, &c, defaultTimeout)
	fs.Var(&since, "since", "the window starts at `T`: a duration ago (30m, 1h, 30d) or an RFC 3339 time (default 1h)")
	fs.Var(&until, "until", "the window ends at `T` (default: now)")
	ns := fs.String("namespace", "", "only the retransmissions of clients in Kubernetes namespace `NS`")
	n := fs.Int("n", 20, "how many clients, namespaces, names and upstreams to list (1 to 10000)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return usageError("-n %d: must be from 1 to 10000", *n)
	}
	if !since.set() {
		since.Set("1h")
	}
	// Whole minutes, as the rollups that count the window's queries count them.
	from, to := since.t.Unix()/60*60, int64(openEnd)
	if until.set() {
		to = until.t.Unix() / 60 * 60
	}
	if to <= from {
		return usageError("--until %s must be at least a minute after --since %s", until.text, since.text)
	}
	return answer(ctx, c, out, func(ctx context.Context, d *database) (*retriesResult, error) {
		if err := d.namespaceKnown("--namespace", *ns); err != nil {
			return nil, err
		}
		return d.retries(ctx, from, to, *ns, *n)
	})
}

// retries reads the retransmissions that arrived in [from, to) (Unix seconds), of namespace ns
// if not "", and counts the window's queries.
func (d *database) retries(ctx context.Context, from, to int64, ns string, n int) (*retriesResult, error) {
	res := &retriesResult{from: from, to: to, namespace: ns, schema: d.schema, table: d.pods}
	if !d.log {
		return res, nil
	}
	b, err := d.logBounds(ctx, true)
	if err != nil || !b.first.Valid {
		return res, err
	}
	res.oldest = b.oldest
	// Rows by a range of ids, then by arrival (as timeCond, with numbered parameters).
	lo, hi, end := from*1000<<8, b.last.Int64+1, int64(math.MaxInt64)
	if to != openEnd {
		hi, end = min(hi, (to*1000+lateMargin.Milliseconds())<<8), to*1000
	}
	cond, args := d.retriesCond(ns), []any{lo, hi, from * 1000, end}
	if ns != "" {
		args = append(args, ns)
	}
	// The window's queries: as top counts them, from the rollups where they cover the window
	// (a month is read in a fraction of a second); from the rows, a chunk of ids at a time so
	// that the budget is checked between, where no rollup counts them.
	if d.rollups && (ns == "" || d.pods) {
		kind, match := topKinds["rcodes"], (*podMatch)(nil)
		if ns != "" {
			kind, match = topKinds["namespaces"], &podMatch{namespace: ns}
			kind.namespaceRollup(ns)
		}
		// Retransmissions are known where rows are kept: the queries are counted from there.
		w := window{from: from, to: to, now: time.Now().Unix()}
		if b.oldest.Valid {
			w.from = max(from, b.oldest.Int64/60_000*60)
		}
		t, err := d.top(ctx, kind, w, 1, match)
		if err != nil {
			return nil, err
		}
		res.queries, res.counted = t.total, planSources(d, t.plan, w.now, t.bySrc, t.rawFrom)
	} else {
		err = chunks(ctx, lo, hi, chunkIDs, false, func(a, b int64) error {
			args[0], args[1] = a, b
			return d.each(ctx, `SELECT count(*) FROM log l WHERE l.id >= ?1 AND l.id < ?2 AND `+cond, args, func(v []driver.Value) error {
				res.queries += logrow.Int(v[0])
				return nil
			})
		})
	}
	if err != nil || !d.pods {
		return res, err
	}

	args[0], args[1] = lo, hi
	query := d.retriesQuery(cond)
	type clientKey struct{ client, ns, pod string }
	clients, namespaces, names, upstreams := map[clientKey]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	nss := newNamespaces(d)
	err = d.each(ctx, query, args, func(v []driver.Value) error {
		client, _, err := d.reader.Clients.Ref(ctx, d.dc, v[0])
		if err != nil {
			return err
		}
		name, _, err := d.reader.Names.Ref(ctx, d.dc, v[1])
		if err != nil {
			return err
		}
		namespace, pod, err := nss.of(ctx, v[2], v[3])
		if err != nil {
			return err
		}
		res.total++
		clients[clientKey{client, namespace, pod}]++
		if namespace != "" {
			namespaces[namespace]++
		}
		names[name]++
		if v[5] == nil {
			res.unlogged++
			return nil
		}
		if gap := logrow.Int(v[4]) - logrow.Int(v[6]); logrow.Int(v[8]) > gap*1000 {
			res.after++
		} else {
			res.before++
		}
		if label := logrow.Int(v[7]); label != 0 {
			text, ok := d.reader.Labels.Text(logrow.LabelUpstream, label)
			if !ok {
				text = "#" + strconv.FormatInt(label, 10) // a label the labels table lacks: never expected
			}
			upstreams[text]++
			res.forwarded++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k, c := range clients {
		res.clients = append(res.clients, &retryCount{k.client, k.ns, k.pod, c})
	}
	res.namespaces, res.names, res.upstreams = retryCounts(namespaces), retryCounts(names), retryCounts(upstreams)
	for _, l := range []*[]*retryCount{&res.clients, &res.namespaces, &res.names, &res.upstreams} {
		slices.SortFunc(*l, func(a, b *retryCount) int {
			return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.key, b.key), strings.Compare(a.namespace, b.namespace), strings.Compare(a.pod, b.pod))
		})
		*l = (*l)[:min(n, len(*l))]
	}
	return res, nil
}

func retryCounts(m map[string]int64) []*retryCount {
	out := make([]*retryCount, 0, len(m))
	for k, n := range m {
		out = append(out, &retryCount{key: k, n: n})
	}
	return out
}

// sources says what the counts are of, and what they leave out.
func (r *retriesResult) sources() []string {
	to := "now"
	if r.to != openEnd {
		to = rfc3339(r.to)
	}
	what := plural(r.queries, "query")
	if r.namespace != "" {
		what += " of namespace " + printable(r.namespace)
	}
	out := []string{fmt.Sprintf("window: %s to %s (whole minutes, as rollups count them); %s", rfc3339(r.from), to, what)}
	for _, s := range r.counted {
		out = append(out, "queries: "+s)
	}
	if !r.table {
		return append(out, fmt.Sprintf("the file has schema %d and no retries table: the writer marks retransmissions from schema 3 on", r.schema))
	}
	out = append(out, "from the retries table (a query sent again from the same address and port with the same id, name and type within 5.5 s) and the rows of each pair")
	if r.oldest.Valid && r.oldest.Int64 > r.from*1000 {
		out = append(out, "the file keeps rows from "+time.UnixMilli(r.oldest.Int64).UTC().Format(time.RFC3339)+" on: the window's retransmissions and queries before then are not counted")
	}
	if n := r.total - r.unlogged - r.forwarded; n > 0 {
		out = append(out, fmt.Sprintf("upstreams: %s not forwarded, or without the metadata plugin", plural(n, "first query")))
	}
	return out
}

// retriesCond is the condition on a log row l of the window: arrived from ?3 to ?4 (Unix ms),
// and of namespace ?5 if ns is not "".
func (d *database) retriesCond(ns string) string {
	cond := `(l.id >> 8) - l.late >= ?3 AND (l.id >> 8) - l.late < ?4`
	if ns != "" {
		cond += ` AND ` + d.namespaceCond("?5")
	}
	return cond
}

// retriesQuery selects the retransmissions with ids from ?1 to ?2 whose rows meet cond: the
// retransmission's client, name, pod, metadata and arrival, and the first query's id, arrival,
// answering plugin and duration. The retries table is read first (CROSS JOIN keeps SQLite
// from reading the log's rows of the window instead, seconds for a month of rows), each row
// joined by its ids.
func (d *database) retriesQuery(cond string) string {
	optional := func(has bool, col string) string {
		if has {
			return col
		}
		return "NULL"
	}
	return `SELECT l.client, l.name, ` + optional(d.cluster, "l.pod") + `, ` + optional(d.extra, "l.metadata") + `,
			(l.id >> 8) - l.late, f.id, (f.id >> 8) - f.late, (f.b >> 19) & 255, f.c >> 24
		FROM retries r CROSS JOIN log l ON l.id = r.id LEFT JOIN log f ON f.id = r.first_id
		WHERE r.id >= ?1 AND r.id < ?2 AND ` + cond
}

// totals is the summary line of the counts.
func (r *retriesResult) totals() string {
	return fmt.Sprintf("retransmissions: %s of %s (%s); the first query answered after the retransmission arrived: %s, before: %s, no row of it: %s",
		count(r.total), plural(r.queries, "query"), share(r.total, r.queries), count(r.after), count(r.before), count(r.unlogged))
}

func (r *retriesResult) writeTable(out io.Writer) error {
	var b strings.Builder
	lines := [][]string{{"CLIENT (NAMESPACE/POD)", "RETRIES", "SHARE"}}
	for _, c := range r.clients {
		client := printable(c.key)
		if c.namespace != "" {
			client += " (" + printable(c.namespace) + "/" + cmp.Or(printable(c.pod), "-") + ")"
		}
		lines = append(lines, []string{client, count(c.n), share(c.n, r.total)})
	}
	for i, t := range []struct {
		heading string
		rows    []*retryCount
	}{{"NAMESPACE", r.namespaces}, {"NAME", r.names}, {"UPSTREAM", r.upstreams}} {
		if i == 0 {
			writeAligned(&b, lines)
		}
		if len(t.rows) == 0 && t.heading != "NAME" {
			continue // no namespace known, or nothing forwarded: said in the sources
		}
		lines = [][]string{{t.heading, "RETRIES", "SHARE"}}
		for _, c := range t.rows {
			lines = append(lines, []string{printable(c.key), count(c.n), share(c.n, r.total)})
		}
		b.WriteString("\n")
		writeAligned(&b, lines)
	}
	if r.total == 0 {
		b.WriteString("no retransmission in the window\n")
	}
	b.WriteString("\n" + r.totals() + "\n" + strings.Join(r.sources(), "\n") + "\n")
	_, err := io.WriteString(out, b.String())
	return err
}

func (r *retriesResult) writeJSON(out io.Writer) error {
	type jsonCount struct {
		Key       string  `json:"key"`
		Namespace *string `json:"namespace,omitempty"`
		Pod       *string `json:"pod,omitempty"`
		Retries   int64   `json:"retries"`
	}
	list := func(rows []*retryCount, client bool) []jsonCount {
		out := []jsonCount{}
		for _, c := range rows {
			j := jsonCount{Key: c.key, Retries: c.n}
			if client {
				j.Namespace, j.Pod = nullable(c.namespace), nullable(c.pod)
			}
			out = append(out, j)
		}
		return out
	}
	var until *string
	if r.to != openEnd {
		t := rfc3339(r.to)
		until = &t
	}
	ratio := 0.0
	if r.queries > 0 {
		ratio = float64(r.total) / float64(r.queries)
	}
	return writeJSON(out, struct {
		Since           string      `json:"since"`
		Until           *string     `json:"until"`
		Namespace       *string     `json:"namespace"`
		Retransmissions int64       `json:"retransmissions"`
		Queries         int64       `json:"queries"`
		Share           float64     `json:"share"`
		AnsweredAfter   int64       `json:"first_answered_after_retry"`
		AnsweredBefore  int64       `json:"first_answered_before_retry"`
		Unlogged        int64       `json:"first_not_in_file"`
		Clients         []jsonCount `json:"clients"`
		Namespaces      []jsonCount `json:"namespaces"`
		Names           []jsonCount `json:"names"`
		Upstreams       []jsonCount `json:"upstreams"`
		Sources         []string    `json:"sources"`
	}{rfc3339(r.from), until, nullable(r.namespace), r.total, r.queries, ratio, r.after, r.before, r.unlogged,
		list(r.clients, true), list(r.namespaces, false), list(r.names, false), list(r.upstreams, false), r.sources()})
}

// nullable is s, or nil (JSON null) for "".
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
