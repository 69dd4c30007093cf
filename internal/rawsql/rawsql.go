// Package rawsql runs SQL on a database/sql/driver connection (inside sql.Conn.Raw), as the
// plugin's writer and the querylog command do where database/sql's per-call work showed in
// their profiles.
package rawsql

import (
	"context"
	"database/sql/driver"
)

// Exec runs query with args.
func Exec(ctx context.Context, dc driver.Conn, query string, args ...any) error {
	_, err := dc.(driver.ExecerContext).ExecContext(ctx, query, NamedValues(args))
	return err
}

// Query runs query with args; the caller closes the rows.
func Query(ctx context.Context, dc driver.Conn, query string, args ...any) (driver.Rows, error) {
	return dc.(driver.QueryerContext).QueryContext(ctx, query, NamedValues(args))
}

// NamedValues converts arguments as database/sql would (an int becomes an int64).
func NamedValues(args []any) []driver.NamedValue {
	if len(args) == 0 {
		return nil
	}
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			v = a // the driver says what is wrong with it
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}
