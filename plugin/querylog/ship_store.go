package querylog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/miekg/dns"
)

// Everything shipping reads from or writes to SQLite is in this file, so that a schema change
// is ported here: shipRow (one row as ClickHouse gets it) and readShipBatch (the only query
// that reads rows), the cursor table, and retention's bound.

// shipRow is one row as shipped, field for field the ClickHouse table (shipColumns in
// ship_clickhouse.go, in the same order). The fields after doBit come with schema v2; from a
// v1 database they are zero, with ede -1 (no Extended DNS Error).
type shipRow struct {
	seq        int64 // SQLite rowid: with node, the row's identity in ClickHouse
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

// readShipBatch reads up to limit rows with a rowid above after, in rowid order, into dst.
func readShipBatch(db *sql.DB, after int64, limit int, dst []shipRow) ([]shipRow, error) {
	conn, err := db.Conn(context.Background())
	if err != nil {
		return dst, err
	}
	defer conn.Close()
	// Straight from the driver: database/sql's Scan would take about a third of the time.
	err = conn.Raw(func(dc any) error {
		rows, err := dc.(driver.QueryerContext).QueryContext(context.Background(),
			`SELECT rowid, ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do"
			FROM queries WHERE rowid > ? ORDER BY rowid LIMIT ?`,
			[]driver.NamedValue{{Ordinal: 1, Value: after}, {Ordinal: 2, Value: int64(limit)}})
		if err != nil {
			return err
		}
		defer rows.Close()
		v := make([]driver.Value, 13)
		for {
			if err := rows.Next(v); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			dst = append(dst, shipRow{
				seq: asInt(v[0]), ts: asInt(v[1]), server: asText(v[2]), clientIP: asText(v[3]),
				proto: asText(v[4]), qname: asText(v[5]), qtype: typeName(uint16(asInt(v[6]))),
				qclass: className(uint16(asInt(v[7]))), rcode: rcodeName(uint16(asInt(v[8]))),
				size: uint32(asInt(v[9])), answers: uint16(asInt(v[10])), durationUS: asInt(v[11]),
				doBit: uint8(asInt(v[12])), ede: -1,
			})
		}
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

// typeName, className and rcodeName give the names queries_readable shows.
func typeName(t uint16) string {
	if n, ok := dns.TypeToString[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

func className(c uint16) string {
	switch c {
	case 1:
		return "IN"
	case 3:
		return "CH"
	case 4:
		return "HS"
	case 254:
		return "NONE"
	case 255:
		return "ANY"
	}
	return "CLASS" + strconv.Itoa(int(c))
}

func rcodeName(r uint16) string {
	if n, ok := dns.RcodeToString[int(r)]; ok {
		return n
	}
	return "RCODE" + strconv.Itoa(int(r))
}

// shipProgress is what the shipper reports about the database: the newest rowid and the
// arrival time of the oldest row after the cursor (0 if there is none).
func shipProgress(db *sql.DB, after int64) (newest, oldestTS int64, err error) {
	err = db.QueryRow(`SELECT coalesce((SELECT max(rowid) FROM queries), 0),
		coalesce((SELECT ts FROM queries WHERE rowid > ? ORDER BY rowid LIMIT 1), 0)`, after).Scan(&newest, &oldestTS)
	return newest, oldestTS, err
}

// openShipReader opens the shipper's own read-only connection: reading a batch takes tens of
// milliseconds, which must not hold up the flusher's connection.
func openShipReader(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// The cursor is the highest seq ClickHouse has acknowledged, per target, in the database
// itself so that it moves with the file (a backup, a restored copy).
const cursorTable = `CREATE TABLE IF NOT EXISTS ship_cursor (target TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)`

// loadCursor creates the cursor table if needed and returns target's cursor (0 if none).
// It runs on the writer's connection.
func (s *store) loadCursor(target string) (int64, error) {
	if _, err := s.db.Exec(cursorTable); err != nil {
		return 0, err
	}
	var seq int64
	err := s.db.QueryRow(`SELECT coalesce((SELECT last_seq FROM ship_cursor WHERE target = ?), 0)`, target).Scan(&seq)
	return seq, err
}

// saveCursor records target's cursor; a tiny transaction on the writer's connection.
func (s *store) saveCursor(target string, seq int64) error {
	_, err := s.db.Exec(`INSERT INTO ship_cursor (target, last_seq) VALUES (?, ?)
		ON CONFLICT (target) DO UPDATE SET last_seq = excluded.last_seq`, target, seq)
	return err
}

// pruneOlderShipped is pruneOlder for a shipping writer: only rows ClickHouse holds (rowid up
// to shipped) are deleted, and never the newest row, so that SQLite, which numbers a row one
// above the highest rowid left, never hands out a seq again.
func (s *store) pruneOlderShipped(cutoff, shipped int64, limit int) (int64, error) {
	return s.exec(`DELETE FROM queries WHERE rowid IN (SELECT rowid FROM queries WHERE ts < ? AND rowid <= ?
		AND rowid < (SELECT max(rowid) FROM queries) ORDER BY ts LIMIT ?)`, cutoff, shipped, limit)
}

// pruneOldestShipping is pruneOldest for a shipping writer: it deletes up to limit of the
// oldest rows but the newest, and also returns how many of them had not been shipped (rowid
// above shipped).
func (s *store) pruneOldestShipping(limit int, shipped int64) (deleted, unshipped int64, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	var upTo int64
	err = tx.QueryRow(`SELECT coalesce(max(rowid), 0) FROM (SELECT rowid FROM queries
		WHERE rowid < (SELECT max(rowid) FROM queries) ORDER BY rowid LIMIT ?)`, limit).Scan(&upTo)
	if err != nil || upTo == 0 {
		return 0, 0, err
	}
	if err := tx.QueryRow(`SELECT count(*) FROM queries WHERE rowid > ? AND rowid <= ?`, shipped, upTo).Scan(&unshipped); err != nil {
		return 0, 0, err
	}
	res, err := tx.Exec(`DELETE FROM queries WHERE rowid <= ?`, upTo)
	if err != nil {
		return 0, 0, err
	}
	if deleted, err = res.RowsAffected(); err != nil {
		return 0, 0, err
	}
	return deleted, unshipped, tx.Commit()
}
