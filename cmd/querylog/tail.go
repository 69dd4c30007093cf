package main

import (
	"bufio"
	"context"
	"io"
	"math"
	"slices"
	"time"
)

// tailBatch is the most rows one poll of tail -f reads before it prints them.
const tailBatch = 10_000

func runTail(ctx context.Context, args []string, out io.Writer) error {
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
		return usageError("-interval %s: must be from 50ms to 10s", *interval)
	}
	d, w, err := openFiltered(ctx, c, &f)
	if err != nil {
		return err
	}
	defer d.close()
	p := &tailPrinter{d: d, out: bufio.NewWriter(out), json: c.json}
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
	var last int64 // the newest id (or rowid of schema 1) seen
	if err == nil && *follow {
		last, err = d.newestID(qctx)
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
	// (plugin/querylog/batch.go), so every row written is read once, whenever it arrived.
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			qctx, cancel := d.withBudget(ctx)
			rows, err := d.poll(qctx, w, &last)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return d.queryError(err)
			}
			for i := range rows {
				if err := p.print(&rows[i]); err != nil {
					return err
				}
			}
			if err := p.out.Flush(); err != nil {
				return err
			}
			if len(rows) < tailBatch {
				break
			}
		}
	}
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
