package querylog

import (
	"context"
	"database/sql"
	"database/sql/driver"

	"io"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/codenames"
)

// Everything shipping reads from or writes to SQLite is in this file, so that a schema change
// is ported here: shipRow (one row as ClickHouse gets it) and readShipBatch (the only query
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

// readShipBatch reads up to limit rows with an id above after, in id order, into dst: rows of
// schema 1 first while there are any, then those of the log table. It reads the tables rather
// than the queries view, whose UNION ALL would make SQLite sort every row after the cursor.
func readShipBatch(db *sql.DB, after int64, limit int, dst []shipRow) ([]shipRow, error) {
	conn, err := db.Conn(context.Background())
	if err != nil {
		return dst, err
	}
	defer conn.Close()
	var v1, meta, answers bool
	if err := conn.QueryRowContext(context.Background(), `SELECT
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'queries_v1'),
		EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'metadata'),
		EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'answer_data')`).Scan(&v1, &meta, &answers); err != nil {
		return dst, err
	}
	queries := []string{`SELECT ` + logColumns(meta, answers) + `,
		(SELECT b.n + l.id - b.first_id + 1 FROM batches b WHERE b.first_id <= l.id ORDER BY b.first_id DESC LIMIT 1)
		FROM log l WHERE l.id > ? ORDER BY l.id LIMIT ?`}
	if v1 && after < v2FirstID {
		queries = append([]string{`SELECT rowid, ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers,
			duration_us, 0, 0, 0, 0, 0, 0, "do", NULL, NULL, NULL, NULL, NULL, rowid
			FROM queries_v1 WHERE rowid > ? ORDER BY rowid LIMIT ?`}, queries...)
	}
	// Straight from the driver: database/sql's Scan would take about a third of the time.
	err = conn.Raw(func(dc any) error {
		for _, q := range queries {
			if len(dst) >= limit {
				return nil
			}
			rows, err := dc.(driver.QueryerContext).QueryContext(context.Background(), q,
				[]driver.NamedValue{{Ordinal: 1, Value: after}, {Ordinal: 2, Value: int64(limit - len(dst))}})
			if err != nil {
				return err
			}
			v := make([]driver.Value, len(rows.Columns()))
			for {
				if err := rows.Next(v); err == io.EOF {
					break
				} else if err != nil {
					rows.Close()
					return err
				}
				r := shipRow{
					seq: asInt(v[0]), ts: asInt(v[1]), server: asText(v[2]), clientIP: asText(v[3]),
					proto: asText(v[4]), qname: asText(v[5]), qtype: typeName(uint16(asInt(v[6]))),
					qclass: codenames.Class(asInt(v[7])), rcode: rcodeName(uint16(asInt(v[8]))),
					size: uint32(asInt(v[9])), answers: uint16(asInt(v[10])), durationUS: asInt(v[11]),
					aa: uint8(asInt(v[12])), tc: uint8(asInt(v[13])), rd: uint8(asInt(v[14])), ra: uint8(asInt(v[15])),
					ad: uint8(asInt(v[16])), cd: uint8(asInt(v[17])), doBit: uint8(asInt(v[18])),
					plugin: asText(v[19]), ede: -1, upstream: asText(v[21]), metadata: asText(v[22]), answerData: asText(v[23]),
					n: asInt(v[24]),
				}
				if ede, ok := v[20].(int64); ok {
					r.ede = int32(ede)
				}
				dst = append(dst, r)
				after = r.seq
			}
			rows.Close()
		}
		return nil
	})
	return dst, err
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
	db, err := sql.Open("sqlite", readerDSN(path))
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
