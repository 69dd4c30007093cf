package main

import (
	"context"
	"database/sql"
	"sync"

	"github.com/querylog/querylog/internal/rawsql"
)

// beside runs read on a second connection to d's file, in a read transaction of its own,
// while the caller goes on reading on d, and returns a function that waits for its result
// (safe to call more than once: a deferred call makes sure the connection is closed). The
// machine CoreDNS runs on has a core or two; a command that reads two parts of the file at
// once answers sooner.
//
// The second snapshot begins later than d's, so read must only read what both snapshots hold
// alike: log rows (and what the writer wrote with them) up to ids d has seen, which no writer
// changes once written. Retention deletes the oldest rows: where d's oldest row is not the
// second snapshot's, or the second connection cannot be opened (the path names another file
// now), read runs on d itself, when the result is waited for.
func beside[T any](ctx context.Context, d *database, read func(*database) (T, error)) func() (T, error) {
	other, err := d.sibling(ctx)
	if err != nil || other == nil {
		return sync.OnceValues(func() (T, error) { return read(d) })
	}
	done := make(chan struct{})
	var res T
	var readErr error
	go func() {
		defer close(done)
		defer other.close()
		res, readErr = read(other)
	}()
	return sync.OnceValues(func() (T, error) {
		<-done
		return res, readErr
	})
}

// sibling opens a second read connection to d's file and begins its snapshot; nil if the file
// is another now, or its oldest log row is not d's.
func (d *database) sibling(ctx context.Context) (*database, error) {
	file, err := checkFile(d.path, d.abs)
	if err != nil || file != d.file {
		return nil, err
	}
	dc, err := sqliteDriver.Open(rawsql.ReaderDSN(d.abs, busyTimeoutMS))
	if err != nil {
		return nil, err
	}
	other := &database{path: d.path, abs: d.abs, file: file, dc: dc, timeout: d.timeout, mem: d.mem.fork(),
		log: d.log, textIndex: d.textIndex, firsts: d.firsts}
	if err := other.begin(ctx); err != nil {
		dc.Close()
		return nil, err
	}
	var mine, theirs sql.NullInt64
	oldest := `SELECT min(id) FROM log`
	err = d.row(ctx, oldest, nil, &mine)
	if err == nil {
		err = other.row(ctx, oldest, nil, &theirs)
	}
	if err != nil || mine != theirs {
		other.close()
		return nil, err
	}
	return other, nil
}
