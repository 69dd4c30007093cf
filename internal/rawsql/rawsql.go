// Package rawsql runs SQL on a database/sql/driver connection (inside sql.Conn.Raw), as the
// plugin's writer and the querylog command do where database/sql's per-call work showed in
// their profiles.
package rawsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
)

// Exec runs query with args.
func Exec(ctx context.Context, dc driver.Conn, query string, args ...any) error {
	_, err := dc.(driver.ExecerContext).ExecContext(ctx, query, NamedValues(args))
	return err
}

// WithConn runs f on one of db's connections as the driver has it.
func WithConn(ctx context.Context, db *sql.DB, f func(dc driver.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return f(dc.(driver.Conn)) })
}

// InTx runs f in a transaction on dc, begun with begin ("BEGIN IMMEDIATE" for a writer): it
// commits if f succeeds, and rolls back if f or the commit fails (a failed COMMIT, SQLITE_BUSY
// for one, leaves the transaction open).
func InTx(ctx context.Context, dc driver.Conn, begin string, f func() error) error {
	if err := Exec(ctx, dc, begin); err != nil {
		return err
	}
	err := f()
	if err == nil {
		err = Exec(ctx, dc, "COMMIT")
	}
	if err != nil {
		Exec(ctx, dc, "ROLLBACK")
	}
	return err
}

// Query runs query with args; the caller closes the rows.
func Query(ctx context.Context, dc driver.Conn, query string, args ...any) (driver.Rows, error) {
	return dc.(driver.QueryerContext).QueryContext(ctx, query, NamedValues(args))
}

// Each runs query with args and calls f with the values of each row as the driver gives them
// (int64, float64, string, []byte or nil); f must not keep the slice.
func Each(ctx context.Context, dc driver.Conn, query string, args []any, f func(vals []driver.Value) error) error {
	rows, err := Query(ctx, dc, query, args...)
	if err != nil {
		return err
	}
	return EachRow(ctx, rows, f)
}

// EachRow calls f with each row of rows, closes them, and stops when ctx ends.
func EachRow(ctx context.Context, rows driver.Rows, f func(vals []driver.Value) error) error {
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	for n := 1; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := rows.Next(vals); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := f(vals); err != nil {
			return err
		}
	}
}

// NamedValues converts arguments as database/sql would (an int becomes an int64).
func NamedValues(args []any) []driver.NamedValue {
	if len(args) == 0 {
		return nil
	}
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			v = a // the driver says what is wrong with it
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

// ReaderDSN is the modernc.org/sqlite connection string of a reader beside the writer (the
// shipper, the querylog command): a file: URI with the path percent-encoded (SQLite decodes
// %XX and ends the path at '?' or '#'), read-only, through the WAL so that it sees every
// commit, on a connection that refuses to change anything (query_only), waiting up to
// busyTimeoutMS for a lock.
func ReaderDSN(path string, busyTimeoutMS int) string {
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "query_only(1)")
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Stmts is a connection whose Exec prepares each statement once and runs it again with new
// arguments, for a writer that runs the same few upserts thousands of times in a transaction
// (SQLite's parser cost more than the upserts themselves). Queries pass through. Close
// finalizes the statements, not the connection.
type Stmts struct {
	driver.Conn
	stmts map[string]driver.Stmt
}

// NewStmts returns dc with its statements kept.
func NewStmts(dc driver.Conn) *Stmts { return &Stmts{Conn: dc, stmts: map[string]driver.Stmt{}} }

// ExecContext runs query, prepared the first time.
func (c *Stmts) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, ok := c.stmts[query]
	if !ok {
		var err error
		if st, err = c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		c.stmts[query] = st
	}
	return st.(driver.StmtExecContext).ExecContext(ctx, args)
}

// QueryContext runs query on the connection.
func (c *Stmts) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

// Close finalizes the statements and returns the first error.
func (c *Stmts) Close() error {
	var first error
	for q, st := range c.stmts {
		if err := st.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.stmts, q)
	}
	return first
}
