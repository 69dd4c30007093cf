package querylog

import (
	"fmt"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// nameBatch is n entries of now: names asked again and again (r0. to r19.), and names asked
// once (s<batch>-<i>.), every fourth entry.
func nameBatch(batch, n int) []entry {
	var out []entry
	for i := range n {
		name := fmt.Sprintf("r%d.example.", (batch*7+i)%20)
		if i%4 == 3 {
			name = fmt.Sprintf("s%d-%d.example.", batch, i)
		}
		out = append(out, entryOf(&testLabels, queryRow{ts: time.Now().UnixMilli(), qname: name, client: "192.0.2.1"}))
	}
	return out
}

// numberedRows is how many log rows hold a name's number, and the epochs' names_counted in
// the order they began, at path.
func numberedRows(t *testing.T, path string) (rows int64, counted string) {
	t.Helper()
	db := testutil.OpenRO(t, path)
	if err := db.QueryRow(`SELECT count(*) FROM log WHERE typeof(name) = 'integer'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT group_concat(coalesce(names_counted, 'NULL'), ' ') FROM (SELECT names_counted FROM dict_epochs ORDER BY log_id)`).Scan(&counted); err != nil {
		t.Fatal(err)
	}
	return rows, counted
}

// TestNameCounts: names.n counts exactly the rows that hold the number up to its epoch's
// names_counted, after a flush, with rows written after it, and after close, which counts
// every row; across entries that left the dictionary's cache (a failed batch, a new epoch), a
// second process whose epochs are its own, and names counted by both.
func TestNameCounts(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	write := func(batch, n int) {
		t.Helper()
		if err := s.write(nameBatch(batch, n)); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 100)
	write(1, 300)
	s.state.forget() // the cache emptied: the names are numbered again, their counted rows kept
	write(2, 200)
	if err := s.flushNameCounts(); err != nil {
		t.Fatal(err)
	}
	flushedAt := s.state.lastID
	s.state.startEpoch()
	write(3, 200)
	write(4, 50)
	_, counted := checkNameRows(t, path, 0)
	numbered, epochs := numberedRows(t, path)
	if want := fmt.Sprintf("%d NULL", flushedAt); epochs != want {
		t.Errorf("names_counted of the epochs after a flush and a new epoch: %s, want %s", epochs, want)
	}
	if counted == 0 || counted >= numbered {
		t.Errorf("names.n sums to %d of %d numbered rows after a flush and more rows; want some, not all", counted, numbered)
	}

	// A flush after a batch once nameCountsEvery is over, and at close: every row counted.
	s.state.counts.every = 0
	write(5, 100)
	_, counted = checkNameRows(t, path, 0)
	if numbered, _ = numberedRows(t, path); counted != numbered {
		t.Errorf("names.n sums to %d of %d numbered rows after the flush of a batch, want all", counted, numbered)
	}
	s.state.counts.every = time.Hour
	write(6, 100)
	last := s.state.lastID
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	_, counted = checkNameRows(t, path, 0)
	numbered, epochs = numberedRows(t, path)
	if want := fmt.Sprintf("%d %d", last, last); counted != numbered || epochs != want {
		t.Errorf("after close: names.n sums to %d of %d numbered rows, epochs %s; want all, %s", counted, numbered, epochs, want)
	}

	// The next process counts its own epochs; the earlier ones keep their names_counted.
	s = testStore(t, path)
	write(7, 300)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	_, counted = checkNameRows(t, path, 0)
	numbered, epochs = numberedRows(t, path)
	if want := fmt.Sprintf("%d %d %d", last, last, s.state.lastID); counted != numbered || epochs != want {
		t.Errorf("after a second process: names.n sums to %d of %d numbered rows, epochs %s; want all, %s", counted, numbered, epochs, want)
	}
}

// TestNameCountsFailures: a failed batch adds nothing to the counts, whether its names were
// numbered before it or in it; a failed flush keeps them for the next one.
func TestNameCountsFailures(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	s.state.counts.every = 0 // a flush after every batch
	failRowsNamed(t, s, "bad.")
	for batch := range 4 {
		entries := nameBatch(batch, 200)
		if batch == 1 || batch == 2 {
			bad := append(nameBatch(batch, 200), entryOf(&testLabels, queryRow{ts: time.Now().UnixMilli(), qname: "bad.", client: "192.0.2.1"}))
			if err := s.write(bad); err == nil {
				t.Fatalf("batch %d with a failing row was written", batch)
			}
		}
		before := s.state.lastID
		if batch == 2 { // the flush of this batch fails
			if _, err := s.db.Exec(`CREATE TRIGGER no_counts BEFORE UPDATE ON names BEGIN SELECT RAISE(ABORT, 'no counts'); END`); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.write(entries); err != nil {
			t.Fatal(err)
		}
		if batch == 2 {
			if _, err := s.db.Exec(`DROP TRIGGER no_counts`); err != nil {
				t.Fatal(err)
			}
			_, counted := checkNameRows(t, path, 0)
			numbered, epochs := numberedRows(t, path)
			if counted >= numbered || epochs != fmt.Sprint(before) {
				t.Errorf("after a failed flush: names.n sums to %d of %d numbered rows, epochs %s; want the rows of the batches before", counted, numbered, epochs)
			}
		}
	}
	_, counted := checkNameRows(t, path, 0)
	numbered, epochs := numberedRows(t, path)
	if counted != numbered || epochs != fmt.Sprint(s.state.lastID) {
		t.Errorf("names.n sums to %d of %d numbered rows, epochs %s; want all, up to %d", counted, numbered, epochs, s.state.lastID)
	}
}
