package logrow

import (
	"database/sql/driver"
	"fmt"
	"strconv"
)

// Int is a column's value, as the driver gives it, as an integer, as SQLite would cast it;
// 0 for NULL.
func Int(v driver.Value) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	case []byte:
		n, _ := strconv.ParseInt(string(v), 10, 64)
		return n
	case bool:
		if v {
			return 1
		}
	}
	return 0
}

// Text is a column's value, as the driver gives it, as text, as SQLite would cast it; false
// for NULL.
func Text(v driver.Value) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case []byte:
		return string(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	}
	return fmt.Sprint(v), true
}
