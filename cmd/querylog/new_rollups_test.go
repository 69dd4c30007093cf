package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestNewRollups: over a window longer than an hour, new counts the window's names from the
// rollups where they cover it and from the rows where they do not: week.example.com., counted
// by a day of the window, and hour.example.com., by an hour, are new with their first period's
// start as first seen; old.example.org., counted by a day before the window, is not. --exact
// reads the window's rows instead (the rollups' names of the window are not among them). Over
// an hour of rows alone, both ways give the same answer. new --namespace reads an hour busier
// than 300,000 queries from the rollups too.
func TestNewRollups(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "q.db")
	s := startServerWith(t, db, "")
	s.send(t, slices.Concat(asks("fresh.example.org.", 2), asks("old.example.org.", 1), asks("a.fresh.example.net.", 3)))
	s.stop()
	today := time.Now().Unix() / 86400 * 86400
	ago10, ago2, hour := today-10*86400, today-2*86400, today-86400+3600
	testutil.Exec(t, db, fmt.Sprintf(`INSERT INTO rollup_names (span, start, name, rcode, n) VALUES
			(86400, %[1]d, 'old.example.org.', 0, 4), (86400, %[1]d, '(other)', 0, 9),
			(86400, %[2]d, 'week.example.com.', 0, 5), (86400, %[2]d, 'old.example.org.', 0, 2), (86400, %[2]d, '(other)', 0, 7),
			(3600, %[3]d, 'hour.example.com.', 0, 3);
		INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us) VALUES
			(86400, %[1]d, 0, 1, 'udp', '', 13, 1300), (86400, %[2]d, 0, 1, 'udp', '', 14, 1400), (3600, %[3]d, 0, 1, 'udp', '', 3, 300);
		INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered) VALUES
			(86400, %[1]d, 'team-a', 'old.example.org.', 0, 1, 1, 0, 1), (86400, %[2]d, 'team-a', 'week.example.com.', 0, 2, 2, 0, 2)`, ago10, ago2, hour))

	got := runNewJSON(t, "--db", db, "--since", "72h")
	src := strings.Join(got.Sources, "\n")
	if want := "week.example.com.:5 hour.example.com.:3 a.fresh.example.net.:3 fresh.example.org.:2 | example.com.:8/2 example.net.:3/1"; got.summary() != want {
		t.Errorf("new --since 72h:\n got %s\nwant %s\nsources %q", got.summary(), want, got.Sources)
	}
	if total := runTopJSON(t, "rcodes", "--db", db, "--since", "72h").Total; got.WindowQueries != total || total != 23 {
		t.Errorf("new --since 72h: %d queries; want top's %d, 23 (the day's 14, the hour's 3, the rows' 6)", got.WindowQueries, total)
	}
	firsts := map[string]string{}
	for _, n := range got.Names {
		firsts[n.Name] = n.FirstSeen
	}
	if firsts["week.example.com."] != msText(ago2*1000) || firsts["hour.example.com."] != msText(hour*1000) {
		t.Errorf("new --since 72h: first seen %v; want week.example.com. %s, hour.example.com. %s", firsts, msText(ago2*1000), msText(hour*1000))
	}
	if !strings.Contains(src, "counted as top counts them") || !strings.Contains(src, "from rollups: 1 day, 1 hour") || !strings.Contains(src, "(other): of the window's periods, 7 queries are of names past") ||
		!strings.Contains(src, "first seen: a name's first row, or the start of the first period that counted it") ||
		got.WindowFolded == nil || *got.WindowFolded != 7 {
		t.Errorf("new --since 72h: sources %q", got.Sources)
	}
	// --exact reads the window's rows: only their names, old.example.org. old by the day before.
	if got := runNewJSON(t, "--db", db, "--since", "72h", "--exact"); got.summary() != "a.fresh.example.net.:3 fresh.example.org.:2 | example.net.:3/1" || got.WindowFolded != nil {
		t.Errorf("new --since 72h --exact: %s, sources %q", got.summary(), got.Sources)
	}
	// Over the namespace's rollups (its rows have none: the columns are added as the writer adds
	// them with the first row that has a pod): whole hours.
	testutil.Exec(t, db, `ALTER TABLE log ADD COLUMN pod; ALTER TABLE log ADD COLUMN cache`)
	got = runNewJSON(t, "--db", db, "--since", "72h", "--namespace", "team-a")
	if got.summary() != "week.example.com.:2 | example.com.:2/1" || got.KnownToNamespace == nil || *got.KnownToNamespace != 0 ||
		!strings.Contains(got.Sources[0], ":00:00Z to now") {
		t.Errorf("new --since 72h --namespace team-a: %s, sources %q", got.summary(), got.Sources)
	}
	// An hour and a minute: the rows are all of the window; the rollups say the same.
	rollups, rows := runNewJSON(t, "--db", db, "--since", "61m"), runNewJSON(t, "--db", db, "--since", "61m", "--exact")
	if rollups.summary() != rows.summary() || rollups.WindowQueries != rows.WindowQueries || rollups.summary() != "a.fresh.example.net.:3 fresh.example.org.:2 | example.net.:3/1" ||
		!strings.Contains(rollups.Sources[0], "counted as top counts them") {
		t.Errorf("new --since 61m: from the rollups %s (%d queries), from the rows %s (%d); sources %q", rollups.summary(), rollups.WindowQueries,
			rows.summary(), rows.WindowQueries, rollups.Sources)
	}
	// An hour busier than new --namespace reads the rows of (a minute of this hour that counted
	// 400,000 queries): from the namespace's rollups too.
	thisHour := time.Now().Unix() / 3600 * 3600
	testutil.Exec(t, db, fmt.Sprintf(`INSERT INTO rollup_outcomes (span, start, rcode, qtype, proto, plugin, n, duration_us) VALUES
			(60, %[1]d, 3, 16, 'tcp', 'busy', 400000, 1);
		INSERT INTO rollup_namespace_names (span, start, namespace, name, rcode, n, a, aaaa, answered) VALUES
			(60, %[1]d, 'team-a', 'busy.example.com.', 0, 4, 4, 0, 4)`, thisHour))
	got = runNewJSON(t, "--db", db, "--since", "1h", "--namespace", "team-a")
	if got.summary() != "busy.example.com.:4 | " || !strings.Contains(got.Sources[0], "more than the 300,000 whose rows new --namespace reads") {
		t.Errorf("new --since 1h --namespace team-a, a busy hour: %s, sources %q", got.summary(), got.Sources)
	}
	if got := runNewJSON(t, "--db", db, "--since", "1h", "--namespace", "team-a", "--exact"); got.summary() != " | " {
		t.Errorf("new --since 1h --namespace team-a --exact (its rows: none): %s", got.summary())
	}
}
