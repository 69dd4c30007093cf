package querylog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/querylog/querylog/internal/retry"
)

// defaultCheckpointEvery is how often the checkpointer copies the WAL back into the database.
const defaultCheckpointEvery = time.Second

// checkpointer copies the WAL into the database from its own connection, so that the cost of
// a checkpoint (tens of milliseconds for a few MB) is not paid inside a flush, as SQLite's
// automatic checkpoint on commit would. A PASSIVE checkpoint never blocks the writer. The
// writer connection keeps a far-off automatic checkpoint as a backstop.
type checkpointer struct {
	db    *sql.DB
	conn  *sql.Conn
	path  string
	every time.Duration // between checkpoints
	stop  chan struct{}
	done  chan struct{}
}

// startCheckpointer connects to the database at path, which the writer has just opened, and
// checkpoints it every so often. It
// connects at once and keeps that one connection: database/sql would otherwise connect on
// first use, or again after an error, by name, and if the file has been renamed or deleted
// meanwhile that creates a new one beside the writer's WAL, which the two would then share.
func startCheckpointer(path string, every time.Duration) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	c := &checkpointer{db: db, conn: conn, path: path, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	retry.PanicsTotal.WithLabelValues(path, inCheckpointer)
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	errLog := retry.Limiter{Every: retry.LogEvery}
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		err := retry.Guard(c.path, inCheckpointer, func() error {
			var busy, frames, copied int
			return c.conn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
		})
		if err != nil {
			if ok, suppressed := errLog.Allow(time.Now()); ok {
				log.Warningf("Checkpointing %s (%d similar warnings suppressed): %v", c.path, suppressed, err)
			}
		}
	}
}

func (c *checkpointer) close() {
	close(c.stop)
	<-c.done
	c.conn.Close()
	c.db.Close()
}
