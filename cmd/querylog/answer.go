package main

import (
	"context"
	"errors"
	"io"
)

// result is a command's answer, written as a table or as JSON.
type result interface {
	writeTable(out io.Writer) error
	writeJSON(out io.Writer) error
}

// answer is what the commands that answer one question share: open the database, run query
// within the time budget on its snapshot, and write the result as --json asks. query may
// refuse the file with a usage or database error (an option it cannot answer), which is
// passed on as it is.
func answer[R result](ctx context.Context, c common, out io.Writer, query func(ctx context.Context, d *database) (R, error)) error {
	d, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	qctx, cancel := d.withBudget(ctx)
	defer cancel()
	res, err := query(qctx, d)
	if err != nil {
		if ee := (*exitError)(nil); errors.As(err, &ee) {
			return err
		}
		return d.queryError(err)
	}
	if c.json {
		return res.writeJSON(out)
	}
	return res.writeTable(out)
}
