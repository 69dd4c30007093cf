package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestNewFirsts: over a file of schema 6, new reads a window of the last hour from the writer's
// list of first sightings, and answers as reading the rows does. The file's history is written
// by the plugin and moved back in time between runs of the server (rows, lists and rollups, so
// that the writer of the next run judges against it): a day ago, names numbered, asked once
// (counted by the rollups of their minute, or not), under a domain; 65 minutes ago, names the
// writer of the window still lists (the names table, or the rollups of that hour, say they
// are old); then the window, in two runs (two dictionary epochs: a name numbered in the
// first has a text row in the second).
// (Not parallel: it turns useFirsts off to compare.)
func TestNewFirsts(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")
	a := asks
	s := startServerWith(t, db, "retention 30d")
	s.send(t, slices.Concat(a("numbered.example.org.", 2), a("counted.example.org.", 1), a("folded.example.org.", 1), a("www.old-domain.example.com.", 1)))
	s.stop()
	// A day back, rollups too (a day keeps their periods whole); folded.example.org.'s minute
	// folded it under (other).
	moveBack(t, db, 24*time.Hour, math.MaxInt64)
	testutil.Exec(t, db, `UPDATE rollup_names SET start = start - 86400; UPDATE rollup_outcomes SET start = start - 86400;
		UPDATE rollup_clients SET start = start - 86400; DELETE FROM rollup_names WHERE name = 'folded.example.org.'`)
	// 65 minutes ago, within the horizon of the window's rows: recent.example.org. numbered (and
	// folded by its rollups: only the names table knows it), minute.example.org. asked once,
	// which its minute's rollup counted (its hour and day are dropped: they would not be whole).
	recent := time.Now().Add(-2 * time.Hour).Unix() // its rollups' periods begin after this
	s = startServerWith(t, db, "retention 30d")
	s.send(t, slices.Concat(a("recent.example.org.", 2), a("minute.example.org.", 1)))
	s.stop()
	moveBack(t, db, 65*time.Minute, math.MaxInt64)
	testutil.Exec(t, db, fmt.Sprintf(`DELETE FROM rollup_names WHERE start >= %[1]d AND (span > 60 OR name = 'recent.example.org.');
		DELETE FROM rollup_outcomes WHERE start >= %[1]d AND span > 60; DELETE FROM rollup_clients WHERE start >= %[1]d AND span > 60;
		UPDATE rollup_names SET start = start - 3900 WHERE start >= %[1]d; UPDATE rollup_outcomes SET start = start - 3900 WHERE start >= %[1]d;
		UPDATE rollup_clients SET start = start - 3900 WHERE start >= %[1]d`, recent))
	for _, names := range [][]query{
		slices.Concat(a("numbered.example.org.", 1), a("counted.example.org.", 1), a("recent.example.org.", 1), a("minute.example.org.", 1), a("fresh.example.net.", 3), a("mail.old-domain.example.com.", 2), a("split.example.net.", 2)),
		slices.Concat(a("split.example.net.", 2), a("folded.example.org.", 1), a("late.example.net.", 1)),
	} {
		s = startServerWith(t, db, "retention 30d")
		s.send(t, names)
		s.stop()
	}
	if n := strs(t, db, `SELECT count(*) FROM name_firsts_gaps`)[0][0]; n != "0" {
		t.Fatalf("%s minutes of gaps in the list of first sightings", n)
	}
	fromList := runNewJSON(t, "--db", db, "--since", "1h")
	useFirsts = false
	fromRows := runNewJSON(t, "--db", db, "--since", "1h")
	useFirsts = true
	want := "split.example.net.:4 fresh.example.net.:3 mail.old-domain.example.com.:2 folded.example.org.:1 late.example.net.:1 | example.net.:8/3"
	for _, c := range []struct {
		what   string
		got    newJSON
		source string
	}{
		{"from the list", fromList, "those the writer listed as first sightings"},
		{"from the rows", fromRows, "by the file's list of those rows"},
	} {
		if c.got.summary() != want || c.got.NewNames != 5 || c.got.NewDomains != 1 || !strings.Contains(c.got.Sources[0], c.source) {
			t.Errorf("new %s:\n got %s (%d names, %d domains)\nwant %s\nsources %q", c.what, c.got.summary(), c.got.NewNames, c.got.NewDomains, want, c.got.Sources)
		}
	}
	if fromList.WindowQueries != fromRows.WindowQueries {
		t.Errorf("window queries %d from the list, %d from the rows", fromList.WindowQueries, fromRows.WindowQueries)
	}
	// A crash: the dictionary counted no row of the window. The list's names are counted from
	// the rows after the counts (read beside the list, on a second connection), the same.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	testutil.Exec(t, db, fmt.Sprintf(`VACUUM INTO '%s'`, crashed))
	testutil.Exec(t, crashed, fmt.Sprintf(`UPDATE dict_epochs SET names_counted = (SELECT max(id) FROM log WHERE (id >> 8) < %d) WHERE names_counted IS NOT NULL;
		UPDATE names SET n = (SELECT count(*) FROM log WHERE log.name = names.id AND log.id <= (SELECT max(names_counted) FROM dict_epochs))`,
		time.Now().Add(-time.Hour).UnixMilli()))
	after := strs(t, crashed, `SELECT count(*) FROM log WHERE id > (SELECT max(names_counted) FROM dict_epochs) AND typeof(name) = 'integer'`)[0][0]
	got := runNewJSON(t, "--db", crashed, "--since", "1h")
	if src := got.Sources[0]; after == "0" || got.summary() != want || !strings.Contains(src, "those the writer listed as first sightings") || !strings.Contains(src, "and "+after+" rows after its counts read") {
		t.Errorf("new from the list, no row of the window counted (%s numbered rows):\n got %s\nwant %s\nsources %q", after, got.summary(), want, got.Sources)
	}
}
