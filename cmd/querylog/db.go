package main

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // the SQLite the plugin writes with

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
)

const (
	// busyTimeoutMS bounds a reader's wait for a lock; in WAL mode readers wait only in rare
	// moments (another connection recovering the WAL index), never for the writer.
	busyTimeoutMS = 5000
	// sqliteReadonlyDirectory is SQLITE_READONLY_DIRECTORY: a WAL reader could not create the
	// -shm file it needs.
	sqliteReadonlyDirectory = 8 | 6<<8
)

// database is an open querylog database and the snapshot a command reads from.
//
// It talks to the driver's connection directly rather than through database/sql: one connection
// is all a reader needs, and database/sql's conversions of every value cost more than SQLite's
// own work on the small rows here (a top over 30 days of rollups: 230 ms through database/sql's
// sorted GROUP BY, 70 ms read row by row and summed in a map).
type database struct {
	path    string // as given, for messages
	abs     string // absolute: what the connection opened
	file    fileID // the file the connection opened (checked just before)
	dc      driver.Conn
	timeout time.Duration
	schema  int // PRAGMA user_version: 1 to 6

	log     bool   // the log table of schema 2
	v1      string // the table of the rows of schema 1: queries (schema 1), queries_v1 (left by the upgrade to 2), or ""
	rollups bool   // the rollup tables of schema 2
	extra   bool   // the log table has the metadata and answer_data columns
	cluster bool   // the log table has the pod and cache columns (schema 3)
	pods    bool   // the pods, retries and rollup_namespaces tables of schema 3
	// upstreamRollups: the rollup_upstreams table of schema 3 (a file of schema 3 made before
	// it was added has none, and is read as one of schema 2)
	upstreamRollups bool
	// podRollups: the rollup_namespace_pods table of schema 3 (as upstreamRollups: without it,
	// top pods reads rows only)
	podRollups bool
	// foldRollups: the rollup_searchpath tables of schema 3 (a file of schema 3 made
	// before they were added folds its namespaces' names, as before)
	foldRollups bool
	// textIndex: the rows holding a name as text are listed (log_texts: schema 4's index,
	// schema 5's table, textTable), and the names dictionary has the first use and count of
	// each number (querylog new, new_texts.go)
	textIndex, textTable bool
	// firsts: the writer lists the first sightings of names and records the registered
	// domains it saw (schema 6: name_firsts, domains_seen; querylog new, new_firsts.go)
	firsts bool

	qtypes, rcodes map[int64]string // qtype_names, rcode_names: what queries_readable shows
	reader         *logrow.Reader   // the labels and dictionary texts of schema 2, as rows need them
	inTx           bool
	mem            *memoryGuard // the command's memory budget (nil: none)
}

// sqliteDriver opens this command's connections, with its own SQL functions (filter.go).
var sqliteDriver = &sqlite.Driver{}

// sqliteHeader begins every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// openDatabase opens path read-only, checks that it is a querylog database this build reads,
// and begins the read transaction whose snapshot the command reads.
func openDatabase(ctx context.Context, path string, timeout time.Duration, mem *memoryGuard) (*database, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, databaseError("%s: %v", path, err)
	}
	file, err := checkFile(path, abs)
	if err != nil {
		return nil, err
	}
	dc, err := sqliteDriver.Open(rawsql.ReaderDSN(abs, busyTimeoutMS))
	if err != nil {
		return nil, databaseError("%s: %v", path, err)
	}
	d := &database{path: path, abs: abs, file: file, dc: dc, timeout: timeout, mem: mem}
	if err := d.begin(ctx); err != nil {
		dc.Close()
		return nil, err
	}
	if err := d.identify(ctx); err != nil {
		d.close()
		return nil, err
	}
	if err := d.load(ctx); err != nil {
		d.close()
		return nil, d.queryError(err)
	}
	return d, nil
}

// checkFile tells a missing file, a folder, an empty file and a file that is not SQLite apart
// before SQLite sees them, and returns which file the path names (tail -f notices when the path
// comes to name another: rotation.go).
func checkFile(path, abs string) (fileID, error) {
	f, err := os.Open(abs)
	if errors.Is(err, os.ErrNotExist) {
		return fileID{}, databaseError("%s: no such file", path)
	}
	if err != nil {
		return fileID{}, databaseError("%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, databaseError("%s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, databaseError("%s is not a regular file", path)
	}
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteHeader) {
		if fi.Size() == 0 {
			return fileID{}, databaseError("%s is empty, not a querylog database", path)
		}
		return fileID{}, databaseError("%s is not a SQLite database", path)
	}
	return idOf(fi), nil
}

// begin starts a read transaction, ending the one before; its snapshot is taken by the first
// read and kept until the next begin or end.
func (d *database) begin(ctx context.Context) error {
	if err := d.end(ctx); err != nil {
		return err
	}
	if err := d.exec(ctx, "BEGIN"); err != nil {
		return databaseError("%s: %v", d.path, err)
	}
	d.inTx = true
	return nil
}

// end ends the read transaction, if any. A snapshot held keeps every WAL frame written after it
// from being checkpointed, and the WAL from being reset: it grows for as long as the snapshot
// lives. tail -f ends its snapshot before it prints (its stdout may block for ever) and holds
// none between polls.
func (d *database) end(ctx context.Context) error {
	if !d.inTx {
		return nil
	}
	if err := d.exec(ctx, "COMMIT"); err != nil {
		return err
	}
	d.inTx = false
	return nil
}

func (d *database) close() {
	if d.inTx {
		d.exec(context.Background(), "COMMIT")
	}
	d.dc.Close()
}

func (d *database) exec(ctx context.Context, query string) error {
	return rawsql.Exec(ctx, d.dc, query)
}

// each runs query with args and calls f with the values of each row as the driver gives them
// (int64, float64, string, []byte or nil); f must not keep the slice.
func (d *database) each(ctx context.Context, query string, args []any, f func(vals []driver.Value) error) error {
	if d.mem == nil {
		return rawsql.Each(ctx, d.dc, query, args, f)
	}
	return rawsql.Each(ctx, d.dc, query, args, func(vals []driver.Value) error {
		if err := d.mem.row(); err != nil {
			return err
		}
		return f(vals)
	})
}

// errNoRows is row's error for a query without rows.
var errNoRows = errors.New("no rows")

// row runs query and stores the first row's values in dest: *int64, *bool, *string,
// *sql.NullInt64 or *sql.NullString.
func (d *database) row(ctx context.Context, query string, args []any, dest ...any) error {
	found := false
	err := d.each(ctx, query, args, func(vals []driver.Value) error {
		if found {
			return nil
		}
		found = true
		for i, v := range vals[:len(dest)] {
			if err := assign(dest[i], v); err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
		return nil
	})
	if err == nil && !found {
		err = errNoRows
	}
	return err
}

func assign(dest any, v driver.Value) error {
	switch p := dest.(type) {
	case *int64:
		*p = logrow.Int(v)
	case *bool:
		*p = logrow.Int(v) != 0
	case *string:
		*p, _ = logrow.Text(v)
	case *sql.NullInt64:
		*p = sql.NullInt64{Int64: logrow.Int(v), Valid: v != nil}
	case *sql.NullString:
		p.String, p.Valid = logrow.Text(v)
	default:
		return fmt.Errorf("cannot store %T in %T", v, dest)
	}
	return nil
}

// identify checks the marks plugin/querylog puts on its files (store.go, identify) and finds
// what the schema holds.
func (d *database) identify(ctx context.Context) error {
	var id logrow.Identity
	err := d.row(ctx, logrow.IdentityQuery, nil, &id.AppID, &id.Version, &id.Objects)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqliteReadonlyDirectory {
		return databaseError("%s cannot be read while no server has it open: a reader of a WAL database needs its -wal and -shm files, which exist while the server runs, and this user cannot create them in the folder", d.path)
	}
	if err != nil {
		return databaseError("%s is not a readable SQLite database: %v", d.path, err)
	}
	switch id.Check() {
	case logrow.Blank, logrow.Foreign:
		return databaseError("%s is not a querylog database (application_id %d, %d schema objects)", d.path, id.AppID, id.Objects)
	case logrow.Newer:
		return databaseError("%s has schema version %d, newer than this build of querylog reads (%d): use a newer querylog", d.path, id.Version, logrow.SchemaVersion)
	case logrow.Unmigrated:
		return databaseError("%s is a querylog database without a schema yet", d.path)
	}
	d.schema = int(id.Version)
	var hasLog, hasV1, hasRollups bool
	err = d.row(ctx, `SELECT
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'log'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'queries_v1'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'rollup_outcomes'),
		EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'metadata'),
		EXISTS (SELECT 1 FROM pragma_table_info('log') WHERE name = 'pod'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'pods'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'rollup_upstreams'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'rollup_namespace_pods'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'rollup_searchpath'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type IN ('index', 'table') AND name = 'log_texts')
			AND EXISTS (SELECT 1 FROM pragma_table_info('dict_epochs') WHERE name = 'names_counted'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'log_texts'),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'name_firsts')`, nil,
		&hasLog, &hasV1, &hasRollups, &d.extra, &d.cluster, &d.pods, &d.upstreamRollups, &d.podRollups, &d.foldRollups, &d.textIndex, &d.textTable, &d.firsts)
	if err != nil {
		return d.queryError(err)
	}
	switch {
	case d.schema == 1:
		d.v1 = "queries"
	case hasLog:
		d.log, d.rollups, d.v1 = true, hasRollups, ""
		if hasV1 {
			d.v1 = "queries_v1"
		}
		if d.reader == nil {
			d.reader = logrow.NewReader(d.mem.dictTexts())
		}
	default:
		return databaseError("%s has schema version 2 but no log table", d.path)
	}
	return nil
}

// load reads the small tables every command may need: type, rcode and label names.
func (d *database) load(ctx context.Context) error {
	d.qtypes, d.rcodes = map[int64]string{}, map[int64]string{}
	for _, t := range []struct {
		query string
		into  map[int64]string
	}{{`SELECT code, name FROM qtype_names`, d.qtypes}, {`SELECT code, name FROM rcode_names`, d.rcodes}} {
		err := d.each(ctx, t.query, nil, func(v []driver.Value) error {
			t.into[logrow.Int(v[0])], _ = logrow.Text(v[1])
			return nil
		})
		if err != nil {
			return err
		}
	}
	return d.loadLabels(ctx)
}

// loadLabels reads the labels (servers, plugins, upstreams), which the server adds to as it
// meets new ones.
func (d *database) loadLabels(ctx context.Context) error {
	if !d.log {
		return nil
	}
	return d.reader.Labels.Load(ctx, d.dc)
}

// queryError turns an error of a query into what the user needs to know: a query over its
// time budget says so.
func (d *database) queryError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || (d.timeout > 0 && isInterrupt(err)) {
		return &exitError{exitQuery, fmt.Errorf("query took longer than %s; narrow --since or raise --timeout", d.timeout)}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%s: %w", d.path, err)
}

// isInterrupt reports whether SQLite stopped a query because its context ended.
func isInterrupt(err error) bool {
	return err != nil && strings.Contains(err.Error(), "interrupted")
}

// withBudget is ctx with the command's time budget.
func (d *database) withBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d.timeout)
}

// dictTexts bounds each dictionary cache, in texts: half a million, some 40 MB.
const dictTexts = 512 * 1024
