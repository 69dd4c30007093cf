package main

import (
	"context"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

func runSearch(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var f filter
	fs := newFlags("search", "[filters] [-n 50] [--after CURSOR]", out, &c, defaultTimeout)
	f.flags(fs, true)
	n := fs.Int("n", 50, "rows per page (1 to 10000)")
	after := fs.String("after", "", "the page after `CURSOR`, which the previous page printed")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return usageError("-n %d: must be from 1 to 10000", *n)
	}
	cur, err := parseCursor(*after)
	if err != nil {
		return err
	}
	d, w, err := openFiltered(ctx, c, &f)
	if err != nil {
		return err
	}
	defer d.close()
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	rows, more, err := d.search(qctx, w, cur, *n)
	if err != nil {
		return d.queryError(err)
	}
	next := ""
	if more {
		next = cursorOf(&rows[len(rows)-1])
	}
	if c.json {
		j := newJSONRows(d, out)
		j.w.WriteString(`{"rows":[`)
		for i := range rows {
			if i > 0 {
				j.w.WriteByte(',')
			}
			j.w.Write(j.appendRow(nil, &rows[i]))
		}
		j.w.WriteString(`],"next":`)
		if next == "" {
			j.w.WriteString("null")
		} else {
			j.w.Write(appendJSONString(nil, next))
		}
		j.w.WriteString("}\n")
		return j.flush()
	}
	if len(rows) == 0 {
		_, err := io.WriteString(out, "no rows match\n")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	io.WriteString(tw, strings.Join(tableColumns, "\t")+"\n")
	var t timeText
	for i := range rows {
		io.WriteString(tw, strings.Join(d.tableFields(&rows[i], &t), "\t")+"\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		_, err = io.WriteString(out, "next page: --after "+next+"\n")
	}
	return err
}

// search returns up to n rows that w selects, newest first, after cur; and whether there are
// more. Log rows come first, newest first by id; then rows of schema 1, newest first by ts.
func (d *database) search(ctx context.Context, w *where, cur cursor, n int) (rows []row, more bool, err error) {
	keep := func(r *row) error { rows = append(rows, *r); return nil }
	if d.log && !cur.v1 {
		hi := int64(math.MaxInt64)
		if !cur.isNull {
			hi = cur.id
		}
		q := w.logQuery(0, hi)
		q.newest, q.limit = true, n+1
		if err := d.logRows(ctx, q, keep); err != nil {
			return nil, false, err
		}
	}
	if len(rows) <= n && d.v1 != "" {
		q := w.v1Query()
		q.newest, q.limit = true, n+1-len(rows)
		if cur.v1 {
			q.conds = append(q.conds, `(q.ts < ? OR (q.ts = ? AND q.rowid < ?))`)
			q.args = append(q.args, cur.ts, cur.ts, cur.rowid)
		}
		if err := d.v1Rows(ctx, q, keep); err != nil {
			return nil, false, err
		}
	}
	if len(rows) > n {
		return rows[:n], true, nil
	}
	return rows, false, nil
}
