package main

import (
	"context"
	"io"
	"math"
)

func runExport(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var f filter
	fs := newFlags("export", "[--format csv|jsonl] [filters]", out, &c, 0)
	f.flags(fs, true)
	format := fs.String("format", "", "csv (with a header line) or jsonl (a JSON object per line); default csv, jsonl with --json.\n"+
		"Both are the stored texts exactly, for programs. A CSV field may begin with =, +, - or @,\n"+
		"which a spreadsheet may run as a formula: import the file as text, do not open it directly")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	switch {
	case *format == "" && c.json, *format == "jsonl":
		*format = "jsonl"
	case *format == "" || *format == "csv":
		if c.json {
			return usageError("--json and --format csv disagree")
		}
		*format = "csv"
	default:
		return usageError("--format %q: csv or jsonl", *format)
	}
	d, w, err := openFiltered(ctx, c, &f)
	if err != nil {
		return err
	}
	defer d.close()
	var rw rowWriter
	if *format == "csv" {
		rw = newCSVRows(d, out)
	} else {
		rw = newJSONRows(d, out)
	}
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	// Oldest first: rows of schema 1 are older than every log row. Rows stream from SQLite to
	// out one at a time, so memory does not grow with the export.
	if d.v1 != "" {
		if err := d.v1Rows(qctx, w.v1Query(), rw.write); err != nil {
			return d.queryError(err)
		}
	}
	if d.log {
		if err := d.logRows(qctx, w.logQuery(0, math.MaxInt64), rw.write); err != nil {
			return d.queryError(err)
		}
	}
	return rw.flush()
}
