package querylog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
)

// busyTimeoutMS bounds how long one write waits for another process's lock before the batch
// fails and is retried with backoff by the flusher.
const busyTimeoutMS = 1000

// logCacheLimit bounds each dictionary cache of a log reader (the shipper's, the rollups'
// catch-up), in texts (about 100 bytes each).
const logCacheLimit = 200_000

// store is the SQLite side of one database file: a single connection, used by one goroutine
// at a time (the flusher, or a tail write after shutdown, serialized by the writer).
type store struct {
	path  string
	file  os.FileInfo // the file opened, to notice when path names another one
	db    *sql.DB
	state writeState // what writing needs between batches (writestate.go)
	v1    bool       // rows of schema 1 remain in queries_v1

	catchUpReader *logrow.Reader // reads rows for the rollups while they catch up (catchUpRollups)
}

// refusal is an error about what a file is: not a querylog database, or one from a newer
// build. Unlike a lock, a full disk or an I/O error it does not go away by itself, so it fails
// startup instead of being retried.
type refusal struct{ msg string }

func (r refusal) Error() string { return r.msg }

// refused reports whether err is a refusal.
func refused(err error) bool { return errors.As(err, new(refusal)) }

// checkDatabase verifies, without modifying anything, that path is absent, empty, or a
// querylog database this build can migrate, and that no other user owns it, its -wal or its
// -shm (owner.go). It names the file in every error.
func checkDatabase(path string) error {
	if err := checkDatabaseOwners(path); err != nil {
		return err
	}
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
	var id logrow.Identity
	err := db.QueryRow(logrow.IdentityQuery).Scan(&id.AppID, &id.Version, &id.Objects)
	if err != nil {
		if transient(err) { // locked, I/O: says nothing about the file
			return 0, fmt.Errorf("database %s: %w", path, err)
		}
		return 0, fmt.Errorf("database %s is not a readable SQLite database: %w", path, err)
	}
	switch id.Check() {
	case logrow.Blank:
		return 0, nil
	case logrow.Foreign:
		return 0, refusal{fmt.Sprintf("database %s is not a querylog database (application_id %d, %d schema objects); refusing to modify it", path, id.AppID, id.Objects)}
	case logrow.Newer:
		return 0, refusal{fmt.Sprintf("database %s has schema version %d, newer than this build supports (%d)", path, id.Version, schemaVersion)}
	}
	return int(id.Version), nil
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
	// The owner of the file opened, which a file planted since the check cannot change.
	fi, err := f.Stat()
	f.Close()
	if err == nil {
		err = checkOwner("database", path, fi)
	}
	if err != nil {
		return nil, err
	}

	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s := &store{path: path, db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	// SQLite has opened -wal and -shm now, creating them if need be: check the files it has,
	// in case one was planted after the check above.
	if err := checkDatabaseOwners(path); err != nil {
		db.Close()
		return nil, err
	}
	// The connection is open (migrate used it): this is the file it has.
	if s.file, err = os.Stat(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	if err := s.load(); err != nil {
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

// load reads where the log and the dictionaries end, which the next batch continues from.
func (s *store) load() error {
	var lastID, written, nextName, nextClient int64
	var nextPod int64
	var namesIndexed bool
	var lay layout // addExtraColumns adds both metadata and answer_data: metadata tells for the two
	err := s.db.QueryRow(`SELECT coalesce((SELECT max(id) FROM log), 0),
		coalesce((SELECT n + rows FROM batches ORDER BY first_id DESC LIMIT 1), -1),
		coalesce((SELECT max(id) FROM names), 0) + 1, coalesce((SELECT max(id) FROM clients), 0) + 1,
		coalesce((SELECT max(id) FROM pods), 0) + 1, ` + namesIndexedColumn + `,
		` + layoutColumns).Scan(append([]any{&lastID, &written, &nextName, &nextClient, &nextPod, &namesIndexed}, lay.dest()...)...)
	if err != nil {
		return err
	}
	if !namesIndexed {
		// Without it each lookup of findName would read the whole names table.
		log.Warningf("Database %s has no index of the names table by name (names_name, dropped?): a name that leaves the writer's cache is numbered again, and querylog new reads more; CREATE INDEX names_name ON names (name) brings it back", s.path)
	}
	s.v1 = lay.v1
	if written < 0 && s.v1 {
		// The first batch after an upgrade: the rows of schema 1 were numbered by their rowid.
		err = s.db.QueryRow(`SELECT coalesce(max(rowid), 0) FROM queries_v1`).Scan(&written)
	}
	s.state = newWriteState(nil, nil, lastID, max(written, 0), nextName, nextClient, nextPod)
	s.state.extraCols, s.state.clusterCols, s.state.findNames = lay.Meta, lay.Cluster, namesIndexed
	return err
}

// use gives the store the writer's labels and hash keys, which entries refer to by number.
func (s *store) use(l *labels, k *keyring) { s.state.labels, s.state.keys = l, k }

// migrate brings the database to schemaVersion. A current database is only read.
func (s *store) migrate() error {
	version, err := identify(s.db, s.path)
	if err != nil || version == schemaVersion {
		return err
	}
	return s.change(func(tx *sql.Tx) error {
		version, err := identify(tx, s.path) // again, under the write lock
		if err != nil || version == schemaVersion {
			return err
		}
		for v := version; v < len(migrations); v++ {
			if _, err := tx.Exec(migrations[v]); err != nil {
				return fmt.Errorf("migrating to schema %d: %w", v+1, err)
			}
		}
		// Names of types and rcodes for the view, as this build knows them (after an upgrade
		// too: the shipper and the querylog command name codes as miekg/dns does).
		if err := fillNames(tx); err != nil {
			return err
		}
		if version > 0 && version < 6 {
			if err := backfillSeenDomains(tx); err != nil {
				return fmt.Errorf("recording the registered domains the file knew, for schema 6: %w", err)
			}
		}
		if version == 0 {
			// A new database has no rows of schema 1 to keep.
			if _, err := tx.Exec(`DROP TABLE queries_v1`); err != nil {
				return err
			}
		}
		if err := createViews(tx); err != nil {
			return err
		}
		_, err = tx.Exec(fmt.Sprintf(`PRAGMA application_id = %d; PRAGMA user_version = %d`, logrow.ApplicationID, schemaVersion))
		return err
	})
}

// change runs f in a write transaction; errors name the database.
func (s *store) change(f func(tx *sql.Tx) error) error {
	tx, err := s.db.Begin()
	if err == nil {
		defer tx.Rollback()
		if err = f(tx); err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		return fmt.Errorf("database %s: %w", s.path, err)
	}
	return nil
}

// write commits the entries of all segments in one transaction, or nothing.
func (s *store) write(segments ...[]entry) error {
	if err := s.resolveLabels(segments); err != nil {
		return err
	}
	if r := s.state.rollups; r.catchingUp && !r.off {
		if err := s.catchUpRollups(); err != nil {
			return fmt.Errorf("counting rows for the rollups: %w", err)
		}
	}
	if err := s.addColumns(segments); err != nil {
		return err
	}
	ctx := context.Background()
	before := s.state.lookups()
	err := s.withConn(ctx, func(dc driver.Conn) error {
		if err := s.writeRows(ctx, dc, segments); err != nil {
			return err
		}
		if c := &s.state.counts; c.due(time.Now()) {
			if err := c.flush(ctx, dc, s.state.lastID); err != nil {
				// The batch is written: its rows stay counted in memory for the next flush.
				log.Warningf("Adding the rows of each name to the names table of %s failed, will retry in %s: %v", s.path, c.every, err)
			}
		}
		return nil
	})
	if err == nil {
		after := s.state.lookups()
		for i, name := range dictionaryNames {
			for j, result := range [4]string{"hit", "added", "inline", "found"} {
				if result == "found" && name != "names" {
					continue // only names are looked up in their table
				}
				dictionaryLookups.WithLabelValues(s.path, name, result).Add(float64(after[i][j] - before[i][j]))
			}
		}
	}
	return err
}

// resolveLabels finds, adding them where needed, the database's numbers of the labels the
// entries use for the first time. Label rows are committed on their own: one nothing uses is
// harmless, and the numbers hold whatever happens to the batch.
func (s *store) resolveLabels(segments [][]entry) error {
	ws := &s.state
	for _, seg := range segments {
		for i := range seg {
			e := &seg[i]
			for kind, id := range [numLabelKinds]uint16{labelServer: uint16(e.server), labelPlugin: uint16(e.plugin), labelUpstream: e.upstream} {
				if id == 0 || (int(id) < len(ws.dbLabel[kind]) && ws.dbLabel[kind][id] != 0) {
					continue
				}
				n, err := s.labelNumber(labelKind(kind), ws.labels.text(labelKind(kind), id))
				if err != nil {
					return err
				}
				for len(ws.dbLabel[kind]) <= int(id) {
					ws.dbLabel[kind] = append(ws.dbLabel[kind], 0)
				}
				ws.dbLabel[kind][id] = n
			}
		}
	}
	return nil
}

// labelNumber returns the database's number of a label, adding it if it is new; past a kind's
// limit, the number of "(other)".
func (s *store) labelNumber(kind labelKind, text string) (n int64, err error) {
	limit := int64(labelLimit[kind])
	err = s.change(func(tx *sql.Tx) error {
		err := tx.QueryRow(`SELECT n FROM labels WHERE kind = ? AND text = ?`, kind, text).Scan(&n)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := tx.QueryRow(`SELECT coalesce(max(n), 0) + 1 FROM labels WHERE kind = ?`, kind).Scan(&n); err != nil {
			return err
		}
		if n >= limit {
			n = limit
			return nil
		}
		_, err = tx.Exec(`INSERT INTO labels (kind, n, text) VALUES (?, ?, ?)`, kind, n, text)
		return err
	})
	return n, err
}

// addColumns adds the optional columns the first time a batch has such fields, so that
// databases without them pay nothing for them: metadata and answer_data, and pod and cache.
func (s *store) addColumns(segments [][]entry) error {
	k := columnsOf(segments)
	for _, c := range []struct {
		want bool
		has  *bool
		cols []string
	}{
		{k.extra, &s.state.extraCols, []string{"metadata TEXT", "answer_data TEXT"}},
		{k.cluster, &s.state.clusterCols, []string{"pod", "cache"}},
	} {
		if !c.want || *c.has {
			continue
		}
		err := s.change(func(tx *sql.Tx) error {
			for _, col := range c.cols {
				if _, err := tx.Exec(`ALTER TABLE log ADD COLUMN ` + col); err != nil {
					return err
				}
			}
			return createViews(tx)
		})
		if err != nil {
			return err
		}
		*c.has = true
	}
	return nil
}

// columnsOf is the log INSERT the entries need: with the metadata and answer_data columns if
// one has those options on, with the pod and cache columns if one has either.
func columnsOf(segments [][]entry) stmtKey {
	k := stmtKey{table: "log"}
	for _, seg := range segments {
		for i := range seg {
			e := &seg[i]
			if x := e.extra; x != nil {
				k.extra = k.extra || x.wantsColumns()
				k.cluster = k.cluster || x.namespace != "" || x.pod != ""
			}
			k.cluster = k.cluster || e.cache != cacheNone
		}
	}
	return k
}

// writeRows commits the entries of all segments in one transaction, or nothing, on the store's
// connection dc.
func (s *store) writeRows(ctx context.Context, dc driver.Conn, segments [][]entry) (err error) {
	ws := &s.state
	n := 0
	var newest int64
	for _, seg := range segments {
		n += len(seg)
		for i := range seg {
			newest = max(newest, seg[i].start/1e6)
		}
	}
	// A table that has optional columns (addColumns) gets them bound in every row: omitted,
	// they would be stored as NULL all the same.
	k := stmtKey{table: "log", extra: ws.extraCols, cluster: ws.clusterCols}
	if n == 0 {
		return nil
	}
	ws.use(dc)
	if time.Since(ws.epochStart) >= dictEpoch {
		ws.startEpoch()
	}
	first := max(ws.lastID+1, newest<<8)
	// Where the epoch begins, before this batch numbers anything new.
	epoch := []any{first, ws.names.next, ws.clients.next, ws.pods.next}
	if ws.newEpoch {
		ws.epochName = ws.names.next
	}

	defer func() {
		if err != nil {
			ws.forget()
			ws.rollups.reset()
		}
	}()
	flushed := false
	if err := rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error {
		// The rows are made in the transaction, where the names dictionary can look up a name
		// that left its cache (findName).
		ws.vals, ws.texts, ws.findErr = ws.vals[:0], ws.texts[:0], nil
		ws.firsts.start()
		id := first
		for _, seg := range segments {
			for i := range seg {
				ws.appendRow(&seg[i], id, k)
				id++
			}
		}
		if ws.findErr != nil {
			return fmt.Errorf("looking up a name in the names table: %w", ws.findErr)
		}
		if ws.firsts.err != nil {
			return fmt.Errorf("judging a name's first sighting: %w", ws.firsts.err)
		}
		if err := ws.insertRows(ctx, dc, first, n, epoch, k); err != nil {
			return err
		}
		newest = max(newest, ws.newest)
		if ws.rollups.live() {
			ws.rollups.counted = first + int64(n) - 1
		}
		if flushed = ws.rollups.due(time.Now()); flushed {
			return ws.rollups.flush(ctx, dc, newest, ws.labels)
		}
		return nil
	}); err != nil {
		return err
	}
	if flushed {
		ws.rollups.flushed, ws.rollups.flushNow = time.Now(), false
	}
	ws.lastID, ws.newest, ws.written = first+int64(n)-1, newest, ws.written+int64(n)
	ws.counts.committed(first, ws.newEpoch)
	ws.newEpoch = false
	ws.names.pending, ws.clients.pending, ws.pods.pending = ws.names.pending[:0], ws.clients.pending[:0], ws.pods.pending[:0]
	ws.retries.pending = ws.retries.pending[:0]
	clear(ws.vals) // drop references to names until the next batch
	return nil
}

// shipBound is what pruning must leave for a shipper: the rows ClickHouse does not hold yet (id
// above shipped), and the newest row, so that an id is never handed out again. The zero value,
// no shipper, leaves nothing.
type shipBound struct {
	shipping bool
	shipped  int64
}

// pruneOlder deletes up to limit of the oldest rows that arrived before cutoff (Unix ms), rows
// of schema 1 first, but those bound keeps. In the log table that is every row whose id says
// so: a row that arrived before cutoff but was written much later (late) goes when its id does.
func (s *store) pruneOlder(cutoff int64, limit int, bound shipBound) (int64, error) {
	v1Args, logArgs := []any{cutoff}, []any{cutoff << 8}
	v1Kept, v1Order, logKept := "", "ts", ""
	if bound.shipping {
		v1Kept, v1Order = " AND rowid <= ?", "rowid"
		logKept = " AND id <= ? AND id < (SELECT max(id) FROM log)"
		v1Args, logArgs = append(v1Args, bound.shipped), append(logArgs, bound.shipped)
	}
	if s.v1 {
		n, err := s.exec(`DELETE FROM queries_v1 WHERE rowid IN (SELECT rowid FROM queries_v1 WHERE ts < ?`+v1Kept+`
			ORDER BY `+v1Order+` LIMIT ?)`, append(v1Args, limit)...)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return s.exec(`DELETE FROM log WHERE id IN (SELECT id FROM log WHERE id < ?`+logKept+` ORDER BY id LIMIT ?)`,
		append(logArgs, limit)...)
}

// pruneOldest deletes up to limit of the oldest rows, rows of schema 1 first, but the newest
// row while shipping. It also returns how many of them had not been shipped (id above
// bound.shipped): max_size leaves no choice.
func (s *store) pruneOldest(limit int, bound shipBound) (deleted, unshipped int64, err error) {
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
	kept := ""
	if bound.shipping {
		kept = ` WHERE ` + id + ` < (SELECT max(id) FROM log)`
	}
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	var upTo int64
	err = tx.QueryRow(`SELECT coalesce(max(`+id+`), 0) FROM (SELECT `+id+` FROM `+table+kept+` ORDER BY `+id+` LIMIT ?)`, limit).Scan(&upTo)
	if err != nil || upTo == 0 {
		return 0, 0, err
	}
	if bound.shipping {
		if err := tx.QueryRow(`SELECT count(*) FROM `+table+` WHERE `+id+` > ? AND `+id+` <= ?`, bound.shipped, upTo).Scan(&unshipped); err != nil {
			return 0, 0, err
		}
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

// pruneRollups deletes the rollup rows of up to periods periods per table and span that began
// before their cutoff: minutes before minutes, hours and days before longer (Unix seconds; 0
// keeps them). A period has at most a few thousand rows (rollup_limit).
func (s *store) pruneRollups(minutes, longer int64, periods int) (int64, error) {
	var total int64
	for _, t := range rollupTables {
		for span, cutoff := range map[int64]int64{60: minutes, 3600: longer, 86400: longer} {
			if cutoff == 0 {
				continue
			}
			n, err := s.exec(`DELETE FROM `+t+` WHERE span = ?1 AND start IN
				(SELECT DISTINCT start FROM `+t+` WHERE span = ?1 AND start < ?2 ORDER BY start LIMIT ?3)`, span, cutoff, periods)
			if err != nil {
				return total, err
			}
			total += n
		}
	}
	return total, nil
}

// tidy finishes a pruning pass: it removes dictionary rows that no remaining row can use (see
// dict.go), up to limit per table, and the table of schema 1 once it is empty. It reports
// whether anything is left to remove.
func (s *store) tidy(limit int) (more bool, err error) {
	if s.v1 {
		var empty bool
		if err := s.db.QueryRow(`SELECT NOT EXISTS (SELECT 1 FROM queries_v1)`).Scan(&empty); err != nil {
			return false, err
		}
		if empty {
			err := s.change(func(tx *sql.Tx) error {
				if _, err := tx.Exec(`DROP TABLE queries_v1`); err != nil {
					return err
				}
				return createViews(tx)
			})
			if err != nil {
				return false, err
			}
			s.v1 = false
		}
	}
	// The newest epoch that began at or before the oldest row: nothing older is used.
	var oldest, logID, nameID, clientID, podID int64
	if err := s.db.QueryRow(`SELECT coalesce((SELECT min(id) FROM log), 9223372036854775807)`).Scan(&oldest); err != nil {
		return false, err
	}
	err = s.db.QueryRow(`SELECT log_id, name_id, client_id, pod_id FROM dict_epochs WHERE log_id <= ? ORDER BY log_id DESC LIMIT 1`, oldest).Scan(&logID, &nameID, &clientID, &podID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The oldest row or rollup period: a domain last seen before both is known to nothing else.
	known := oldest
	var rollupStart sql.NullInt64
	err = s.db.QueryRow(`SELECT min(s) FROM (SELECT min(start) AS s FROM rollup_names WHERE span = 60
		UNION ALL SELECT min(start) FROM rollup_names WHERE span = 3600 UNION ALL SELECT min(start) FROM rollup_names WHERE span = 86400)`).Scan(&rollupStart)
	if err != nil {
		return false, err
	}
	if rollupStart.Valid {
		known = min(known, rollupStart.Int64*1000<<8)
	}
	var removed int64
	for _, q := range []struct {
		query string
		arg   int64
	}{
		{`DELETE FROM names WHERE id IN (SELECT id FROM names WHERE id < ? ORDER BY id LIMIT ?)`, nameID},
		{`DELETE FROM clients WHERE id IN (SELECT id FROM clients WHERE id < ? ORDER BY id LIMIT ?)`, clientID},
		{`DELETE FROM pods WHERE id IN (SELECT id FROM pods WHERE id < ? ORDER BY id LIMIT ?)`, podID},
		{`DELETE FROM retries WHERE id IN (SELECT id FROM retries WHERE id < ? ORDER BY id LIMIT ?)`, oldest},
		{`DELETE FROM log_texts WHERE id IN (SELECT id FROM log_texts WHERE id < ? ORDER BY id LIMIT ?)`, oldest},
		{`DELETE FROM name_firsts WHERE id IN (SELECT id FROM name_firsts WHERE id < ? ORDER BY id LIMIT ?)`, oldest},
		// Gaps of names matter to windows of rows; what domains_seen says, as long as rollups say
		// anything (a scan: one row per domain).
		{`DELETE FROM name_firsts_gaps WHERE minute IN (SELECT minute FROM name_firsts_gaps WHERE minute < ? AND domains = 0 ORDER BY minute LIMIT ?)`, (oldest >> 8) / 60_000},
		{`DELETE FROM name_firsts_gaps WHERE minute IN (SELECT minute FROM name_firsts_gaps WHERE minute < ? AND domains = 1 ORDER BY minute LIMIT ?)`, (known >> 8) / 60_000},
		{`DELETE FROM domains_seen WHERE domain IN (SELECT domain FROM domains_seen WHERE last < ? LIMIT ?)`, known},
		{`DELETE FROM dict_epochs WHERE log_id IN (SELECT log_id FROM dict_epochs WHERE log_id < ? ORDER BY log_id LIMIT ?)`, logID},
		// Batches wholly before the oldest row (the one it is in stays, for its ordinal).
		{`DELETE FROM batches WHERE first_id IN (SELECT first_id FROM batches WHERE first_id < coalesce(
			(SELECT first_id FROM batches WHERE first_id <= ?1 ORDER BY first_id DESC LIMIT 1), 0)
			ORDER BY first_id LIMIT ?2)`, oldest},
	} {
		n, err := s.exec(q.query, q.arg, limit)
		if err != nil {
			return false, err
		}
		removed += n
		more = more || n == int64(limit)
	}
	return more, nil
}

// pruneWithRows deletes, after the size cap has deleted rows, what only those rows used: batch
// and dictionary rows (tidy, up to limit each) and the minute rollups that began before the
// oldest row left (all of them, before now, once no row is left), up to rollupPeriodsChunk
// periods per table.
func (s *store) pruneWithRows(limit int, now time.Time) error {
	if _, err := s.tidy(limit); err != nil {
		return err
	}
	if s.v1 {
		return nil // minutes began with the upgrade: none is older than the rows of schema 1
	}
	var oldest int64 // Unix ms
	if err := s.db.QueryRow(`SELECT coalesce((SELECT min(id) FROM log) >> 8, ?)`, now.UnixMilli()).Scan(&oldest); err != nil {
		return err
	}
	_, err := s.pruneRollups(oldest/1000, 0, rollupPeriodsChunk)
	return err
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
	err := errors.Join(s.flushRollups(), s.flushNameCounts())
	s.withConn(context.Background(), func(driver.Conn) error { s.state.closeStmts(); return nil })
	return errors.Join(err, s.db.Close())
}

// withConn runs f on the store's connection as the driver has it (the writer's statements are
// prepared on it).
func (s *store) withConn(ctx context.Context, f func(dc driver.Conn) error) error {
	return rawsql.WithConn(ctx, s.db, f)
}

// flushNameCounts adds the rows counted for each name to names.n now, in a transaction of
// their own.
func (s *store) flushNameCounts() error {
	ctx := context.Background()
	return s.withConn(ctx, func(dc driver.Conn) error { return s.state.counts.flush(ctx, dc, s.state.lastID) })
}

// flushRollups writes the rollups' counts now, in a transaction of their own.
func (s *store) flushRollups() error {
	r := s.state.rollups
	if len(r.minutes) == 0 {
		return nil // rollup_id is current, or the next open counts the rows after it
	}
	ctx := context.Background()
	return s.withConn(ctx, func(dc driver.Conn) error {
		return rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error { return r.flush(ctx, dc, s.state.newest, s.state.labels) })
	})
}

// catchUpRollups counts up to r.catchUpRows rows after counted, and turns live once none is left
// (before the batch at hand is written, so that its rows are counted as they are written). The
// first time, after an open or a failed batch, it starts from rollup_id, and marks for summing
// the hours and days that may have ended unsummed (their last minutes flushed, the process
// gone before the hour was over).
func (s *store) catchUpRollups() error {
	r := s.state.rollups
	if r.counted < 0 {
		r.dropAllMinutes()
		err := s.db.QueryRow(`SELECT coalesce((SELECT value FROM state WHERE key = 'rollup_id'), 0)`).Scan(&r.counted)
		if err != nil {
			return err
		}
		if err := s.markUnsummed(); err != nil {
			return err
		}
	}
	if s.catchUpReader == nil {
		s.catchUpReader = logrow.NewReader(logCacheLimit)
	}
	ctx := context.Background()
	var rows []logrow.Row
	retries := map[int64]bool{} // the rows read that retransmit an earlier query
	err := s.withConn(ctx, func(dc driver.Conn) error {
		return rawsql.InTx(ctx, dc, "BEGIN", func() (err error) { // rows and dictionaries agree
			rows, err = s.catchUpReader.Read(ctx, dc, max(r.counted, v2FirstID-1), r.catchUpRows, logrow.Layout{Cluster: s.state.clusterCols}, nil)
			if err != nil || len(rows) == 0 {
				return err
			}
			return rawsql.Each(ctx, dc, `SELECT id FROM retries WHERE id >= ? AND id <= ?`, []any{rows[0].ID, rows[len(rows)-1].ID},
				func(v []driver.Value) error { retries[logrow.Int(v[0])] = true; return nil })
		})
	})
	if err != nil {
		return err
	}
	for i := range rows {
		l := &rows[i]
		r.count(l.TS, keyed{text: l.QName}, keyed{text: l.ClientIP}, l.Rcode, uint16(l.Qtype), proto(l.Proto),
			uint8(s.state.labels.id(labelPlugin, l.PluginLabel)), l.DurationUS,
			clusterFacts{namespace: l.Namespace, pod: l.Pod, cache: cacheStatusOf(l.Cache), retry: retries[l.ID], answered: l.Answers > 0})
		r.countUpstream(l.TS, s.state.labels.id(labelUpstream, l.UpstreamLabel), l.Rcode, l.DurationUS)
		r.counted = l.ID
	}
	n := len(rows)
	// Periods the counted rows touch may be over already: sum them at the next flush.
	for start := range r.minutes {
		r.dirty[[2]int64{3600, floorDiv(start, 3600) * 3600}] = true
	}
	r.flushNow = n > 0
	r.catchingUp = n == r.catchUpRows
	if !r.catchingUp {
		s.catchUpReader = nil // its caches are not needed until the next catch-up
	}
	return nil
}

// markUnsummed marks for summing the hours from the last one summed on, and the days from the
// last one summed on: summing again a period already summed gives the same rows.
func (s *store) markUnsummed() error {
	for _, p := range [][2]int64{{3600, 60}, {86400, 3600}} {
		rows, err := s.db.Query(`SELECT DISTINCT start / ?1 * ?1 FROM rollup_outcomes WHERE span = ?2
			AND start >= coalesce((SELECT max(start) FROM rollup_outcomes WHERE span = ?1), 0)`, p[0], p[1])
		if err != nil {
			return err
		}
		for rows.Next() {
			var start int64
			if err := rows.Scan(&start); err != nil {
				rows.Close()
				return err
			}
			s.state.rollups.dirty[[2]int64{p[0], start}] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
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
