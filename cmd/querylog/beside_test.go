package main

import (
	"context"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestBeside: a read beside runs on a second connection to the same file; where the oldest row
// is gone from the second snapshot (retention deleted it after the first began), on the first
// connection, whose snapshot still holds it.
func TestBeside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := loggedFile(t)
	d, err := openDatabase(ctx, db, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	type read struct {
		same bool // ran on d
		rows int64
	}
	readBeside := func() read {
		r, err := beside(ctx, d, func(o *database) (read, error) {
			var n int64
			err := o.row(ctx, `SELECT count(*) FROM log`, nil, &n)
			return read{o == d, n}, err
		})()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rows := rowCount(t, db)
	if got := readBeside(); got.same || got.rows != rows {
		t.Errorf("beside an unchanged file: %+v, want a second connection reading %d rows", got, rows)
	}
	testutil.Exec(t, db, `DELETE FROM log WHERE id = (SELECT min(id) FROM log)`)
	if got := readBeside(); !got.same || got.rows != rows {
		t.Errorf("beside, the oldest row deleted since the snapshot began: %+v, want the first connection reading %d rows", got, rows)
	}
}
