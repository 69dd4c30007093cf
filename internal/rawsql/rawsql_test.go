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
