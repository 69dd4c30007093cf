package querylog

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestWALSizeGauge: wal_size_bytes{db} is the size of the database's -wal file, which grows
// while a reader holds a snapshot (as tail -f did between polls), whoever writes.
func TestWALSizeGauge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	w, err := acquire(retentionOpts(path), tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.release(w.options(), false)
	testutil.WaitFor(t, 10*time.Second, "the database to open", w.ready)

	ctx := context.Background()
	conn, err := testutil.OpenRO(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")
	addRows(t, path, 50_000, time.Now().UnixMilli())

	var size int64
	testutil.WaitFor(t, 10*time.Second, "wal_size_bytes to be the -wal file's size", func() bool {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			return false
		}
		size = fi.Size()
		return testutil.Gather(t).Get(path, "wal_size_bytes") == float64(size)
	})
	if size < 1<<20 {
		t.Errorf("the WAL is %d bytes after 50,000 rows behind a held snapshot; want more than 1 MiB", size)
	}
}
