package querylog

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
)

// schemaVersion is PRAGMA user_version after migrate; when the schema changes, bump
// logrow.SchemaVersion (the querylog command reads up to it) and add a step to migrations. A
// file without logrow.ApplicationID is refused rather than modified.
const schemaVersion = logrow.SchemaVersion

// migrations[i] takes a database from user_version i to i+1. Each runs in the transaction that
// sets the new user_version.
var migrations = []string{
	// 1: one row of text per reply, indexed by ts, as schema 1 shipped it.
	`CREATE TABLE queries (
		ts          INTEGER NOT NULL, -- Unix time in milliseconds when the query arrived
		server      TEXT    NOT NULL, -- listener, e.g. dns://:53
		client_ip   TEXT    NOT NULL,
		proto       TEXT    NOT NULL, -- udp, tcp, dot, doh, doh3, doq, grpc, unix
		qname       TEXT    NOT NULL, -- lower-cased, presentation format with \DDD escapes
		qtype       INTEGER NOT NULL,
		qclass      INTEGER NOT NULL,
		rcode       INTEGER NOT NULL,
		size        INTEGER NOT NULL, -- response bytes
		answers     INTEGER NOT NULL,
		duration_us INTEGER NOT NULL,
		"do"        INTEGER NOT NULL  -- DNSSEC OK bit of the query
	);
	-- ts only grows, so this index appends at its right edge and costs little on insert; it
	-- serves every time-window question and retention. See README for measured alternatives.
	CREATE INDEX queries_ts ON queries (ts);
	CREATE TABLE qtype_names (code INTEGER PRIMARY KEY, name TEXT NOT NULL);
	CREATE TABLE rcode_names (code INTEGER PRIMARY KEY, name TEXT NOT NULL);
	CREATE VIEW queries_readable AS
	SELECT q.ts, strftime('%Y-%m-%dT%H:%M:%fZ', q.ts / 1000.0, 'unixepoch') AS time,
	       q.server, q.client_ip, q.proto, q.qname,
	       coalesce(t.name, 'TYPE' || q.qtype) AS qtype,
	       CASE q.qclass WHEN 1 THEN 'IN' WHEN 3 THEN 'CH' WHEN 4 THEN 'HS' WHEN 254 THEN 'NONE'
	                     WHEN 255 THEN 'ANY' ELSE 'CLASS' || q.qclass END AS qclass,
	       coalesce(r.name, 'RCODE' || q.rcode) AS rcode,
	       q.size, q.answers, q.duration_us, q."do"
	FROM queries q
	LEFT JOIN qtype_names t ON t.code = q.qtype
	LEFT JOIN rcode_names r ON r.code = q.rcode;`,

	// 2: packed rows (codec.go) with dictionaries (dict.go) and labels (labels.go), and no
	// index: id is the time index. Rows written by schema 1 stay where they are, renamed
	// queries_v1, and are read through the views until retention or max_size has removed
	// them (then store.tidy drops the table).
	`DROP VIEW IF EXISTS queries_readable;
	ALTER TABLE queries RENAME TO queries_v1;
	CREATE TABLE log (
		id     INTEGER PRIMARY KEY, -- (arrival ms << 8) + n
		name,                       -- names.id, or the query name itself (no type: no conversion)
		client,                     -- clients.id, or the client address itself
		late   INTEGER NOT NULL,    -- (id >> 8) - arrival ms
		a      INTEGER NOT NULL,    -- question and outcome, see codec.go
		b      INTEGER NOT NULL,    -- who answered, reply shape
		c      INTEGER NOT NULL     -- size, duration
	);
	CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
	CREATE TABLE clients (id INTEGER PRIMARY KEY, addr TEXT NOT NULL);
	CREATE TABLE labels (kind INTEGER NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL,
		PRIMARY KEY (kind, n), UNIQUE (kind, text)) WITHOUT ROWID;
	CREATE TABLE dict_epochs (log_id INTEGER PRIMARY KEY, name_id INTEGER NOT NULL, client_id INTEGER NOT NULL);
	-- Each batch: its first id, how many rows were written before it, and its rows. The ids of
	-- a batch are consecutive, so a row's ordinal (n + id - first_id + 1) counts every row ever
	-- written, with no gap but for rows deleted (the shipper sends it for gap checks).
	CREATE TABLE batches (first_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, rows INTEGER NOT NULL);
	CREATE TABLE state (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
	-- Rollups (rollup.go): counts per period of span seconds (60, 3600, 86400) from start (Unix
	-- seconds). d0..d15 count durations up to 100, 250, 500 µs, 1, 2.5, 5, 10, 25, 50, 100,
	-- 250, 500 ms, 1, 2.5, 5 s, and longer.
	CREATE TABLE rollup_names (span INTEGER NOT NULL, start INTEGER NOT NULL, name TEXT NOT NULL,
		rcode INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (span, start, name, rcode)) WITHOUT ROWID;
	CREATE TABLE rollup_clients (span INTEGER NOT NULL, start INTEGER NOT NULL, client TEXT NOT NULL,
		n INTEGER NOT NULL, PRIMARY KEY (span, start, client)) WITHOUT ROWID;
	CREATE TABLE rollup_outcomes (span INTEGER NOT NULL, start INTEGER NOT NULL, rcode INTEGER NOT NULL,
		qtype INTEGER NOT NULL, proto TEXT NOT NULL, plugin TEXT NOT NULL, n INTEGER NOT NULL,
		duration_us INTEGER NOT NULL,
		d0 INTEGER NOT NULL DEFAULT 0, d1 INTEGER NOT NULL DEFAULT 0, d2 INTEGER NOT NULL DEFAULT 0, d3 INTEGER NOT NULL DEFAULT 0,
		d4 INTEGER NOT NULL DEFAULT 0, d5 INTEGER NOT NULL DEFAULT 0, d6 INTEGER NOT NULL DEFAULT 0, d7 INTEGER NOT NULL DEFAULT 0,
		d8 INTEGER NOT NULL DEFAULT 0, d9 INTEGER NOT NULL DEFAULT 0, d10 INTEGER NOT NULL DEFAULT 0, d11 INTEGER NOT NULL DEFAULT 0,
		d12 INTEGER NOT NULL DEFAULT 0, d13 INTEGER NOT NULL DEFAULT 0, d14 INTEGER NOT NULL DEFAULT 0, d15 INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (span, start, rcode, qtype, proto, plugin)) WITHOUT ROWID;`,

	// 3: who asked and how it was answered (cluster.go). The log table's pod and cache columns
	// are added with the first row that has either (addColumns), so that a server outside
	// Kubernetes and without cache pays nothing for them. pods is a dictionary (dict.go) of
	// the kubernetes plugin's client metadata: a pod is in one namespace, so one number names
	// both. retries lists the rows that retransmit an earlier query (retransmit.go), most rows
	// none. rollup_namespaces counts per namespace; hits and misses count the cache's replies;
	// rollup_namespace_names, _clients and _pods count within each namespace (rollup_namespace.go).
	// rollup_names_name finds the periods that counted a name (querylog new): a few hundred
	// rows a minute to index, against the log's thousands of rows a second. names_name finds a
	// name's numbers in the dictionary (querylog new) without reading it all: one index entry
	// per name numbered, a name numbered once per epoch. rollup_upstreams
	// counts per upstream (rollup_upstreams.go); in a file upgraded from schema 2, the rollups
	// counted no upstream up to rollup_id, which rollup_upstreams_after keeps (querylog top
	// upstreams reads the rows of the periods before it).
	// rollup_searchpath and rollup_searchpath_suffixes hold each hour's and day's fold of its
	// namespace names, and each finished minute's until its hour is summed (rollup_searchpath.go),
	// for querylog searchpath over long windows.
	`CREATE TABLE pods (id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL);
	ALTER TABLE dict_epochs ADD COLUMN pod_id INTEGER NOT NULL DEFAULT 1;
	CREATE TABLE retries (id INTEGER PRIMARY KEY, first_id INTEGER NOT NULL);
	CREATE INDEX names_name ON names (name);
	CREATE TABLE rollup_namespace_pods (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL, pod TEXT NOT NULL,
		n INTEGER NOT NULL, hits INTEGER NOT NULL, misses INTEGER NOT NULL, PRIMARY KEY (span, start, namespace, pod)) WITHOUT ROWID;
	CREATE TABLE rollup_namespaces (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL,
		n INTEGER NOT NULL, nxdomain INTEGER NOT NULL, hits INTEGER NOT NULL, misses INTEGER NOT NULL, retries INTEGER NOT NULL,
		PRIMARY KEY (span, start, namespace)) WITHOUT ROWID;
	ALTER TABLE rollup_outcomes ADD COLUMN hits INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE rollup_outcomes ADD COLUMN misses INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX rollup_names_name ON rollup_names (name, start);
	CREATE TABLE rollup_namespace_names (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
		rcode INTEGER NOT NULL, n INTEGER NOT NULL, a INTEGER NOT NULL, aaaa INTEGER NOT NULL, answered INTEGER NOT NULL,
		PRIMARY KEY (span, start, namespace, name, rcode)) WITHOUT ROWID;
	CREATE TABLE rollup_namespace_clients (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL, client TEXT NOT NULL,
		n INTEGER NOT NULL, PRIMARY KEY (span, start, namespace, client)) WITHOUT ROWID;
	CREATE TABLE rollup_searchpath (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
		lookups INTEGER NOT NULL, queries INTEGER NOT NULL, nxdomain INTEGER NOT NULL,
		ndots1 INTEGER NOT NULL, ndots2 INTEGER NOT NULL, ndots3 INTEGER NOT NULL, ndots4 INTEGER NOT NULL, ndots5 INTEGER NOT NULL,
		PRIMARY KEY (span, start, namespace, name)) WITHOUT ROWID;
	CREATE TABLE rollup_searchpath_suffixes (span INTEGER NOT NULL, start INTEGER NOT NULL, namespace TEXT NOT NULL, suffix TEXT NOT NULL,
		weight INTEGER NOT NULL, PRIMARY KEY (span, start, namespace, suffix)) WITHOUT ROWID;
	CREATE TABLE rollup_upstreams (span INTEGER NOT NULL, start INTEGER NOT NULL, upstream TEXT NOT NULL,
		n INTEGER NOT NULL, servfail INTEGER NOT NULL, duration_us INTEGER NOT NULL,
		d0 INTEGER NOT NULL DEFAULT 0, d1 INTEGER NOT NULL DEFAULT 0, d2 INTEGER NOT NULL DEFAULT 0, d3 INTEGER NOT NULL DEFAULT 0,
		d4 INTEGER NOT NULL DEFAULT 0, d5 INTEGER NOT NULL DEFAULT 0, d6 INTEGER NOT NULL DEFAULT 0, d7 INTEGER NOT NULL DEFAULT 0,
		d8 INTEGER NOT NULL DEFAULT 0, d9 INTEGER NOT NULL DEFAULT 0, d10 INTEGER NOT NULL DEFAULT 0, d11 INTEGER NOT NULL DEFAULT 0,
		d12 INTEGER NOT NULL DEFAULT 0, d13 INTEGER NOT NULL DEFAULT 0, d14 INTEGER NOT NULL DEFAULT 0, d15 INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (span, start, upstream)) WITHOUT ROWID;
	INSERT INTO state (key, value) SELECT 'rollup_upstreams_after', value FROM state WHERE key = 'rollup_id';`,

	// 4: what querylog new needs to find the names first seen in a window without reading
	// every row of it. A name's text is in the row the first time the writer sees it in an
	// epoch (dict.go), so the rows that hold a text are the window's candidates: files written
	// at schema 4 indexed them (CREATE INDEX log_texts ON log (id) WHERE typeof(name) = 'text'),
	// which schema 5 replaces with a table; an upgrade from an older schema goes to the table
	// without building the index. names.first is the id of the first row that holds the number
	// (NULL for numbers given before schema 4). names.n counts the rows that hold the number up
	// to its epoch's names_counted (NULL: none counted); the rows after it are counted from the
	// log. The writer adds its counts to n at most once a minute and at close, and sets
	// names_counted of the epochs it recorded (namecounts.go); an epoch of a process that died
	// keeps the names_counted of its last flush.
	`ALTER TABLE names ADD COLUMN first INTEGER;
	ALTER TABLE names ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE dict_epochs ADD COLUMN names_counted INTEGER;`,

	// 5: log_texts, the ids of the rows that hold a name as text, is a table the writer fills
	// with the rows (writestate.go) and tidy empties with them (store.go). Schema 4's index of
	// them was built by a sort, which SQLite keeps in memory under temp_store MEMORY: 55 B a
	// row that holds a text, 550 MB for a file of 10 million rows of a random-subdomain flood,
	// in a pod of 170 MiB. The table is filled in id order, appended to the file before the
	// index is dropped (filled into the index's freed pages, each would be copied into the
	// statement's journal, in memory too): the page cache's memory, whatever the rows. An entry
	// takes 12 B, where the index's held the id twice (25 B). A file whose index was dropped by
	// hand upgrades all the same.
	`CREATE TABLE log_texts_5 (id INTEGER PRIMARY KEY);
	INSERT INTO log_texts_5 (id) SELECT id FROM log WHERE typeof(name) = 'text' ORDER BY id;
	DROP INDEX IF EXISTS log_texts;
	ALTER TABLE log_texts_5 RENAME TO log_texts;`,

	// 6: the first sightings of names (firsts.go). name_firsts lists the rows holding a name as
	// text whose name the file did not know logrow.FirstsHorizon before the row, with the name,
	// the row's lateness, and whether the names table held the name (named); name_firsts_gaps
	// the minutes whose text rows were not all judged (domains: for their domains). The list
	// begins with the first row written at schema 6 (state name_firsts_from): querylog new reads
	// it for windows from there. domains_seen holds each registered domain of the names the
	// writer saw as text, with the ids of the first and last such rows; an upgrade fills it
	// from the names table and the rollups' names (backfillSeenDomains).
	`CREATE TABLE name_firsts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, late INTEGER NOT NULL, named INTEGER NOT NULL);
	CREATE TABLE name_firsts_gaps (minute INTEGER PRIMARY KEY, domains INTEGER NOT NULL);
	CREATE TABLE domains_seen (domain TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL) WITHOUT ROWID;
	INSERT INTO state (key, value) SELECT 'name_firsts_from', coalesce(max(id), 0) + 1 FROM log;`,
}

// layoutColumns are what a database's tables are like now, as four booleans: rows of schema
// 1 remain (queries_v1), the log table has the metadata column, the answer_data column, and
// the pod and cache columns.
const layoutColumns = `EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'queries_v1'),
	EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'metadata'),
	EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'answer_data'),
	EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'pod')`

// namesIndexedColumn says whether an index of the whole names table begins with the name
// (names_name), which the writer's findName seeks by.
const namesIndexedColumn = `EXISTS (SELECT 1 FROM pragma_index_list('names') l JOIN pragma_index_info(l.name) i
	WHERE l.partial = 0 AND i.seqno = 0 AND i.name = 'name')`

// layout is what layoutColumns tells.
type layout struct {
	v1 bool
	logrow.Layout
}

func (l *layout) dest() []any { return []any{&l.v1, &l.Meta, &l.Answers, &l.Cluster} }

// createViews (re)creates the views over what the database holds now: the log table, the
// optional columns once they have been added, and rows of schema 1 while there are any.
//
// queries has the columns of schema 1's table (codes as integers) and the fields schema 2
// added; queries_readable shows the same rows with names for codes and an ISO 8601 time.
func createViews(tx *sql.Tx) error {
	var lay layout
	if err := tx.QueryRow(`SELECT ` + layoutColumns).Scan(lay.dest()...); err != nil {
		return err
	}
	queries := `CREATE VIEW queries AS
	SELECT ` + logColumns(lay) + `
	FROM log l`
	if lay.v1 {
		queries += `
	UNION ALL
	SELECT rowid, ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us,
	       NULL, NULL, NULL, NULL, NULL, NULL, "do", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
	FROM queries_v1`
	}
	readable := `CREATE VIEW queries_readable AS
	SELECT q.id, q.ts, strftime('%Y-%m-%dT%H:%M:%fZ', q.ts / 1000.0, 'unixepoch') AS time,
	       q.server, q.client_ip, q.proto, q.qname,
	       coalesce(t.name, 'TYPE' || q.qtype) AS qtype,
	       CASE q.qclass WHEN 1 THEN 'IN' WHEN 3 THEN 'CH' WHEN 4 THEN 'HS' WHEN 254 THEN 'NONE'
	                     WHEN 255 THEN 'ANY' ELSE 'CLASS' || q.qclass END AS qclass,
	       coalesce(r.name, 'RCODE' || q.rcode) AS rcode,
	       q.size, q.answers, q.duration_us, q."do", q.plugin,
	       trim(iif(q.aa, 'aa ', '') || iif(q.tc, 'tc ', '') || iif(q.rd, 'rd ', '') || iif(q.ra, 'ra ', '') ||
	            iif(q.ad, 'ad ', '') || iif(q.cd, 'cd ', '')) AS flags,
	       q.ede, q.upstream, q.metadata, q.answer_data, q.namespace, q.pod, q.cache, q.retry_of
	FROM queries q
	LEFT JOIN qtype_names t ON t.code = q.qtype
	LEFT JOIN rcode_names r ON r.code = q.rcode`
	for _, stmt := range []string{`DROP VIEW IF EXISTS queries_readable`, `DROP VIEW IF EXISTS queries`, queries, readable} {
		if _, err := tx.Exec(stmt); err != nil {
			return fmt.Errorf("%w in %s", err, stmt)
		}
	}
	return nil
}

// logColumns is the select list of the queries view over a log row l, for the view and for
// readers that must not go through it (the shipper: an ORDER BY over the view's UNION ALL with
// schema 1's rows sorts all of them). lay says which optional columns the table has.
func logColumns(lay layout) string {
	var flagCols strings.Builder
	for i, name := range flagColumns {
		fmt.Fprintf(&flagCols, ", "+sqlFlag+" AS %s", 16+i, name)
	}
	optional := func(has bool, col string) string {
		if has {
			return "l." + col
		}
		return "NULL"
	}
	protos := make([]string, len(logrow.Protos))
	for i, p := range logrow.Protos {
		protos[i] = fmt.Sprintf("WHEN %d THEN '%s'", i, p)
	}
	// Lookups are scalar subqueries rather than joins: SQLite evaluates one only when its
	// column is used, where it would join every row for an aggregate (count, GROUP BY).
	label := func(kind labelKind, number string) string {
		return fmt.Sprintf(`(SELECT text FROM labels WHERE kind = %d AND n = %s)`, kind, number)
	}
	return `l.id, ` + sqlTS + ` AS ts, coalesce(` + label(labelServer, sqlServer) + `, '') AS server,
	       CASE WHEN typeof(l.client) = 'integer' THEN (SELECT addr FROM clients WHERE id = l.client) ELSE l.client END AS client_ip,
	       CASE ` + sqlProto + ` ` + strings.Join(protos, " ") + ` END AS proto,
	       CASE WHEN typeof(l.name) = 'integer' THEN (SELECT name FROM names WHERE id = l.name) ELSE l.name END AS qname,
	       ` + sqlQtype + ` AS qtype, ` + sqlQclass + ` AS qclass, ` + sqlRcode + ` AS rcode,
	       ` + sqlSize + ` AS size, ` + sqlAnswers + ` AS answers, ` + sqlDuration + ` AS duration_us` +
		flagCols.String() + `,
	       ` + label(labelPlugin, sqlPlugin) + ` AS plugin, ` + sqlEDE + ` AS ede, ` + label(labelUpstream, sqlUpstream) + ` AS upstream,
	       ` + optional(lay.Meta, "metadata") + ` AS metadata, ` + optional(lay.Answers, "answer_data") + ` AS answer_data,
	       ` + podColumns(lay.Cluster) + `,
	       (SELECT first_id FROM retries WHERE id = l.id) AS retry_of`
}

// podColumns are the namespace, pod and cache columns of the view, from the pods dictionary
// and the cache column (cluster.go) where the table has them.
func podColumns(has bool) string {
	if !has {
		return `NULL AS namespace, NULL AS pod, NULL AS cache`
	}
	return `(SELECT namespace FROM pods WHERE id = l.pod) AS namespace, (SELECT name FROM pods WHERE id = l.pod) AS pod,
	       CASE l.cache WHEN 1 THEN 'hit' WHEN 0 THEN 'miss' END AS cache`
}

// fillNames stores miekg/dns's type and rcode names for the queries_readable view.
func fillNames(tx *sql.Tx) error {
	for code, name := range dns.TypeToString {
		if _, err := tx.Exec(`INSERT OR REPLACE INTO qtype_names VALUES (?, ?)`, code, name); err != nil {
			return err
		}
	}
	for code, name := range dns.RcodeToString {
		if _, err := tx.Exec(`INSERT OR REPLACE INTO rcode_names VALUES (?, ?)`, code, name); err != nil {
			return err
		}
	}
	return nil
}
