package querylog

import (
	"context"
	"database/sql/driver"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/rawsql"
)

// Within each namespace, the rollups count names (rollup_namespace_names), clients
// (rollup_namespace_clients) and pods with their cache hits (rollup_namespace_pods), each
// namespace keeping at most rollup_limit of each per period, the rest under otherKey: what
// `querylog top domains|clients --namespace`, `querylog top pods` and `querylog searchpath`
// read for windows longer than the rows. A name's counts say, besides its queries
// by rcode, how many were A and AAAA and how many of those were answered: what a stub
// resolver's search list does with a name (it goes on to the next name until one answers).

// nsNameCounts are one name's counts in a namespace in a minute, for one rcode.
type nsNameCounts struct {
	n, a, aaaa, answered int64
}

func (c *nsNameCounts) add(o *nsNameCounts) {
	c.n, c.a, c.aaaa, c.answered = c.n+o.n, c.a+o.a, c.aaaa+o.aaaa, c.answered+o.answered
}

// nsRcodes are a name's counts by rcode.
type nsRcodes map[int64]*nsNameCounts

// nsDetail is what a namespace's counts hold of its names and clients in a minute. A key
// stays once it has a row or counts in the minute (its counts zeroed when written), so that
// it counts towards the limit.
type nsDetail struct {
	names   map[string]*nsRcodes // by name
	clients map[string]*int64
	pods    map[string]*podCounts // by pod name
}

// podCounts are a pod's queries in a minute, and of them the cache's hits and misses.
type podCounts struct{ n, hits, misses int64 }

func (c *podCounts) add(o *podCounts) {
	c.n, c.hits, c.misses = c.n+o.n, c.hits+o.hits, c.misses+o.misses
}

// countIn adds one row of name, client, rcode and qtype, and of the pod and cache status in cf,
// to the namespace's counts.
func (d *nsDetail) countIn(name, client string, rcode int64, qtype uint16, cf clusterFacts, limit int) {
	c := d.countsOf(name, rcode, limit)
	c.n++
	aaaa := qtype == dns.TypeAAAA
	if a := qtype == dns.TypeA; a || aaaa {
		c.a += b2i(a)
		c.aaaa += b2i(aaaa)
		c.answered += b2i(cf.answered)
	}
	*counter(d.clients, client, limit, func() *int64 { return new(int64) }) += 1
	if cf.pod != "" {
		p := d.podOf(cf.pod, limit)
		p.n, p.hits, p.misses = p.n+1, p.hits+b2i(cf.cache == cacheHit), p.misses+b2i(cf.cache == cacheMiss)
	}
}

func (d *nsDetail) podOf(pod string, limit int) *podCounts {
	d.init()
	return counter(d.pods, pod, limit, func() *podCounts { return &podCounts{} })
}

// merge adds o's counts, past limit under otherKey: a namespace folded into otherKey.
func (d *nsDetail) merge(o *nsDetail, limit int) {
	for name, byRcode := range o.names {
		for rcode, c := range *byRcode {
			d.countsOf(name, rcode, limit).add(c)
		}
	}
	for client, n := range o.clients {
		*counter(d.clients, client, limit, func() *int64 { return new(int64) }) += *n
	}
	for pod, c := range o.pods {
		d.podOf(pod, limit).add(c)
	}
}

// countsOf returns the counts of name and rcode, under otherKey past limit names.
func (d *nsDetail) countsOf(name string, rcode int64, limit int) *nsNameCounts {
	d.init()
	byRcode := *counter(d.names, name, limit, func() *nsRcodes { return &nsRcodes{} })
	c := byRcode[rcode]
	if c == nil {
		c = &nsNameCounts{}
		byRcode[rcode] = c
	}
	return c
}

func (d *nsDetail) init() {
	if d.names == nil {
		d.names, d.clients, d.pods = map[string]*nsRcodes{}, map[string]*int64{}, map[string]*podCounts{}
	}
}

// flush writes a namespace's counts of the minute from start, and zeroes them.
func (d *nsDetail) flush(ctx context.Context, dc driver.Conn, start int64, namespace string) error {
	for name, byRcode := range d.names {
		for rcode, c := range *byRcode {
			if c.n == 0 {
				continue
			}
			if err := rawsql.Exec(ctx, dc, `INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)
				VALUES (60, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT DO UPDATE SET n = n + excluded.n, a = a + excluded.a, aaaa = aaaa + excluded.aaaa, answered = answered + excluded.answered`,
				start, namespace, name, rcode, c.n, c.a, c.aaaa, c.answered); err != nil {
				return err
			}
			*c = nsNameCounts{}
		}
	}
	for client, n := range d.clients {
		if *n == 0 {
			continue
		}
		if err := rawsql.Exec(ctx, dc, `INSERT INTO rollup_namespace_clients (span, start, namespace, client, n) VALUES (60, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET n = n + excluded.n`, start, namespace, client, *n); err != nil {
			return err
		}
		*n = 0
	}
	for pod, c := range d.pods {
		if c.n == 0 {
			continue
		}
		if err := rawsql.Exec(ctx, dc, `INSERT INTO rollup_namespace_pods (span, start, namespace, pod, n, hits, misses) VALUES (60, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET n = n + excluded.n, hits = hits + excluded.hits, misses = misses + excluded.misses`,
			start, namespace, pod, c.n, c.hits, c.misses); err != nil {
			return err
		}
		*c = podCounts{}
	}
	return nil
}

// checkNamespaceLimits is checkLimits for the names and clients of each namespace of a minute:
// those the minute already has rows for count towards the limit, and counts past it are
// folded into otherKey.
func checkNamespaceLimits(ctx context.Context, dc driver.Conn, start int64, m *minuteCounts, limit int) error {
	for _, q := range []struct {
		query string
		check func(d *nsDetail, stored []string)
	}{
		{`SELECT DISTINCT namespace, name FROM rollup_namespace_names WHERE span = 60 AND start = ? AND name <> '(other)'`,
			func(d *nsDetail, stored []string) {
				for name, byRcode := range fold(d.names, stored, limit) {
					for rcode, c := range *byRcode {
						d.countsOf(otherKey, rcode, limit).add(c)
					}
					delete(d.names, name)
				}
				addKeys(d.names, stored, func() *nsRcodes { return &nsRcodes{} })
			}},
		{`SELECT namespace, client FROM rollup_namespace_clients WHERE span = 60 AND start = ? AND client <> '(other)'`,
			func(d *nsDetail, stored []string) {
				for client, n := range fold(d.clients, stored, limit) {
					if d.clients[otherKey] == nil {
						d.clients[otherKey] = new(int64)
					}
					*d.clients[otherKey] += *n
					delete(d.clients, client)
				}
				addKeys(d.clients, stored, func() *int64 { return new(int64) })
			}},
		{`SELECT namespace, pod FROM rollup_namespace_pods WHERE span = 60 AND start = ? AND pod <> '(other)'`,
			func(d *nsDetail, stored []string) {
				for pod, c := range fold(d.pods, stored, limit) {
					d.podOf(otherKey, limit).add(c)
					delete(d.pods, pod)
				}
				addKeys(d.pods, stored, func() *podCounts { return &podCounts{} })
			}},
	} {
		stored := map[string][]string{}
		if err := rawsql.Each(ctx, dc, q.query, []any{start}, func(v []driver.Value) error {
			ns := asText(v[0])
			stored[ns] = append(stored[ns], asText(v[1]))
			return nil
		}); err != nil {
			return err
		}
		for ns, c := range m.namespaces {
			c.detail.init()
			q.check(&c.detail, stored[ns])
		}
	}
	return nil
}

// asText is a text column's value as the driver gives it.
func asText(v driver.Value) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	return ""
}

// A namespace's names, clients and pods take the most room of the rollups: up to limit rows per
// namespace and minute. Minutes serve only the hours not summed yet, so an hour's sum adds its
// minutes to the hour's rows and deletes them (a late row's minute adds to the hour again), and
// a day is summed from its hours. The querylog command reads them by whole hours.

// sumNamespaceHour are sumPeriod's statements for the names, clients and pods of each namespace
// in the hour from ?2: the minutes are added to the hour's rows (those of an earlier sum, if
// late rows came), deleted, and within each namespace the limit (?4) names, clients or pods with
// the most queries keep their own rows, the others are added to (other).
var sumNamespaceHour = append([]string{
	`INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)
	SELECT ?1, ?2, namespace, name, rcode, sum(n), sum(a), sum(aaaa), sum(answered) FROM rollup_namespace_names
	WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, name, rcode
	ON CONFLICT DO UPDATE SET n = n + excluded.n, a = a + excluded.a, aaaa = aaaa + excluded.aaaa, answered = answered + excluded.answered`,
	`DELETE FROM rollup_namespace_names WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1`,
	`INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)
	SELECT ?1, ?2, namespace, '(other)', rcode, sum(n), sum(a), sum(aaaa), sum(answered) FROM rollup_namespace_names
	WHERE span = ?1 AND start = ?2 AND (namespace, name) IN (` + pastLimit("name", "rollup_namespace_names") + `) GROUP BY namespace, rcode
	ON CONFLICT DO UPDATE SET n = n + excluded.n, a = a + excluded.a, aaaa = aaaa + excluded.aaaa, answered = answered + excluded.answered`,
	`DELETE FROM rollup_namespace_names WHERE span = ?1 AND start = ?2 AND (namespace, name) IN (` + pastLimit("name", "rollup_namespace_names") + `)`,
}, keyedSums(keyedHourSums)...)

// keyedTables are the namespace tables that count one key (the names also key by rcode), with
// their counts, n first (a period keeps the keys with the most): keyedHourSums and keyedDaySums
// make their sums.
var keyedTables = []struct {
	table, key string
	counts     []string
}{{"rollup_namespace_clients", "client", []string{"n"}}, {"rollup_namespace_pods", "pod", []string{"n", "hits", "misses"}}}

// keyedSums are the statements sum makes for each of keyedTables.
func keyedSums(sum func(table, key string, counts []string) []string) []string {
	var out []string
	for _, t := range keyedTables {
		out = append(out, sum(t.table, t.key, t.counts)...)
	}
	return out
}

// keyedHourSums are sumNamespaceHour's statements for table, which counts key (its counts
// added up) within each namespace.
func keyedHourSums(table, key string, counts []string) []string {
	cols, sums, upd := keyedColumns(counts, "")
	return []string{
		`INSERT INTO ` + table + ` (span, start, namespace, ` + key + cols + `) SELECT ?1, ?2, namespace, ` + key + sums + ` FROM ` + table + `
		WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, ` + key + ` ON CONFLICT DO UPDATE SET ` + upd,
		`DELETE FROM ` + table + ` WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1`,
		`INSERT INTO ` + table + ` (span, start, namespace, ` + key + cols + `) SELECT ?1, ?2, namespace, '(other)'` + sums + ` FROM ` + table + `
		WHERE span = ?1 AND start = ?2 AND (namespace, ` + key + `) IN (` + pastLimit(key, table) + `) GROUP BY namespace ON CONFLICT DO UPDATE SET ` + upd,
		`DELETE FROM ` + table + ` WHERE span = ?1 AND start = ?2 AND (namespace, ` + key + `) IN (` + pastLimit(key, table) + `)`,
	}
}

// keyedDaySums are sumNamespaceDay's statements for table: the sums of the day's hours, each
// namespace keeping the limit (?4) keys with the most queries.
func keyedDaySums(table, key string, counts []string) []string {
	cols, _, _ := keyedColumns(counts, "")
	_, psums, _ := keyedColumns(counts, "p.")
	var parts []string
	for _, c := range counts {
		parts = append(parts, "sum("+c+") AS "+c)
	}
	return []string{
		`DELETE FROM ` + table + ` WHERE span = ?1 AND start = ?2`,
		`WITH parts AS (SELECT namespace, ` + key + `, ` + strings.Join(parts, ", ") + ` FROM ` + table + `
		                WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, ` + key + `),
		      ranked AS (SELECT namespace, ` + key + `, row_number() OVER (PARTITION BY namespace ORDER BY n DESC, ` + key + `) AS r
		                 FROM parts WHERE ` + key + ` <> '(other)'),
		      keep AS (SELECT namespace, ` + key + ` FROM ranked WHERE r <= ?4)
		INSERT INTO ` + table + ` (span, start, namespace, ` + key + cols + `)
		SELECT ?1, ?2, p.namespace, iif(k.` + key + ` IS NULL, '(other)', p.` + key + `) AS folded` + psums + `
		FROM parts p LEFT JOIN keep k ON k.namespace = p.namespace AND k.` + key + ` = p.` + key + ` GROUP BY p.namespace, folded`,
	}
}

// keyedColumns are counts as a column list, as sums of the columns of prefix, and as the
// updates that add a conflicting row's counts, each list but the last beginning with ", ".
func keyedColumns(counts []string, prefix string) (cols, sums, updates string) {
	var upd []string
	for _, c := range counts {
		cols += ", " + c
		sums += ", sum(" + prefix + c + ")"
		upd = append(upd, c+" = "+c+" + excluded."+c)
	}
	return cols, sums, strings.Join(upd, ", ")
}

// pastLimit selects the namespace and key of the rows of the period (?1, ?2) of table that
// rank past the limit (?4) of their namespace by queries.
func pastLimit(key, table string) string {
	return `SELECT namespace, ` + key + ` FROM (SELECT namespace, ` + key + `, row_number() OVER (PARTITION BY namespace ORDER BY sum(n) DESC, ` + key + `) AS r
		FROM ` + table + ` WHERE span = ?1 AND start = ?2 AND ` + key + ` <> '(other)' GROUP BY namespace, ` + key + `) WHERE r > ?4`
}

// sumNamespaceDay are sumPeriod's statements for the names, clients and pods of each namespace
// in the day from ?2, from its hours: within each namespace, the limit (?4) with the most queries keep
// their own rows.
var sumNamespaceDay = append([]string{
	`DELETE FROM rollup_namespace_names WHERE span = ?1 AND start = ?2`,
	`WITH parts AS (SELECT namespace, name, rcode, sum(n) AS n, sum(a) AS a, sum(aaaa) AS aaaa, sum(answered) AS answered
	                FROM rollup_namespace_names WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, name, rcode),
	      ranked AS (SELECT namespace, name, row_number() OVER (PARTITION BY namespace ORDER BY sum(n) DESC, name) AS r
	                 FROM parts WHERE name <> '(other)' GROUP BY namespace, name),
	      keep AS (SELECT namespace, name FROM ranked WHERE r <= ?4)
	INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered)
	SELECT ?1, ?2, p.namespace, iif(k.name IS NULL, '(other)', p.name) AS folded, p.rcode, sum(p.n), sum(p.a), sum(p.aaaa), sum(p.answered)
	FROM parts p LEFT JOIN keep k ON k.namespace = p.namespace AND k.name = p.name GROUP BY p.namespace, folded, p.rcode`,
}, keyedSums(keyedDaySums)...)
