package querylog

import (
	"context"
	"database/sql"
	"database/sql/driver"

	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
)

// Everything shipping reads from or writes to SQLite is in this file, so that a schema change
// is ported here: shipRow (one row as ClickHouse gets it) and shipReader (the only reader
// that reads rows), the cursor table, and retention's bound.

// shipRow is one row as shipped, field for field the ClickHouse table (shipColumns in
// ship_clickhouse.go, in the same order). Rows of schema 1 (queries_v1, after an upgrade) have
// zero values for the fields schema 2 added, and ede -1.
type shipRow struct {
	seq        int64 // the row's id: with node, its identity in ClickHouse
	n          int64 // the row's ordinal: rows written before it, plus one (batches)
	ts         int64 // Unix milliseconds when the query arrived
	server     string
	clientIP   string
	proto      string
	qname      string
	qtype      string // names, as in queries_readable
	qclass     string
	rcode      string
	size       uint32
	answers    uint16
	durationUS int64
	doBit      uint8
	plugin     string // answering plugin
	aa, tc, rd uint8
	ra, ad, cd uint8
	ede        int32 // Extended DNS Error code, -1 when absent
	upstream   string
	metadata   string
	answerData string
}

// shipReader reads rows for the shipper. Rows of the log table are read as stored and decoded
// here (logrow.Decode), their dictionary and label numbers named from caches: through the
// queries view, every row cost a lookup in names, clients, labels (three) and batches, 5.7 µs
// of CPU a row and 210K rows/s catching up (BenchmarkShip). Dictionary numbers are never given
// twice, so a cached text stays right; the caches are emptied when they grow past
// shipCacheLimit. One goroutine at a time reads (the shipper, or its read-ahead).
type shipReader struct {
	db             *sql.DB
	names, clients map[int64]string    // dictionary texts by number
	labels         map[[2]int64]string // label texts by kind and number
}

// shipCacheLimit bounds each dictionary cache, in texts (about 100 bytes each).
const shipCacheLimit = 200_000

func newShipReader(db *sql.DB) *shipReader {
	return &shipReader{db: db, names: map[int64]string{}, clients: map[int64]string{}, labels: map[[2]int64]string{}}
}

// read reads up to limit rows with an id above after, in id order, into dst: rows of schema 1
// first while there are any, then those of the log table. It reads the tables rather than the
// queries view, whose UNION ALL would make SQLite sort every row after the cursor.
func (r *shipReader) read(after int64, limit int, dst []shipRow) ([]shipRow, error) {
	ctx := context.Background()
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return dst, err
	}
	defer conn.Close()
	// Straight from the driver (database/sql's Scan would take about a third of the time), in
	// one read transaction, so that rows, dictionaries, labels and batches agree.
	err = conn.Raw(func(c any) error {
		dc := c.(driver.Conn)
		if err := rawsql.Exec(ctx, dc, "BEGIN"); err != nil {
			return err
		}
		defer rawsql.Exec(ctx, dc, "ROLLBACK")
		var has [3]bool // queries_v1, log.metadata, log.answer_data
		if err := rawsql.Each(ctx, dc, `SELECT
			EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'queries_v1'),
			EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'metadata'),
			EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'answer_data')`, nil, func(v []driver.Value) error {
			for i := range has {
				has[i] = asInt(v[i]) != 0
			}
			return nil
		}); err != nil {
			return err
		}
		if has[0] && after < v2FirstID {
			if dst, err = readV1Rows(ctx, dc, after, limit, dst); err != nil {
				return err
			}
		}
		if len(dst) < limit {
			dst, err = r.readLogRows(ctx, dc, after, limit, has[1], has[2], dst)
		}
		return err
	})
	return dst, err
}

// readV1Rows reads rows of schema 1 (queries_v1) after the rowid after, up to limit in dst.
func readV1Rows(ctx context.Context, dc driver.Conn, after int64, limit int, dst []shipRow) ([]shipRow, error) {
	err := rawsql.Each(ctx, dc, `SELECT rowid, ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers,
		duration_us, "do" FROM queries_v1 WHERE rowid > ? ORDER BY rowid LIMIT ?`, []any{after, limit - len(dst)}, func(v []driver.Value) error {
		dst = append(dst, shipRow{
			seq: asInt(v[0]), n: asInt(v[0]), ts: asInt(v[1]), server: asText(v[2]), clientIP: asText(v[3]),
			proto: asText(v[4]), qname: asText(v[5]), qtype: typeName(uint16(asInt(v[6]))),
			qclass: logrow.Class(asInt(v[7])), rcode: rcodeName(uint16(asInt(v[8]))),
			size: uint32(asInt(v[9])), answers: uint16(asInt(v[10])), durationUS: asInt(v[11]),
			doBit: uint8(asInt(v[12])), ede: -1,
		})
		return nil
	})
	return dst, err
}

// readLogRows reads rows of the log table after the id after, up to limit in dst. meta and
// answers say whether the table has those columns.
func (r *shipReader) readLogRows(ctx context.Context, dc driver.Conn, after int64, limit int, meta, answers bool, dst []shipRow) ([]shipRow, error) {
	first := len(dst)
	optional := func(has bool, col string) string {
		if has {
			return col
		}
		return "NULL"
	}
	// Names and clients that are dictionary numbers are named once all rows are read.
	var nameIDs, clientIDs []int64
	var nameAt, clientAt []int // the rows (in dst) that wait for them
	labelsRead := false
	label := func(kind, n int64) (string, error) {
		if n == 0 {
			return "", nil
		}
		t, ok := r.labels[[2]int64{kind, n}]
		if !ok && !labelsRead {
			labelsRead = true // a label added since the cache was filled
			if err := rawsql.Each(ctx, dc, `SELECT kind, n, text FROM labels`, nil, func(v []driver.Value) error {
				r.labels[[2]int64{asInt(v[0]), asInt(v[1])}] = asText(v[2])
				return nil
			}); err != nil {
				return "", err
			}
			t = r.labels[[2]int64{kind, n}]
		}
		return t, nil
	}
	err := rawsql.Each(ctx, dc, `SELECT id, name, client, late, a, b, c, `+optional(meta, "metadata")+`, `+optional(answers, "answer_data")+`
		FROM log WHERE id > ? ORDER BY id LIMIT ?`, []any{after, limit - len(dst)}, func(v []driver.Value) error {
		id := asInt(v[0])
		f := logrow.Decode(id, asInt(v[3]), asInt(v[4]), asInt(v[5]), asInt(v[6]))
		row := shipRow{
			seq: id, ts: f.TS, proto: logrow.Proto(f.Proto), qtype: typeName(uint16(f.Qtype)),
			qclass: logrow.Class(f.Qclass), rcode: rcodeName(uint16(f.Rcode)), size: uint32(f.Size),
			answers: uint16(f.Answers), durationUS: f.DurationUS, ede: int32(f.EDE),
			aa: flagBit(f.Flags, logrow.FlagAA), tc: flagBit(f.Flags, logrow.FlagTC), rd: flagBit(f.Flags, logrow.FlagRD),
			ra: flagBit(f.Flags, logrow.FlagRA), ad: flagBit(f.Flags, logrow.FlagAD), cd: flagBit(f.Flags, logrow.FlagCD),
			doBit: flagBit(f.Flags, logrow.FlagDO), metadata: asText(v[7]), answerData: asText(v[8]),
		}
		var err error
		if row.server, err = label(logrow.LabelServer, f.Server); err != nil {
			return err
		}
		if row.plugin, err = label(logrow.LabelPlugin, f.Plugin); err != nil {
			return err
		}
		if row.upstream, err = label(logrow.LabelUpstream, f.Upstream); err != nil {
			return err
		}
		if n, ok := v[1].(int64); ok {
			if row.qname, ok = r.names[n]; !ok {
				nameIDs, nameAt = append(nameIDs, n), append(nameAt, len(dst))
			}
		} else {
			row.qname = asText(v[1])
		}
		if n, ok := v[2].(int64); ok {
			if row.clientIP, ok = r.clients[n]; !ok {
				clientIDs, clientAt = append(clientIDs, n), append(clientAt, len(dst))
			}
		} else {
			row.clientIP = asText(v[2])
		}
		dst = append(dst, row)
		return nil
	})
	if err != nil || len(dst) == first {
		return dst, err
	}
	if err := lookUp(ctx, dc, "names", "name", r.names, nameIDs); err != nil {
		return dst, err
	}
	for i, at := range nameAt {
		dst[at].qname = r.names[nameIDs[i]]
	}
	if err := lookUp(ctx, dc, "clients", "addr", r.clients, clientIDs); err != nil {
		return dst, err
	}
	for i, at := range clientAt {
		dst[at].clientIP = r.clients[clientIDs[i]]
	}
	return dst, numberRows(ctx, dc, dst[first:])
}

func flagBit(flags, bit int64) uint8 {
	if flags&bit != 0 {
		return 1
	}
	return 0
}

// lookUp adds to cache the texts of the dictionary table's numbers ids, a few hundred a query;
// it empties the cache first if they would grow it past shipCacheLimit.
func lookUp(ctx context.Context, dc driver.Conn, table, col string, cache map[int64]string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if len(cache)+len(ids) > shipCacheLimit {
		clear(cache)
	}
	ids = slices.Clone(ids) // the caller's order pairs them with rows
	slices.Sort(ids)
	ids = slices.Compact(ids)
	const chunk = 500
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		query := `SELECT id, ` + col + ` FROM ` + table + ` WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `)`
		if err := rawsql.Each(ctx, dc, query, args, func(v []driver.Value) error {
			cache[asInt(v[0])] = asText(v[1])
			return nil
		}); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// numberRows sets each row's ordinal (rows written before it, plus one) from the batches table:
// a batch's first row has n + 1, the next ones follow it.
func numberRows(ctx context.Context, dc driver.Conn, rows []shipRow) error {
	type batchStart struct{ firstID, n int64 }
	var batches []batchStart
	err := rawsql.Each(ctx, dc, `SELECT first_id, n FROM batches
		WHERE first_id >= coalesce((SELECT max(first_id) FROM batches WHERE first_id <= ?1), 0) AND first_id <= ?2
		ORDER BY first_id`, []any{rows[0].seq, rows[len(rows)-1].seq}, func(v []driver.Value) error {
		batches = append(batches, batchStart{asInt(v[0]), asInt(v[1])})
		return nil
	})
	if err != nil {
		return err
	}
	b := -1
	for i := range rows {
		for b+1 < len(batches) && batches[b+1].firstID <= rows[i].seq {
			b++
		}
		if b >= 0 {
			rows[i].n = batches[b].n + rows[i].seq - batches[b].firstID + 1
		}
	}
	return nil
}

// asInt and asText take a column's value as the driver returns it for INTEGER and TEXT.
func asInt(v driver.Value) int64 {
	n, _ := v.(int64)
	return n
}

func asText(v driver.Value) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

// typeName and rcodeName give the names queries_readable shows.
func typeName(t uint16) string {
	if n, ok := dns.TypeToString[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

func rcodeName(r uint16) string {
	if n, ok := dns.RcodeToString[int(r)]; ok {
		return n
	}
	return "RCODE" + strconv.Itoa(int(r))
}

// shipProgress is what the shipper reports about the database: the newest id and the arrival
// time of the oldest row after the cursor (0 if there is none). Rows of schema 1 (queries_v1)
// are older than every row of the log table, so the oldest unshipped row is one of theirs if
// any is left after the cursor.
func shipProgress(db *sql.DB, after int64) (newest, oldestTS int64, err error) {
	err = db.QueryRow(`SELECT coalesce((SELECT max(id) FROM log), 0),
		coalesce((SELECT `+sqlTS+` FROM log l WHERE id > ? ORDER BY id LIMIT 1), 0)`, after).Scan(&newest, &oldestTS)
	if err != nil || after >= v2FirstID {
		return newest, oldestTS, err
	}
	var v1TS int64
	err = db.QueryRow(`SELECT coalesce((SELECT ts FROM queries_v1 WHERE rowid > ? ORDER BY rowid LIMIT 1), 0)`, after).Scan(&v1TS)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		return newest, oldestTS, nil
	}
	if v1TS != 0 {
		oldestTS = v1TS
	}
	return newest, oldestTS, err
}

// countAfter counts the rows with an id above after.
func countAfter(db *sql.DB, after int64) (int64, error) {
	var n int64
	if err := db.QueryRow(`SELECT count(*) FROM log WHERE id > ?`, after).Scan(&n); err != nil {
		return 0, err
	}
	if after >= v2FirstID {
		return n, nil
	}
	var v1 int64
	err := db.QueryRow(`SELECT count(*) FROM queries_v1 WHERE rowid > ?`, after).Scan(&v1)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		err = nil
	}
	return n + v1, err
}

// openShipReader opens the shipper's own read-only connection: reading a batch takes tens of
// milliseconds, which must not hold up the flusher's connection.
func openShipReader(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", rawsql.ReaderDSN(path, busyTimeoutMS))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// The cursor is the highest seq ClickHouse has acknowledged, per target, in the state table of
// the database itself (key "ship:" and the target), so that it moves with the file (a backup,
// a restored copy).

// loadCursor returns target's cursor (0 if none). It runs on the writer's connection.
func (s *store) loadCursor(target string) (int64, error) {
	var seq int64
	err := s.db.QueryRow(`SELECT coalesce((SELECT value FROM state WHERE key = ?), 0)`, "ship:"+target).Scan(&seq)
	return seq, err
}

// saveCursor records target's cursor; a tiny transaction on the writer's connection.
func (s *store) saveCursor(target string, seq int64) error {
	_, err := s.db.Exec(`INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		"ship:"+target, seq)
	return err
}

// pruneOlderShipped is pruneOlder for a shipping writer: only rows ClickHouse holds (id up to
// shipped) are deleted, and never the newest row, so that an id is never handed out again.
func (s *store) pruneOlderShipped(cutoff, shipped int64, limit int) (int64, error) {
	if s.v1 {
		n, err := s.exec(`DELETE FROM queries_v1 WHERE rowid IN (SELECT rowid FROM queries_v1 WHERE ts < ? AND rowid <= ?
			ORDER BY rowid LIMIT ?)`, cutoff, shipped, limit)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return s.exec(`DELETE FROM log WHERE id IN (SELECT id FROM log WHERE id < ? AND id <= ?
		AND id < (SELECT max(id) FROM log) ORDER BY id LIMIT ?)`, cutoff<<8, shipped, limit)
}

// pruneOldestShipping is pruneOldest for a shipping writer: it deletes up to limit of the
// oldest rows but the newest, and also returns how many of them had not been shipped (id above
// shipped).
func (s *store) pruneOldestShipping(limit int, shipped int64) (deleted, unshipped int64, err error) {
	table, id := "log", "id"
	if s.v1 {
		var empty bool
		if err := s.db.QueryRow(`SELECT NOT EXISTS (SELECT 1 FROM queries_v1)`).Scan(&empty); err != nil {
			return 0, 0, err
		}
		if !empty {
			table, id = "queries_v1", "rowid"
		}
	}
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	var upTo int64
	err = tx.QueryRow(`SELECT coalesce(max(`+id+`), 0) FROM (SELECT `+id+` FROM `+table+`
		WHERE `+id+` < (SELECT max(id) FROM log) ORDER BY `+id+` LIMIT ?)`, limit).Scan(&upTo)
	if err != nil || upTo == 0 {
		return 0, 0, err
	}
	if err := tx.QueryRow(`SELECT count(*) FROM `+table+` WHERE `+id+` > ? AND `+id+` <= ?`, shipped, upTo).Scan(&unshipped); err != nil {
		return 0, 0, err
	}
	res, err := tx.Exec(`DELETE FROM `+table+` WHERE `+id+` <= ?`, upTo)
	if err != nil {
		return 0, 0, err
	}
	if deleted, err = res.RowsAffected(); err != nil {
		return 0, 0, err
	}
	return deleted, unshipped, tx.Commit()
}
