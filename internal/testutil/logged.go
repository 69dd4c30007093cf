package testutil

import "testing"

// CheckLogged checks the databases dbs against the queries sent to a server: every answered
// name is exactly one row in exactly one of them, and every other row belongs to a failed query
// (a timeout is not an answer, but the server may well have answered and logged it). It returns
// the rows of each database by name.
func CheckLogged(t testing.TB, answered, failed []string, dbs ...string) []map[string]int {
	t.Helper()
	per := make([]map[string]int, len(dbs))
	total := map[string]int{}
	for i, db := range dbs {
		per[i] = Names(t, db)
		for n, c := range per[i] {
			total[n] += c
		}
	}
	missing, dup := 0, 0
	for _, n := range answered {
		switch c := total[n]; {
		case c == 0:
			if missing++; missing <= 5 {
				t.Errorf("answered query %s is not in %v", n, dbs)
			}
		case c > 1:
			if dup++; dup <= 5 {
				t.Errorf("answered query %s is logged %d times", n, c)
			}
		}
		delete(total, n)
	}
	isFailed := map[string]bool{}
	for _, n := range failed {
		isFailed[n] = true
	}
	extra := 0
	for n, c := range total {
		if !isFailed[n] || c > 1 {
			if extra++; extra <= 5 {
				t.Errorf("row %s (x%d) is not an answered query", n, c)
			}
		}
	}
	if missing+dup+extra > 0 {
		t.Errorf("%d answered: %d missing, %d duplicated, %d unexplained rows", len(answered), missing, dup, extra)
	}
	return per
}
