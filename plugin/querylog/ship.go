package querylog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/querylog/querylog/internal/retry"
)

// A shipper forwards one database file to ClickHouse: the SQLite file stays the durable log,
// and the shipper reads the rows after its cursor (the highest seq ClickHouse has acknowledged,
// kept in the file) and inserts them in batches, each row stamped (node, seq = rowid).
//
// Effectively once: a batch whose insert failed, or whose acknowledgement was lost (a crash
// between insert and cursor update, a dropped connection), may or may not be in ClickHouse.
// Before sending such a batch again, and at every start, the shipper waits until no insert of
// its node is still running in ClickHouse (system.processes, by query id), asks which of the
// batch's seqs ClickHouse already holds, and sends only the others. The question reads the
// batch's own time window of one node, a few granules of the sort key (node, time, seq): 4-13 ms
// for 20,000 rows of a 10-million-row table on 18.16, where max(seq) of the node takes 280 ms. ClickHouse 18.16 has no insert deduplication
// outside Replicated tables, and a ReplacingMergeTree would only merge duplicates away at some
// later time (count() would need FINAL): this way count() is exact as soon as an insert returns.
type shipper struct {
	w      *writer
	o      shipOptions
	db     *sql.DB     // read-only, the shipper's own
	reader *shipReader // reads rows through db
	ch     clickHouse  // the shipper goroutine's
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // cap 1: the flusher has committed rows
	final  chan struct{} // closed by finish: send what is there, then stop

	cols columns // the shipper goroutine's, reused for every insert

	cursor  atomic.Int64 // highest seq in ClickHouse; -1 until read from SQLite
	newest  atomic.Int64 // highest id in SQLite when last looked
	pending atomic.Int64 // rows after the cursor: counted at start, then kept up to date
	oldest  atomic.Int64 // arrival (Unix ms) of the first row after the cursor when last looked; 0: none

	errLog  retry.Limiter // the shipper goroutine's
	dropLog retry.Limiter // the flusher's, for rows max_size deletes before they are shipped

	// Failed attempts since shipping last worked, and when the first of them failed: the
	// shipper goroutine's, for the one line that says shipping recovered (errLog drops most
	// failure lines, so without it the log would end on an error).
	failures     int
	failingSince time.Time

	leftover string // what becomes of rows not shipped when it stops: set before finish
}

// The shipper's goroutines, as panics_total names them.
const (
	inShipper    = "shipper"
	inShipReader = "ship_reader"
)

const (
	leftAtExit  = "they are sent from the file at the next start"
	leftRotated = "they stay in the old file, which is no longer read"
)

var (
	// shipEvery is how often the shipper looks for new rows once it has caught up, and how
	// often it refreshes the lag while it waits (a variable so tests can shorten it).
	shipEvery = time.Second
	// shipBatchRows is the most rows one insert carries. Catching up a backlog (BenchmarkShip,
	// 2 cores shared with ClickHouse, medians of 3): 10,000 rows per insert ship 450K rows/s,
	// 20,000 527K, 50,000 528K. A batch of 20,000 takes about 12 MB while it is sent (rows and
	// columns), and another batch is read meanwhile, so 20,000 is where memory stops buying
	// speed.
	shipBatchRows = 20000
)

// startShipper starts the shipper goroutine. It opens everything itself, retrying, so that a
// writer that ships always has a shipper to bound what retention deletes.
func startShipper(w *writer, o shipOptions) *shipper {
	ctx, cancel := context.WithCancel(context.Background())
	s := &shipper{w: w, o: o, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1),
		final: make(chan struct{}), ch: clickHouse{o: o}, errLog: retry.Limiter{Every: retry.LogEvery}, dropLog: retry.Limiter{Every: retry.LogEvery},
		leftover: leftAtExit}
	s.cursor.Store(-1)
	// Every series exists from the start, at 0.
	shippedTotal.WithLabelValues(w.path)
	shipErrors.WithLabelValues(w.path)
	shipDropped.WithLabelValues(w.path, "max_size")
	retry.PanicsTotal.WithLabelValues(w.path, inShipper)
	retry.PanicsTotal.WithLabelValues(w.path, inShipReader)
	go s.run(ctx)
	return s
}

// stop ends the goroutine, interrupting an insert in flight (its rows are checked at the next
// start), and waits for it.
func (s *shipper) stop() {
	s.cancel()
	<-s.done
}

// finish sends what ClickHouse does not have yet, without waiting for the next second, and
// stops once caught up, at the first failure, or when timeout has passed. When the process
// exits, its file may go with it (a pod's volume): this is the last chance to ship the tail.
// leftover says in the log what becomes of the rows it could not send.
func (s *shipper) finish(timeout time.Duration, leftover string) {
	s.leftover = leftover
	close(s.final)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.cancel()
		<-s.done
		log.Warningf("Stopping with rows of %s not shipped to ClickHouse after %s; %s", s.w.path, timeout, leftover)
	}
}

func (s *shipper) finishing() bool {
	select {
	case <-s.final:
		return true
	default:
		return false
	}
}

func (s *shipper) run(ctx context.Context) {
	defer close(s.done)
	defer s.reset()
	var backoff retry.Backoff
	for ctx.Err() == nil {
		err := retry.Guard(s.w.path, inShipper, func() error { return s.ship(ctx) })
		if errors.Is(err, retry.ErrPanic) {
			s.reset() // what the connections were in the middle of is unknown
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errCaughtUp) {
				return
			}
			shipErrors.WithLabelValues(s.w.path).Inc()
			if s.failures == 0 {
				s.failingSince = time.Now()
			}
			s.failures++
			if ok, suppressed := s.errLog.Allow(time.Now()); ok {
				log.Errorf("Shipping %s to ClickHouse %s (%s) as node %s failed (%d similar errors suppressed), will retry: %v",
					s.w.path, s.o.target(), s.o.addrs, s.o.node, suppressed, err)
			}
			if s.finishing() {
				log.Warningf("Stopping with rows of %s not shipped to ClickHouse; %s", s.w.path, s.leftover)
				return
			}
			s.wait(ctx, backoff.Next())
			continue
		}
		backoff.Reset()
	}
}

// ship runs until it fails or is stopped: it reads a batch, makes sure none of it is sent twice,
// inserts it, and moves the cursor. While a full batch is being inserted, the next one is read
// from SQLite, so that catching up a backlog keeps both sides busy.
func (s *shipper) ship(ctx context.Context) error {
	if err := s.open(); err != nil {
		return err
	}
	if s.cursor.Load() < 0 {
		c, err := s.loadCursor()
		if err != nil {
			return fmt.Errorf("reading the cursor from %s: %w", s.w.path, err)
		}
		s.cursor.Store(c)
		n, err := countAfter(s.db, c)
		if err != nil {
			return fmt.Errorf("counting the rows of %s to ship: %w", s.w.path, err)
		}
		s.pending.Store(n)
	}
	// Until a batch turns out to be wholly new, each one is checked against ClickHouse: at
	// start, because the last process may have died between an insert and saving the cursor;
	// after a failure, because the failed insert may have been committed all the same.
	check := true
	var bufs [2][]shipRow // the batch being sent and the one being read ahead
	var ahead chan readResult
	gathered := false // bufs[0] holds the rows gather read
	defer func() {
		if ahead != nil {
			<-ahead // its buffer and the connection must be free before returning
		}
	}()
	for ctx.Err() == nil {
		var batch []shipRow
		if ahead != nil {
			r := <-ahead
			ahead = nil
			if r.err != nil {
				return fmt.Errorf("reading %s: %w", s.w.path, r.err)
			}
			bufs[0], bufs[1] = r.rows, bufs[0]
		} else if !gathered {
			var err error
			if bufs[0], err = s.reader.read(s.cursor.Load(), shipBatchRows, bufs[0][:0]); err != nil {
				return fmt.Errorf("reading %s: %w", s.w.path, err)
			}
		}
		gathered = false
		batch = bufs[0]
		if err := s.progress(); err != nil {
			return err
		}
		if len(batch) == 0 {
			if s.finishing() {
				return errCaughtUp
			}
			var err error
			if bufs[0], err = s.gather(ctx, s.cursor.Load(), bufs[0][:0]); err != nil {
				return fmt.Errorf("reading %s: %w", s.w.path, err)
			}
			gathered = true
			continue
		}
		full, upTo := len(batch) == shipBatchRows, batch[len(batch)-1].seq
		if !full {
			s.pending.Store(int64(len(batch))) // all there is: whatever the count drifted by
		}
		if full {
			ahead = make(chan readResult, 1)
			go func(dst []shipRow) {
				var rows []shipRow
				err := retry.Guard(s.w.path, inShipReader, func() (err error) {
					rows, err = s.reader.read(upTo, shipBatchRows, dst)
					return err
				})
				ahead <- readResult{rows, err}
			}(bufs[1][:0])
		}
		send := batch
		if check {
			var err error
			if send, err = s.unshipped(ctx, batch); err != nil {
				return err
			}
			check = len(send) < len(batch)
			// Every attempt after a failure starts here: ClickHouse answered and the table is
			// as it must be.
			s.recovered()
		}
		if len(send) > 0 {
			ictx, cancel := context.WithTimeout(ctx, shipQueryTimeout)
			err := insertRows(ictx, &s.ch, s.o, queryID(s.o.node, send), send, &s.cols)
			cancel()
			if err != nil {
				return fmt.Errorf("inserting %d rows: %w", len(send), err)
			}
		}
		s.acknowledge(upTo, len(batch))
		if !full {
			s.progress()
			var err error
			if bufs[0], err = s.gather(ctx, upTo, bufs[0][:0]); err != nil {
				return fmt.Errorf("reading %s: %w", s.w.path, err)
			}
			gathered = true
		}
	}
	return nil
}

// gather waits shipEvery for the next rows to send, reading the rows after the id after into
// dst as the flusher commits them: a few milliseconds of reading at each commit rather than
// all of the interval's rows at once (with GOMAXPROCS=1, one read of 10,000 rows each second
// held DNS replies up: runbook, section 10). It returns early with a full batch, or when
// stopped or finishing, and refreshes the lag at each commit.
func (s *shipper) gather(ctx context.Context, after int64, dst []shipRow) ([]shipRow, error) {
	end := time.Now().Add(shipEvery)
	for len(dst) < shipBatchRows {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		t := time.NewTimer(left)
		finishing := false
		select {
		case <-ctx.Done():
			t.Stop()
			return dst, nil
		case <-s.final:
			t.Stop()
			finishing = true // what is there now goes without waiting
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
		if len(dst) > 0 {
			after = dst[len(dst)-1].seq
		}
		var err error
		if dst, err = s.reader.read(after, shipBatchRows, dst); err != nil || finishing {
			return dst, err
		}
		s.progress() // best effort: a failure shows in the next attempt
	}
	return dst, nil
}

type readResult struct {
	rows []shipRow
	err  error
}

// unshipped returns the rows of batch that ClickHouse does not hold yet, once no insert of this
// node is running there any more. It also creates the table if it is missing and checks its
// columns, since a failure may have been a dropped or altered table.
func (s *shipper) unshipped(ctx context.Context, batch []shipRow) ([]shipRow, error) {
	ctx, cancel := context.WithTimeout(ctx, shipQueryTimeout)
	defer cancel()
	if err := s.ch.ping(ctx); err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if err := ensureTable(ctx, &s.ch, s.o); err != nil {
		return nil, err
	}
	for {
		n, err := insertsRunning(ctx, &s.ch, s.o)
		if err != nil {
			return nil, fmt.Errorf("looking for inserts still running: %w", err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("an earlier insert of node %s is still running in ClickHouse: %w", s.o.node, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	have, err := shippedSeqs(ctx, &s.ch, s.o, batch)
	if err != nil {
		return nil, fmt.Errorf("asking which rows are already shipped: %w", err)
	}
	return withoutShipped(batch, have), nil
}

// recovered says once, after failed attempts, that shipping works again.
func (s *shipper) recovered() {
	if s.failures == 0 {
		return
	}
	log.Infof("Shipping %s to ClickHouse %s recovered after %d failed attempts (since %s)",
		s.w.path, s.o.target(), s.failures, s.failingSince.UTC().Format(time.RFC3339))
	s.failures = 0
}

// acknowledge moves the cursor past upTo: every row of a batch of n up to it is in ClickHouse.
func (s *shipper) acknowledge(upTo int64, n int) {
	s.cursor.Store(upTo)
	s.pending.Add(-int64(n))
	shippedTotal.WithLabelValues(s.w.path).Add(float64(n))
	// A cursor that could not be saved is only behind: the rows after it are checked against
	// ClickHouse at the next start, not sent again.
	if err := s.saveCursor(upTo); err != nil {
		if ok, suppressed := s.errLog.Allow(time.Now()); ok {
			log.Warningf("Saving the ship cursor of %s (%d similar errors suppressed): %v", s.w.path, suppressed, err)
		}
	}
}

// open opens the shipper's SQLite reader, once; the ClickHouse connection is dialled when
// first used.
func (s *shipper) open() error {
	if s.db == nil {
		db, err := openShipReader(s.w.path)
		if err != nil {
			return fmt.Errorf("opening %s: %w", s.w.path, err)
		}
		s.db, s.reader = db, newShipReader(db)
	}
	return nil
}

// reset closes the shipper's SQLite reader and ClickHouse connection, to be opened afresh.
func (s *shipper) reset() {
	s.ch.close()
	if s.db != nil {
		s.db.Close()
		s.db, s.reader = nil, nil
	}
}

// progress refreshes what the lag metrics are computed from.
func (s *shipper) progress() error {
	if s.db == nil {
		return errClosed
	}
	newest, oldest, err := shipProgress(s.db, max(s.cursor.Load(), 0))
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.w.path, err)
	}
	if c := s.cursor.Load(); c > newest {
		// Retention and max_size always keep the newest row, so only rows deleted by hand get
		// here; SQLite then numbers new rows from the highest rowid left, below the cursor,
		// and they would never be shipped. Losing nothing beats keeping seqs unique.
		log.Errorf("The rows of %s up to seq %d were deleted by another program and SQLite numbers new rows from %d again: shipping the table from its start; ClickHouse will hold those seqs twice for node %s",
			s.w.path, c, newest+1, s.o.node)
		s.cursor.Store(0)
		if err := s.saveCursor(0); err != nil {
			return err
		}
		return s.progress()
	}
	s.newest.Store(newest)
	s.oldest.Store(oldest)
	return nil
}

// wait sleeps for d after a failure, refreshing the lag whenever the flusher commits and at
// least every shipEvery, and returns early when stopped or finishing. A backlog does not end it:
// that would make a retry of every flush.
func (s *shipper) wait(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		t := time.NewTimer(min(left, shipEvery))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.final:
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
		s.progress() // best effort: a failure shows in the next ship attempt
	}
}

var errCaughtUp = errors.New("caught up") // finish is done

func (s *shipper) loadCursor() (int64, error) {
	s.w.storeMu.Lock()
	defer s.w.storeMu.Unlock()
	if s.w.store == nil {
		return 0, errClosed
	}
	return s.w.store.loadCursor(s.o.target())
}

func (s *shipper) saveCursor(seq int64) error {
	s.w.storeMu.Lock()
	defer s.w.storeMu.Unlock()
	if s.w.store == nil {
		return errClosed
	}
	return s.w.store.saveCursor(s.o.target(), seq)
}

// lag returns the rows after the cursor and the age of the oldest of them.
func (s *shipper) lag(now time.Time) (rows int64, seconds float64) {
	rows = max(s.pending.Load(), 0)
	if oldest := s.oldest.Load(); oldest > 0 && rows > 0 {
		seconds = max(float64(now.UnixMilli()-oldest)/1000, 0)
	}
	return rows, seconds
}

// shipped is the bound for deleting rows: those up to it are in ClickHouse. Before the cursor
// has been read it is 0: nothing counts as shipped.
func (s *shipper) shipped() int64 { return max(s.cursor.Load(), 0) }

// ---- The writer's side: one shipper per writer, replaced when its options change. ----

// setShip starts, replaces or stops the writer's shipper to match o. The old shipper stops
// before a new one starts, so two never send the same rows, and stays visible to retention
// until then.
func (w *writer) setShip(o shipOptions) {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	old := w.ship.Load()
	if old != nil && old.o == o {
		return
	}
	if old == nil && !o.enabled() {
		return
	}
	if old != nil {
		old.stop()
	}
	var s *shipper
	if o.enabled() {
		s = startShipper(w, o)
	}
	w.ship.Store(s)
}

// finishShip lets the shipper send what is left, bounded by shutdown_timeout, and stops it. The
// writer's last holder calls it once the flusher has drained the buffer, and the flusher before
// it leaves a renamed file (leftRotated). It reports whether there was a shipper.
func (w *writer) finishShip(leftover string) bool {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	s := w.ship.Load()
	if s != nil {
		s.finish(w.options().shutdownTimeout, leftover)
		w.ship.Store(nil)
	}
	return s != nil
}

// shipWake tells the shipper, if any, that n rows were committed. It never blocks.
func (w *writer) shipWake(n int) {
	if s := w.ship.Load(); s != nil {
		s.pending.Add(int64(n))
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// shipBound reports whether rows are being shipped and, if so, the highest rowid that may be
// deleted without losing a row ClickHouse does not have.
func (w *writer) shipBound() (shipped int64, shipping bool) {
	if s := w.ship.Load(); s != nil {
		return s.shipped(), true
	}
	return 0, false
}

// pruneOldestShipping deletes a chunk of the oldest rows for max_size, and while shipping counts
// and logs those not shipped yet: max_size leaves no choice.
func (f *flusher) pruneOldestShipping(s *store, chunk int) (int64, error) {
	sh := f.w.ship.Load()
	if sh == nil {
		return s.pruneOldest(chunk)
	}
	deleted, unshipped, err := s.pruneOldestShipping(chunk, sh.shipped())
	if err != nil || unshipped == 0 {
		return deleted, err
	}
	sh.pending.Add(-unshipped)
	shipDropped.WithLabelValues(f.w.path, "max_size").Add(float64(unshipped))
	if ok, suppressed := sh.dropLog.Allow(time.Now()); ok {
		log.Errorf("max_size: deleted %d rows of %s that were not shipped to ClickHouse yet (%d similar errors suppressed)", unshipped, f.w.path, suppressed)
	}
	return deleted, nil
}
