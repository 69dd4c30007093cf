package querylog

// The writer counts the log rows that hold each number of the names dictionary, so that
// querylog new takes the count of a name's numbered rows from names.n instead of reading them
// (schema.go, step 4). A row is counted in its dictionary entry as it is made (appendRow), and
// the counts are added to names.n at most once every nameCountsEvery, after a batch, in a
// transaction of their own, and at close. The same transaction sets names_counted of every
// epoch this store recorded to the last row written, so that for each of those epochs, n is
// exactly its rows up to names_counted. The counts of a failed batch are taken back (forget);
// a failed flush keeps them for the next one.

import (
	"context"
	"database/sql/driver"
	"time"

	"github.com/querylog/querylog/internal/rawsql"
)

// nameCountsEvery is how often, at most, the writer adds its counts to names.n.
const nameCountsEvery = time.Minute

// nameCounts is what the writer has counted and not yet added to names.n.
type nameCounts struct {
	// touched are the entries with rows counted since the last flush, each once: an entry
	// that left the dictionary's cache since (a generation, a new epoch, a failed batch) still
	// has them to add.
	touched []*dictEntry
	batch   uint64 // the batch being made: entries counted in it since its start have this serial
	since   int64  // log_id of the first epoch this store recorded; 0 before its first batch
	every   time.Duration
	flushed time.Time // when the last flush was tried
}

func newNameCounts() nameCounts {
	return nameCounts{batch: 1, every: nameCountsEvery, flushed: time.Now()}
}

// count counts a row that holds e's number. It is on the writer's path for most rows: an
// increment, and an append the first time e is counted since the last flush.
func (c *nameCounts) count(e *dictEntry) {
	if e.batch != c.batch {
		e.batch, e.before = c.batch, e.rows
		if e.rows == 0 {
			c.touched = append(c.touched, e)
		}
	}
	e.rows++
}

// committed records that the batch is written, its first row first: if it began an epoch and
// none began before in this store, names_counted is set from that epoch on.
func (c *nameCounts) committed(first int64, newEpoch bool) {
	if newEpoch && c.since == 0 {
		c.since = first
	}
	c.batch++
}

// undo takes back the counts of the batch that failed, and forgets the entries left with none.
func (c *nameCounts) undo() {
	kept := c.touched[:0]
	for _, e := range c.touched {
		if e.batch == c.batch {
			e.rows = e.before
		}
		if e.rows > 0 {
			kept = append(kept, e)
		}
	}
	clear(c.touched[len(kept):])
	c.touched = kept
	c.batch++
}

// due reports whether the counts should be written now.
func (c *nameCounts) due(now time.Time) bool {
	return c.since != 0 && now.Sub(c.flushed) >= c.every
}

// flush adds the counts to names.n and sets names_counted to last (the last row written) in
// one transaction on conn, and forgets the counts once it commits.
func (c *nameCounts) flush(ctx context.Context, conn driver.Conn, last int64) (err error) {
	c.flushed = time.Now()
	if c.since == 0 {
		return nil // no batch written: nothing counted, no epoch of ours
	}
	dc := rawsql.NewStmts(conn) // one UPDATE per entry: prepared once
	defer func() {
		if e := dc.Close(); err == nil {
			err = e
		}
	}()
	err = rawsql.InTx(ctx, dc, "BEGIN IMMEDIATE", func() error {
		for _, e := range c.touched {
			if err := rawsql.Exec(ctx, dc, `UPDATE names SET n = n + ? WHERE id = ?`, e.rows, e.id); err != nil {
				return err
			}
		}
		return rawsql.Exec(ctx, dc, `UPDATE dict_epochs SET names_counted = ? WHERE log_id >= ?`, last, c.since)
	})
	if err != nil {
		return err
	}
	for _, e := range c.touched {
		e.rows = 0
	}
	clear(c.touched)
	c.touched = c.touched[:0]
	return nil
}
