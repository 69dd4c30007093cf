package rawsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"testing"

	"github.com/querylog/querylog/internal/rawsql"
	"github.com/querylog/querylog/internal/testutil"
)

// TestInTx checks that InTx commits what f did, rolls it back when f fails, and rolls back
// when the COMMIT itself fails (here SQLITE_BUSY: a reader holds the rollback journal's shared
// lock), leaving the connection free for the next transaction.
func TestInTx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tx.db")
	testutil.Exec(t, path, "PRAGMA journal_mode=DELETE; CREATE TABLE t (v INTEGER)")
	db, err := sql.Open("sqlite", "file:"+path) // no busy timeout: a held lock fails at once
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	insert := func(v int, fail error) error {
		return conn.Raw(func(c any) error {
			dc := c.(driver.Conn)
			return rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error {
				if err := rawsql.Exec(ctx, dc, "INSERT INTO t VALUES (?)", v); err != nil {
					return err
				}
				return fail
			})
		})
	}
	count := func() (n int) {
		if err := testutil.OpenRO(t, path).QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if err := insert(1, nil); err != nil {
		t.Fatalf("a transaction that succeeds: %v", err)
	}
	boom := errors.New("boom")
	if err := insert(2, boom); !errors.Is(err, boom) {
		t.Fatalf("a transaction whose work fails returned %v, want %v", err, boom)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d rows after one commit and one failure, want 1", n)
	}

	reader := testutil.OpenRO(t, path)
	tx, err := reader.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil { // takes the shared lock
		t.Fatal(err)
	}
	if err := insert(3, nil); err == nil {
		t.Fatal("COMMIT succeeded while a reader held the shared lock of a rollback journal")
	}
	tx.Rollback()
	if err := insert(4, nil); err != nil {
		t.Fatalf("the next transaction after a failed COMMIT: %v", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows, want 2 (the failed COMMIT's row rolled back)", n)
	}
}

// TestStmts checks that Stmts runs a kept statement with each call's arguments (an upsert ten
// times), runs a script of two statements, passes queries through, and that Close finalizes
// its statements without error and leaves the connection usable. (That it prepares each text
// once shows in BenchmarkRollupFlush's CPU, not here.)
func TestStmts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stmts.db")
	testutil.Exec(t, path, "CREATE TABLE t (k INTEGER PRIMARY KEY, n INTEGER)")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	err = rawsql.WithConn(ctx, db, func(dc driver.Conn) error {
		st := rawsql.NewStmts(dc)
		upsert := `INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n`
		for i := range 10 {
			if err := rawsql.Exec(ctx, st, upsert, i%3, 1); err != nil {
				return err
			}
		}
		if err := rawsql.Exec(ctx, st, `UPDATE t SET n = n * 10 WHERE k = 0; UPDATE t SET n = n * 100 WHERE k = 1`); err != nil {
			return err
		}
		var got []int64
		err := rawsql.Each(ctx, st, `SELECT n FROM t ORDER BY k`, nil, func(v []driver.Value) error {
			got = append(got, v[0].(int64))
			return nil
		})
		if err != nil {
			return err
		}
		if want := []int64{40, 300, 3}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("counts %v, want %v", got, want)
		}
		if err := st.Close(); err != nil {
			return err
		}
		return rawsql.Exec(ctx, dc, `DROP TABLE t`)
	})
	if err != nil {
		t.Fatal(err)
	}
}
