// Package dblock holds a SQLite database's write lock from outside querylog, as another
// process would: the tests and the memory benchmarks use it to make querylog's writer wait.
package dblock

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite"
)

// Hold takes the write lock of the database at path (BEGIN EXCLUSIVE, waiting up to 10 s for
// it) on a connection of its own, and holds it until release is called. Release is safe to
// call more than once; only the first call does anything.
func Hold(path string) (release func() error, err error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "_pragma=busy_timeout(10000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		_, err := conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
		db.Close()
		if err != nil {
			return fmt.Errorf("unlocking %s: %w", path, err)
		}
		return nil
	}, nil
}
