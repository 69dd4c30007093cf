package querylog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"strings"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
	"github.com/querylog/querylog/plugin/querylog/ship"
)

// What shipping reads from SQLite: the writer as package ship's Source, and shipReader, which
// reads ship.Rows (those of the log table through logrow's Reader). The store keeps the cursor
// and deletes only what was shipped (store.go).

// shipSource is a writer as its shipper's Source: the cursor is read and saved on the writer's
// connection, the rows read through a read-only connection of the shipper's own.
type shipSource struct{ w *writer }

func (s shipSource) LoadCursor(target string) (int64, error) {
	s.w.storeMu.Lock()
	defer s.w.storeMu.Unlock()
	if s.w.store == nil {
		return 0, errClosed
	}
	return s.w.store.loadCursor(target)
}

func (s shipSource) SaveCursor(target string, seq int64) error {
	s.w.storeMu.Lock()
	defer s.w.storeMu.Unlock()
	if s.w.store == nil {
		return errClosed
	}
	return s.w.store.saveCursor(target, seq)
}

func (s shipSource) OpenReader() (ship.Reader, error) {
	db, err := openShipReader(s.w.path)
	if err != nil {
		return nil, err
	}
	return &shipDB{db: db, reader: newShipReader(db)}, nil
}

// shipDB is the shipper's reader: its own connection, and the shipReader that reads through it.
type shipDB struct {
	db     *sql.DB
	reader *shipReader
}

func (d *shipDB) Read(after int64, limit int, dst []ship.Row) ([]ship.Row, error) {
	return d.reader.read(after, limit, dst)
}

func (d *shipDB) Progress(after int64) (newest, oldestTS int64, err error) {
	return shipProgress(d.db, after)
}

func (d *shipDB) CountAfter(after int64) (int64, error) { return countAfter(d.db, after) }

func (d *shipDB) Close() error { return d.db.Close() }

// shipReader reads rows for the shipper: those of schema 1 here, those of the log table through
// logrow's Reader. One goroutine at a time reads (the shipper, or its read-ahead).
type shipReader struct {
	db   *sql.DB
	log  *logrow.Reader
	rows []logrow.Row // the log rows of the last read, kept for the next
}

func newShipReader(db *sql.DB) *shipReader {
	return &shipReader{db: db, log: logrow.NewReader(logCacheLimit)}
}

// read reads up to limit rows with an id above after, in id order, into dst: rows of schema 1
// first while there are any, then those of the log table. It reads the tables rather than the
// queries view, whose UNION ALL would make SQLite sort every row after the cursor.
func (r *shipReader) read(after int64, limit int, dst []ship.Row) ([]ship.Row, error) {
	ctx := context.Background()
	// Straight from the driver (database/sql's Scan would take about a third of the time), in
	// one read transaction, so that rows, dictionaries, labels and batches agree.
	err := rawsql.WithConn(ctx, r.db, func(dc driver.Conn) error {
		if err := rawsql.Exec(ctx, dc, "BEGIN"); err != nil {
			return err
		}
		defer rawsql.Exec(ctx, dc, "ROLLBACK")
		var lay layout
		if err := rawsql.Each(ctx, dc, `SELECT `+layoutColumns, nil, func(v []driver.Value) error {
			for i, p := range lay.dest() {
				*p.(*bool) = logrow.Int(v[i]) != 0
			}
			return nil
		}); err != nil {
			return err
		}
		var err error
		if lay.v1 && after < v2FirstID {
			if dst, err = readV1Rows(ctx, dc, after, limit, dst); err != nil {
				return err
			}
		}
		if len(dst) < limit {
			dst, err = r.readLogRows(ctx, dc, after, limit, lay.Layout, dst)
		}
		return err
	})
	return dst, err
}

// readV1Rows reads rows of schema 1 (queries_v1) after the rowid after, up to limit in dst.
func readV1Rows(ctx context.Context, dc driver.Conn, after int64, limit int, dst []ship.Row) ([]ship.Row, error) {
	err := rawsql.Each(ctx, dc, `SELECT rowid, ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers,
		duration_us, "do" FROM queries_v1 WHERE rowid > ? ORDER BY rowid LIMIT ?`, []any{after, limit - len(dst)}, func(v []driver.Value) error {
		text := func(i int) string { s, _ := logrow.Text(v[i]); return s }
		dst = append(dst, ship.Row{
			Seq: logrow.Int(v[0]), N: logrow.Int(v[0]), TS: logrow.Int(v[1]), Server: text(2), ClientIP: text(3),
			Proto: text(4), Qname: text(5), Qtype: logrow.Type(logrow.Int(v[6])),
			Qclass: logrow.Class(logrow.Int(v[7])), Rcode: logrow.Rcode(logrow.Int(v[8])),
			Size: uint32(logrow.Int(v[9])), Answers: uint16(logrow.Int(v[10])), DurationUS: logrow.Int(v[11]),
			DO: uint8(logrow.Int(v[12])), EDE: -1,
		})
		return nil
	})
	return dst, err
}

// readLogRows appends to dst, up to limit in all, the rows of the log table after the id after,
// numbered. lay says which optional columns the table has.
func (r *shipReader) readLogRows(ctx context.Context, dc driver.Conn, after int64, limit int, lay logrow.Layout, dst []ship.Row) ([]ship.Row, error) {
	var err error
	if r.rows, err = r.log.Read(ctx, dc, after, limit-len(dst), lay, r.rows[:0]); err != nil || len(r.rows) == 0 {
		return dst, err
	}
	first := len(dst)
	for i := range r.rows {
		dst = append(dst, shipRowOf(&r.rows[i]))
	}
	clear(r.rows) // drop the texts until the next read
	return dst, numberRows(ctx, dc, dst[first:])
}

// shipRowOf is a row of the log table as shipped. The ClickHouse table has no columns for the
// client's namespace and pod: they are shipped in the metadata JSON, under the kubernetes
// plugin's labels, as before they had columns of their own.
func shipRowOf(l *logrow.Row) ship.Row {
	return ship.Row{
		Seq: l.ID, TS: l.TS, Server: l.ServerLabel, ClientIP: l.ClientIP, Proto: logrow.Proto(l.Proto), Qname: l.QName,
		Qtype: logrow.Type(l.Qtype), Qclass: logrow.Class(l.Qclass), Rcode: logrow.Rcode(l.Rcode),
		Size: uint32(l.Size), Answers: uint16(l.Answers), DurationUS: l.DurationUS, DO: flagBit(l.Flags, logrow.FlagDO),
		Plugin: l.PluginLabel, EDE: int32(l.EDE), Upstream: l.UpstreamLabel, Metadata: withPod(l.Metadata, l.Namespace, l.Pod), AnswerData: l.AnswerData,
		AA: flagBit(l.Flags, logrow.FlagAA), TC: flagBit(l.Flags, logrow.FlagTC), RD: flagBit(l.Flags, logrow.FlagRD),
		RA: flagBit(l.Flags, logrow.FlagRA), AD: flagBit(l.Flags, logrow.FlagAD), CD: flagBit(l.Flags, logrow.FlagCD),
	}
}

// withPod adds the namespace and pod, where known, to a metadata column's JSON object.
func withPod(metadata, namespace, pod string) string {
	if namespace == "" && pod == "" {
		return metadata
	}
	m := map[string]string{}
	if metadata != "" {
		json.Unmarshal([]byte(metadata), &m) // the writer's own JSON; a bad one is replaced
	}
	for label, v := range map[string]string{namespaceLabel: namespace, podLabel: pod} {
		if v != "" {
			m[label] = v
		}
	}
	out, _ := json.Marshal(m) // keys sorted, as metadataJSON writes them
	return string(out)
}

func flagBit(flags, bit int64) uint8 {
	if flags&bit != 0 {
		return 1
	}
	return 0
}

// numberRows sets each row's ordinal (rows written before it, plus one) from the batches table:
// a batch's first row has n + 1, the next ones follow it.
func numberRows(ctx context.Context, dc driver.Conn, rows []ship.Row) error {
	type batchStart struct{ firstID, n int64 }
	var batches []batchStart
	err := rawsql.Each(ctx, dc, `SELECT first_id, n FROM batches
		WHERE first_id >= coalesce((SELECT max(first_id) FROM batches WHERE first_id <= ?1), 0) AND first_id <= ?2
		ORDER BY first_id`, []any{rows[0].Seq, rows[len(rows)-1].Seq}, func(v []driver.Value) error {
		batches = append(batches, batchStart{logrow.Int(v[0]), logrow.Int(v[1])})
		return nil
	})
	if err != nil {
		return err
	}
	b := -1
	for i := range rows {
		for b+1 < len(batches) && batches[b+1].firstID <= rows[i].Seq {
			b++
		}
		if b >= 0 {
			rows[i].N = batches[b].n + rows[i].Seq - batches[b].firstID + 1
		}
	}
	return nil
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
