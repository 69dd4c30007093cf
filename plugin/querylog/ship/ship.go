// Package ship forwards one querylog database to ClickHouse, each row once. It knows the
// database only through a Source, which the plugin's writer provides (the cursor kept in the
// file, the rows after it), and tells the writer through Bound which rows may be deleted.
package ship

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/querylog/querylog/internal/retry"
)

var log = clog.NewWithPlugin("querylog")

// A Shipper forwards one database file to ClickHouse: the SQLite file stays the durable log,
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
type Shipper struct {
	db     string // the database's path: the db label of the metrics, and in log lines
	src    Source
	o      Options
	t      Tuning
	reader Reader     // the shipper's own, opened by open
	ch     clickHouse // the shipper goroutine's
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // cap 1: the flusher has committed rows
	final  chan struct{} // closed by Finish: send what is there, then stop

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

	leftover string // what becomes of rows not shipped when it stops: set by Finish
}

// The shipper's goroutines, as panics_total names them.
const (
	inShipper    = "shipper"
	inShipReader = "ship_reader"
)

// Tuning is the shipper's pace; a zero field takes its default.
type Tuning struct {
	// Every is how often the shipper looks for new rows once it has caught up, and how often
	// it refreshes the lag while it waits. Default: a second.
	Every time.Duration
	// BatchRows is the most rows one insert carries. Catching up a backlog (BenchmarkShip,
	// 2 cores shared with ClickHouse, medians of 3): 10,000 rows per insert ship 450K rows/s,
	// 20,000 527K, 50,000 528K. A batch of 20,000 takes about 12 MB while it is sent (rows and
	// columns), and another batch is read meanwhile, so 20,000 is where memory stops buying
	// speed. Default: 20,000.
	BatchRows int
}

func (t Tuning) withDefaults() Tuning {
	if t.Every <= 0 {
		t.Every = time.Second
	}
	if t.BatchRows <= 0 {
		t.BatchRows = 20000
	}
	return t
}

// Start starts the shipper goroutine of the database at path db, which src reads, shipping as o
// says. It opens everything itself, retrying, so that a writer that ships always has a shipper
// to bound what retention deletes.
func Start(db string, src Source, o Options, t Tuning) *Shipper {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shipper{db: db, src: src, o: o, t: t.withDefaults(), cancel: cancel, done: make(chan struct{}),
		wake: make(chan struct{}, 1), final: make(chan struct{}), ch: clickHouse{o: o},
		errLog: retry.Limiter{Every: retry.LogEvery}, dropLog: retry.Limiter{Every: retry.LogEvery}}
	s.cursor.Store(-1)
	// Every series exists from the start, at 0.
	shippedTotal.WithLabelValues(db)
	errorsTotal.WithLabelValues(db)
	droppedTotal.WithLabelValues(db, "max_size")
	retry.PanicsTotal.WithLabelValues(db, inShipper)
	retry.PanicsTotal.WithLabelValues(db, inShipReader)
	go s.run(ctx)
	return s
}

// Options returns what the shipper was started with.
func (s *Shipper) Options() Options { return s.o }

// Stop ends the goroutine, interrupting an insert in flight (its rows are checked at the next
// start), and waits for it.
func (s *Shipper) Stop() {
	s.cancel()
	<-s.done
}

// Finish sends what ClickHouse does not have yet, without waiting for the next look, and
// stops once caught up, at the first failure, or when timeout has passed. When the process
// exits, its file may go with it (a pod's volume): this is the last chance to ship the tail.
// leftover says in the log what becomes of the rows it could not send.
func (s *Shipper) Finish(timeout time.Duration, leftover string) {
	s.leftover = leftover
	close(s.final)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.cancel()
		<-s.done
		log.Warningf("Stopping with rows of %s not shipped to ClickHouse after %s; %s", s.db, timeout, leftover)
	}
}

// Wake tells the shipper that the writer committed n rows. It never blocks.
func (s *Shipper) Wake(n int) {
	s.pending.Add(int64(n))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Dropped counts n rows deleted from SQLite, for reason, before they were shipped, and logs it
// (at most once per retry.LogEvery). The writer calls it, for max_size.
func (s *Shipper) Dropped(reason string, n int64) {
	s.pending.Add(-n)
	droppedTotal.WithLabelValues(s.db, reason).Add(float64(n))
	if ok, suppressed := s.dropLog.Allow(time.Now()); ok {
		log.Errorf("%s: deleted %d rows of %s that were not shipped to ClickHouse yet (%d similar errors suppressed)", reason, n, s.db, suppressed)
	}
}

func (s *Shipper) finishing() bool {
	select {
	case <-s.final:
		return true
	default:
		return false
	}
}

func (s *Shipper) run(ctx context.Context) {
	defer close(s.done)
	defer s.reset()
	var backoff retry.Backoff
	for ctx.Err() == nil {
		err := retry.Guard(s.db, inShipper, func() error { return s.ship(ctx) })
		if errors.Is(err, retry.ErrPanic) {
			s.reset() // what the connections were in the middle of is unknown
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errCaughtUp) {
				return
			}
			errorsTotal.WithLabelValues(s.db).Inc()
			if s.failures == 0 {
				s.failingSince = time.Now()
			}
			s.failures++
			if ok, suppressed := s.errLog.Allow(time.Now()); ok {
				log.Errorf("Shipping %s to ClickHouse %s (%s) as node %s failed (%d similar errors suppressed), will retry: %v",
					s.db, s.o.Target(), s.o.Addrs, s.o.Node, suppressed, err)
			}
			if s.finishing() {
				log.Warningf("Stopping with rows of %s not shipped to ClickHouse; %s", s.db, s.leftover)
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
func (s *Shipper) ship(ctx context.Context) error {
	if err := s.open(); err != nil {
		return err
	}
	if s.cursor.Load() < 0 {
		c, err := s.src.LoadCursor(s.o.Target())
		if err != nil {
			return fmt.Errorf("reading the cursor from %s: %w", s.db, err)
		}
		s.cursor.Store(c)
		n, err := s.reader.CountAfter(c)
		if err != nil {
			return fmt.Errorf("counting the rows of %s to ship: %w", s.db, err)
		}
		s.pending.Store(n)
	}
	// With rows to send, connect before reading them: while ClickHouse is down, every attempt
	// would otherwise read a batch and its read-ahead (2 x BatchRows rows) only to drop them,
	// 52 MiB more RSS at saturation (bench/README.md, Memory budget). Without rows, nothing is
	// sent and nothing fails until some come.
	if err := s.progress(); err != nil {
		return err
	}
	if s.newest.Load() > s.cursor.Load() {
		pctx, cancel := context.WithTimeout(ctx, shipQueryTimeout)
		err := s.ch.ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("connecting: %w", err)
		}
	}
	// Until a batch turns out to be wholly new, each one is checked against ClickHouse: at
	// start, because the last process may have died between an insert and saving the cursor;
	// after a failure, because the failed insert may have been committed all the same.
	check := true
	var bufs [2][]Row // the batch being sent and the one being read ahead
	var ahead chan readResult
	gathered := false // bufs[0] holds the rows gather read
	defer func() {
		if ahead != nil {
			<-ahead // its buffer and the connection must be free before returning
		}
	}()
	for ctx.Err() == nil {
		var batch []Row
		if ahead != nil {
			r := <-ahead
			ahead = nil
			if r.err != nil {
				return fmt.Errorf("reading %s: %w", s.db, r.err)
			}
			bufs[0], bufs[1] = r.rows, bufs[0]
		} else if !gathered {
			var err error
			if bufs[0], err = s.reader.Read(s.cursor.Load(), s.t.BatchRows, bufs[0][:0]); err != nil {
				return fmt.Errorf("reading %s: %w", s.db, err)
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
				return fmt.Errorf("reading %s: %w", s.db, err)
			}
			gathered = true
			continue
		}
		full, upTo := len(batch) == s.t.BatchRows, batch[len(batch)-1].Seq
		if !full {
			s.pending.Store(int64(len(batch))) // all there is: whatever the count drifted by
		}
		if full {
			ahead = make(chan readResult, 1)
			go func(dst []Row) {
				var rows []Row
				err := retry.Guard(s.db, inShipReader, func() (err error) {
					rows, err = s.reader.Read(upTo, s.t.BatchRows, dst)
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
			err := insertRows(ictx, &s.ch, s.o, queryID(s.o.Node, send), send, &s.cols)
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
				return fmt.Errorf("reading %s: %w", s.db, err)
			}
			gathered = true
		}
	}
	return nil
}

// gather waits Tuning.Every for the next rows to send, reading the rows after the id after into
// dst as the flusher commits them: a few milliseconds of reading at each commit rather than
// all of the interval's rows at once (with GOMAXPROCS=1, one read of 10,000 rows each second
// held DNS replies up: runbook, section 10). It returns early with a full batch, or when
// stopped or finishing, and refreshes the lag at each commit.
func (s *Shipper) gather(ctx context.Context, after int64, dst []Row) ([]Row, error) {
	end := time.Now().Add(s.t.Every)
	for len(dst) < s.t.BatchRows {
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
			after = dst[len(dst)-1].Seq
		}
		var err error
		if dst, err = s.reader.Read(after, s.t.BatchRows, dst); err != nil || finishing {
			return dst, err
		}
		s.progress() // best effort: a failure shows in the next attempt
	}
	return dst, nil
}

type readResult struct {
	rows []Row
	err  error
}

// unshipped returns the rows of batch that ClickHouse does not hold yet, once no insert of this
// node is running there any more. It also creates the table if it is missing and checks its
// columns, since a failure may have been a dropped or altered table.
func (s *Shipper) unshipped(ctx context.Context, batch []Row) ([]Row, error) {
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
			return nil, fmt.Errorf("an earlier insert of node %s is still running in ClickHouse: %w", s.o.Node, ctx.Err())
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
func (s *Shipper) recovered() {
	if s.failures == 0 {
		return
	}
	log.Infof("Shipping %s to ClickHouse %s recovered after %d failed attempts (since %s)",
		s.db, s.o.Target(), s.failures, s.failingSince.UTC().Format(time.RFC3339))
	s.failures = 0
}

// acknowledge moves the cursor past upTo: every row of a batch of n up to it is in ClickHouse.
func (s *Shipper) acknowledge(upTo int64, n int) {
	s.cursor.Store(upTo)
	s.pending.Add(-int64(n))
	shippedTotal.WithLabelValues(s.db).Add(float64(n))
	// A cursor that could not be saved is only behind: the rows after it are checked against
	// ClickHouse at the next start, not sent again.
	if err := s.src.SaveCursor(s.o.Target(), upTo); err != nil {
		if ok, suppressed := s.errLog.Allow(time.Now()); ok {
			log.Warningf("Saving the ship cursor of %s (%d similar errors suppressed): %v", s.db, suppressed, err)
		}
	}
}

// open opens the shipper's reader of the database, once; the ClickHouse connection is dialled
// when first used.
func (s *Shipper) open() error {
	if s.reader == nil {
		r, err := s.src.OpenReader()
		if err != nil {
			return fmt.Errorf("opening %s: %w", s.db, err)
		}
		s.reader = r
	}
	return nil
}

// reset closes the shipper's reader and ClickHouse connection, to be opened afresh.
func (s *Shipper) reset() {
	s.ch.close()
	if s.reader != nil {
		s.reader.Close()
		s.reader = nil
	}
}

// progress refreshes what the lag metrics are computed from.
func (s *Shipper) progress() error {
	if s.reader == nil {
		return errClosed
	}
	newest, oldest, err := s.reader.Progress(max(s.cursor.Load(), 0))
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.db, err)
	}
	if c := s.cursor.Load(); c > newest {
		// Retention and max_size always keep the newest row, so only rows deleted by hand get
		// here; SQLite then numbers new rows from the highest rowid left, below the cursor,
		// and they would never be shipped. Losing nothing beats keeping seqs unique.
		log.Errorf("The rows of %s up to seq %d were deleted by another program and SQLite numbers new rows from %d again: shipping the table from its start; ClickHouse will hold those seqs twice for node %s",
			s.db, c, newest+1, s.o.Node)
		s.cursor.Store(0)
		if err := s.src.SaveCursor(s.o.Target(), 0); err != nil {
			return err
		}
		return s.progress()
	}
	s.newest.Store(newest)
	s.oldest.Store(oldest)
	return nil
}

// wait sleeps for d after a failure, refreshing the lag whenever the flusher commits and at
// least every Tuning.Every, and returns early when stopped or finishing. A backlog does not end it:
// that would make a retry of every flush.
func (s *Shipper) wait(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		t := time.NewTimer(min(left, s.t.Every))
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

var errCaughtUp = errors.New("caught up") // Finish is done

// errClosed is progress's error while the shipper has no reader open.
var errClosed = errors.New("database already closed")

// Lag returns the rows after the cursor and the age of the oldest of them.
func (s *Shipper) Lag(now time.Time) (rows int64, seconds float64) {
	rows = max(s.pending.Load(), 0)
	if oldest := s.oldest.Load(); oldest > 0 && rows > 0 {
		seconds = max(float64(now.UnixMilli()-oldest)/1000, 0)
	}
	return rows, seconds
}

// Bound is the bound for deleting rows: those up to it are in ClickHouse. Before the cursor
// has been read it is 0: nothing counts as shipped.
func (s *Shipper) Bound() int64 { return max(s.cursor.Load(), 0) }
