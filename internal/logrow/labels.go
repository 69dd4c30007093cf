package logrow

import (
	"context"
	"database/sql/driver"

	"github.com/querylog/querylog/internal/rawsql"
)

// Labels holds the labels table: the texts of the servers, plugins and upstreams rows refer to
// by number. The writer adds a label, in its own commit, before the first row that uses it.
type Labels struct {
	texts map[[2]int64]string // by kind (Label*) and number
}

// Load reads the labels table on dc, replacing what was held.
func (l *Labels) Load(ctx context.Context, dc driver.Conn) error {
	l.texts = map[[2]int64]string{}
	return rawsql.Each(ctx, dc, `SELECT kind, n, text FROM labels`, nil, func(v []driver.Value) error {
		l.texts[[2]int64{Int(v[0]), Int(v[1])}], _ = Text(v[2])
		return nil
	})
}

// Text returns the text of label n of kind, as last loaded; false if there was none (never
// for 0, which means none).
func (l *Labels) Text(kind, n int64) (string, bool) {
	t, ok := l.texts[[2]int64{kind, n}]
	return t, ok
}
