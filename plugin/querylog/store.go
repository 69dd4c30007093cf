package querylog

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/miekg/dns"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const (
	// applicationID marks a file as a querylog database ("QLOG"); any other non-empty SQLite
	// file is refused rather than modified.
	applicationID = 0x514C4F47
	// schemaVersion is PRAGMA user_version after migrate; bump it and add a step to migrations
	// when the schema changes.
	schemaVersion = 1
	// busyTimeoutMS bounds how long one write waits for another process's lock before the
	// batch fails and is retried with backoff by the flusher.
	busyTimeoutMS = 1000
	// rowsPerInsert is the number of rows bound by one multi-row INSERT (12 columns each, far
	// below SQLite's 32766 parameter limit).
	rowsPerInsert = 64
)

const insertColumns = `INSERT INTO queries (ts, server, client_ip, proto, qname, qtype, qclass, rcode, size, answers, duration_us, "do") VALUES `

// migrations[i] takes a database from user_version i to i+1.
var migrations = []string{
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
}

// store is the SQLite side of one database file: a single connection, used by one goroutine
// at a time (the flusher, or a tail write after shutdown, serialized by the writer).
type store struct {
	path  string
	file  os.FileInfo // the file opened, to notice when path names another one
	db    *sql.DB
	stmts map[int]*sql.Stmt // multi-row INSERTs by row count
	args  []any
}

// refusal is an error about what a file is: not a querylog database, or one from a newer
// build. Unlike a lock, a full disk or an I/O error it does not go away by itself, so it fails
// startup instead of being retried.
type refusal struct{ msg string }

func (r refusal) Error() string { return r.msg }

// refused reports whether err is a refusal.
func refused(err error) bool { return errors.As(err, new(refusal)) }

// checkDatabase verifies, without modifying anything, that path is absent, empty, or a
// querylog database this build can migrate. It names the file in every error.
func checkDatabase(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return refusal{fmt.Sprintf("database %s is not a regular file", path)}
	}
	if fi.Size() == 0 {
		return nil
	}
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	defer db.Close()
	_, err = identify(db, path)
	return err
}

// identify returns the schema version of a querylog database, 0 for a blank one, or an error
// for anything else.
func identify(db interface {
	QueryRow(query string, args ...any) *sql.Row
}, path string) (int, error) {
	var appID, version, objects int
	err := db.QueryRow(`SELECT (SELECT application_id FROM pragma_application_id),
		(SELECT user_version FROM pragma_user_version),
		(SELECT count(*) FROM sqlite_schema)`).Scan(&appID, &version, &objects)
	if err != nil {
		if transient(err) { // locked, I/O: says nothing about the file
			return 0, fmt.Errorf("database %s: %w", path, err)
		}
		return 0, fmt.Errorf("database %s is not a readable SQLite database: %w", path, err)
	}
	switch {
	case appID == 0 && objects == 0:
		return 0, nil
	case appID != applicationID:
		return 0, refusal{fmt.Sprintf("database %s is not a querylog database (application_id %d, %d schema objects); refusing to modify it", path, appID, objects)}
	case version > schemaVersion:
		return 0, refusal{fmt.Sprintf("database %s has schema version %d, newer than this build supports (%d)", path, version, schemaVersion)}
	}
	return version, nil
}

// dsn builds the modernc.org/sqlite connection string: a file: URI, so that SQLite takes mode
// and immutable from it, with the path percent-encoded, since SQLite decodes %XX in a URI path
// and ends the path at '?' or '#' (unescaped, q%41.db would open qA.db). The pragmas are applied
// to every connection the pool opens, so a reconnect keeps them.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	if readOnly {
		// immutable: no locks, and no -wal/-shm files left beside a file that may not be
		// ours. It ignores a WAL; migrate checks again, through the WAL, before changing
		// anything.
		q.Add("mode", "ro")
		q.Add("immutable", "1")
	} else {
		// First, before WAL mode writes the header: takes effect only on a database we are
		// about to create, and lets max_size give freed pages back (incremental_vacuum).
		q.Add("_pragma", "auto_vacuum(INCREMENTAL)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "temp_store(MEMORY)")
		// The checkpointer does this off the write path; this is only a backstop (64 MiB).
		q.Add("_pragma", "wal_autocheckpoint(16384)")
		// Truncate the WAL back to 64 MiB after a checkpoint so a long reader cannot leave
		// it large for ever.
		q.Add("_pragma", "journal_size_limit(67108864)")
		q.Add("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// openStore opens (creating with mode 0640) and migrates the database at path. It writes only
// to create or migrate the schema. Errors for which refused is true are about the file itself;
// the others (a lock held elsewhere, a full disk, I/O) may pass, and the caller retries.
func openStore(path string) (*store, error) {
	if err := checkDatabase(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	f.Close()

	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &store{path: path, db: db, stmts: map[int]*sql.Stmt{}}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	// The connection is open (migrate used it): this is the file it has.
	if s.file, err = os.Stat(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return s, nil
}

// replaced reports whether path no longer names the file the store has open: it was deleted,
// renamed (log rotation) or replaced by another file. Other errors tell nothing and say no.
func (s *store) replaced() bool {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && !os.SameFile(fi, s.file)
}

// migrate brings the schema to schemaVersion. A current schema is only read: the write
// transaction, which another process's lock or a full disk would make fail, is taken only when
// there is something to write.
func (s *store) migrate() error {
	if version, err := identify(s.db, s.path); err != nil || version == schemaVersion {
		return err
	}
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	defer tx.Rollback()
	version, err := identify(tx, s.path) // again, now that no other writer can change it
	if err != nil {
		return err
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(migrations[v]); err != nil {
			return fmt.Errorf("database %s: migrating to schema %d: %w", s.path, v+1, err)
		}
	}
	if version == 0 {
		if err := fillNames(tx); err != nil {
			return fmt.Errorf("database %s: %w", s.path, err)
		}
	}
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA application_id = %d; PRAGMA user_version = %d`, applicationID, schemaVersion)); err != nil {
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	return nil
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

// write commits the entries of all segments in one transaction, or nothing.
func (s *store) write(segments ...[]entry) error {
	// Prepare first: with a single connection, preparing inside the transaction would wait
	// for a second one.
	for _, seg := range segments {
		for _, n := range []int{min(len(seg), rowsPerInsert), len(seg) % rowsPerInsert} {
			if _, err := s.stmt(n); n > 0 && err != nil {
				return err
			}
		}
	}
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, seg := range segments {
		for len(seg) > 0 {
			n := min(len(seg), rowsPerInsert)
			if err := s.insert(tx, seg[:n]); err != nil {
				return err
			}
			seg = seg[n:]
		}
	}
	return tx.Commit()
}

func (s *store) insert(tx *sql.Tx, rows []entry) error {
	stmt, err := s.stmt(len(rows))
	if err != nil {
		return err
	}
	args := s.args[:0]
	for i := range rows {
		e := &rows[i]
		args = append(args,
			e.start/1e6, e.server, clientText(e), e.proto.String(), e.qname,
			int64(e.qtype), int64(e.qclass), int64(e.rcode), int64(e.size), int64(e.answers),
			e.duration/1e3, e.do)
	}
	s.args = args
	_, err = tx.Stmt(stmt).Exec(args...)
	clear(args) // drop references to strings until the next batch
	return err
}

// stmt returns the prepared INSERT for n rows.
func (s *store) stmt(n int) (*sql.Stmt, error) {
	if st, ok := s.stmts[n]; ok || n == 0 {
		return st, nil
	}
	var b strings.Builder
	b.WriteString(insertColumns)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	st, err := s.db.Prepare(b.String())
	if err != nil {
		return nil, err
	}
	s.stmts[n] = st
	return st, nil
}

// pruneOlder deletes up to limit of the oldest rows whose ts is before cutoff (Unix ms).
func (s *store) pruneOlder(cutoff int64, limit int) (int64, error) {
	return s.exec(`DELETE FROM queries WHERE rowid IN (SELECT rowid FROM queries WHERE ts < ? ORDER BY ts LIMIT ?)`, cutoff, limit)
}

// pruneOldest deletes up to limit of the oldest rows.
func (s *store) pruneOldest(limit int) (int64, error) {
	return s.exec(`DELETE FROM queries WHERE rowid IN (SELECT rowid FROM queries ORDER BY rowid LIMIT ?)`, limit)
}

func (s *store) exec(query string, args ...any) (int64, error) {
	res, err := s.db.Exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// usedBytes is the size of the pages in use, free pages excluded.
func (s *store) usedBytes() (int64, error) {
	var pages, free, pageSize int64
	err := s.db.QueryRow(`SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count),
		(SELECT page_size FROM pragma_page_size)`).Scan(&pages, &free, &pageSize)
	return (pages - free) * pageSize, err
}

// vacuumStep returns up to pages free pages to the filesystem (the file shrinks at the next
// checkpoint) and reports whether free pages remain. One step is bounded, so a caller can stop
// between steps: all of a large freelist at once takes seconds.
func (s *store) vacuumStep(pages int) (more bool, err error) {
	if _, err := s.db.Exec(fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, pages)); err != nil {
		return false, err
	}
	var free int64
	err = s.db.QueryRow(`PRAGMA freelist_count`).Scan(&free)
	return free > 0, err
}

// truncateWAL checkpoints the whole WAL into the database and truncates it, so the database
// file shrinks to the pages in use and the WAL to nothing. It fails if a reader's older
// snapshot kept some of the WAL from being copied.
func (s *store) truncateWAL() error {
	var busy, frames, copied int
	if err := s.db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied); err != nil {
		return err
	}
	if busy != 0 {
		return fmt.Errorf("database %s: a reader kept %d of %d WAL frames from being checkpointed", s.path, frames-copied, frames)
	}
	return nil
}

// size is the bytes the database occupies on disk, WAL included.
func (s *store) size() int64 {
	var total int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(s.path + suffix); err == nil {
			total += fi.Size()
		}
	}
	return total
}

func (s *store) close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	return s.db.Close()
}
