package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// tailBatch is the most rows one poll of tail -f reads before it prints them.
const tailBatch = 10_000

func runTail(ctx context.Context, args []string, out, notes io.Writer) error {
	var c common
	var f filter
	fs := newFlags("tail", "[-f] [-n 10] [filters]", out, &c, defaultTimeout)
	f.flags(fs, false)
	follow := fs.Bool("f", false, "follow: print new rows as they are written, until interrupted")
	n := fs.Int("n", 10, "the newest rows to print first (0 to 10000)")
	interval := fs.Duration("interval", 250*time.Millisecond, "with -f, how often to look for new rows (50ms to 10s)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *n < 0 || *n > 10000 {
		return usageError("-n %d: must be from 0 to 10000", *n)
	}
	if *interval < 50*time.Millisecond || *interval > 10*time.Second {
		return usageError("--interval %s: must be from 50ms to 10s", *interval)
	}
	d, w, err := openFiltered(ctx, c, &f)
	if err != nil {
		return err
	}
	fl := &follower{c: c, f: &f, d: d, w: w, notes: notes}
	defer func() { fl.d.close() }()
	p := &tailPrinter{d: d, out: bufio.NewWriter(out), json: c.json}
	fl.p = p
	if p.json {
		p.j = newJSONRows(d, p.out)
	} else {
		p.out.WriteString(fixedLine(tableColumns) + "\n")
	}

	qctx, cancel := d.withBudget(ctx)
	var rows []row
	if *n > 0 {
		rows, _, err = d.search(qctx, w, cursor{isNull: true}, *n)
	}
	if err == nil && *follow {
		fl.last, err = d.newestID(qctx)
	}
	if err == nil {
		err = d.end(qctx) // before printing: stdout may block
	}
	cancel()
	if err != nil {
		return d.queryError(err)
	}
	slices.Reverse(rows)
	for i := range rows {
		if err := p.print(&rows[i]); err != nil {
			return err
		}
	}
	if err := p.out.Flush(); err != nil || !*follow {
		return err
	}

	// Each poll reads the rows after the last one seen, in a snapshot of its own: ids only grow
	// (plugin/querylog/writestate.go), so every row written is read once, whenever it arrived.
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := fl.checkPath(ctx)
		if err == nil {
			err = fl.readNew(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// follower is tail -f after the first rows: the database it follows and its filter, the last
// id seen, and what it has said on stderr about the path.
type follower struct {
	c        common
	f        *filter
	d        *database
	w        *where
	last     int64 // the newest id (or rowid of schema 1) seen
	p        *tailPrinter
	notes    io.Writer
	gone     bool      // said that the path names no file
	replaced time.Time // when the path was first seen to name another file that cannot be read
	failed   string    // the error opening the new file, said once
}

// newFileGrace is how long a new file at the path may stay unreadable before tail says so: a
// server creates it empty, then writes its schema.
const newFileGrace = 10 * time.Second

// readNew prints the rows written after the last one seen, a batch per snapshot, each snapshot
// ended before its rows are printed.
func (fl *follower) readNew(ctx context.Context) error {
	for {
		qctx, cancel := fl.d.withBudget(ctx)
		rows, err := fl.d.poll(qctx, fl.w, &fl.last)
		cancel()
		if err != nil {
			return fl.d.queryError(err)
		}
		for i := range rows {
			if err := fl.p.print(&rows[i]); err != nil {
				return err
			}
		}
		if err := fl.p.out.Flush(); err != nil {
			return err
		}
		if len(rows) < tailBatch {
			return nil
		}
	}
}

// checkPath follows the file at the path once it is another than the one open (rotation.go),
// and says so on stderr. It first reads the old file to its end: a server that created the
// new file has closed the old one (after moving its WAL into it), so nothing is missed. The new
// file is read from its first row. While the path names no file, or a file that cannot be read
// yet (said after newFileGrace), the old file is followed.
func (fl *follower) checkPath(ctx context.Context) error {
	path := printable(fl.d.path)
	switch fl.d.pathNow() {
	case pathSame:
		fl.gone = false
		return nil
	case pathGone:
		if !fl.gone {
			fl.gone = true
			fmt.Fprintf(fl.notes, "querylog tail: %s was renamed or deleted: following the old file until a new one appears\n", path)
		}
		return nil
	}
	if err := fl.readNew(ctx); err != nil {
		return err
	}
	d, w, err := openFiltered(ctx, fl.c, fl.f)
	if err == nil {
		if err = d.end(ctx); err != nil {
			d.close()
		}
	}
	if err != nil {
		if fl.replaced.IsZero() {
			fl.replaced = time.Now()
		}
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if msg != fl.failed && time.Since(fl.replaced) >= newFileGrace && ctx.Err() == nil {
			fl.failed = msg
			fmt.Fprintf(fl.notes, "querylog tail: %s was replaced, but the new file cannot be read yet (following the old one): %s\n", path, printable(msg))
		}
		return nil
	}
	fl.d.close()
	fl.d, fl.w, fl.last, fl.gone, fl.replaced, fl.failed = d, w, 0, false, time.Time{}, ""
	fl.p.d = d
	if fl.p.j != nil {
		fl.p.j.d = d
	}
	fmt.Fprintf(fl.notes, "querylog tail: %s was rotated or replaced: following the new file from its first row\n", path)
	return nil
}

// newestID is the id of the newest row (the rowid of schema 1 in a file of schema 1).
func (d *database) newestID(ctx context.Context) (int64, error) {
	table, col := "log", "id"
	if !d.log {
		table, col = d.v1, "rowid"
	}
	var id int64
	err := d.row(ctx, `SELECT coalesce(max(`+col+`), 0) FROM `+table, nil, &id)
	return id, err
}

// poll reads, in a snapshot of its own, up to tailBatch rows that w selects written after *last,
// updating it, and ends the snapshot before it returns them, so that printing them (stdout may
// block) holds up no checkpoint. Labels are read again, since the server adds one when a plugin
// answers for the first time.
func (d *database) poll(ctx context.Context, w *where, last *int64) ([]row, error) {
	if err := d.begin(ctx); err != nil {
		return nil, err
	}
	rows, err := d.newRows(ctx, w, last)
	if endErr := d.end(ctx); err == nil {
		err = endErr
	}
	return rows, err
}

// newRows reads up to tailBatch rows that w selects written after *last, updating it.
func (d *database) newRows(ctx context.Context, w *where, last *int64) ([]row, error) {
	var version int64
	if err := d.row(ctx, `SELECT user_version FROM pragma_user_version`, nil, &version); err != nil {
		return nil, err
	}
	if int(version) != d.schema { // upgraded by a new server under us: read the new log from its start
		if err := d.identify(ctx); err != nil {
			return nil, err
		}
		*last = 0
	}
	if d.log && !d.cluster { // the pod and cache columns come with the first row that has either
		if err := d.identify(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.loadLabels(ctx); err != nil {
		return nil, err
	}
	var rows []row
	keep := func(r *row) error { rows = append(rows, *r); *last = r.id; return nil }
	var err error
	if d.log {
		q := w.logQuery(*last+1, math.MaxInt64)
		q.limit = tailBatch
		err = d.logRows(ctx, q, keep)
	} else {
		// Schema 1 has no id: its rows are followed by rowid, in the order they were written.
		err = d.v1Follow(ctx, w, *last, keep)
	}
	return rows, err
}

// v1Follow calls f with the rows of schema 1 that w selects after rowid last, in rowid order.
func (d *database) v1Follow(ctx context.Context, w *where, last int64, f func(*row) error) error {
	q := w.v1Query()
	q.conds = append(q.conds, `q.rowid > ?`)
	q.args, q.limit, q.byRowid = append(q.args, last), tailBatch, true
	return d.v1Rows(ctx, q, f)
}

// tailPrinter prints rows for tail: fixed-width lines, or JSON lines.
type tailPrinter struct {
	d    *database
	out  *bufio.Writer
	json bool
	j    *jsonRows
	t    timeText
}

func (p *tailPrinter) print(r *row) error {
	if p.json {
		p.j.buf = p.j.appendRow(p.j.buf[:0], r)
		p.j.buf = append(p.j.buf, '\n')
		_, err := p.out.Write(p.j.buf)
		return err
	}
	_, err := p.out.WriteString(fixedLine(p.d.tableFields(r, &p.t)) + "\n")
	return err
}
