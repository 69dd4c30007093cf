package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestDatabaseMovedAway renames (log rotation), deletes or replaces the database file while
// CoreDNS writes to it under load. Within a maintenance interval (10s) querylog notices, logs
// it, hands the old file over complete (its last commits moved out of the WAL into it) and
// opens the path afresh, where it goes on writing. Rows written before the change are in the
// old file (if it still exists), rows after it in the new one; nothing is counted as lost.
func TestDatabaseMovedAway(t *testing.T) {
	testutil.NeedSQLite3(t)
	for _, tc := range []struct {
		name string
		move func(t *testing.T, db string) (old string)
	}{
		{"renamed", func(t *testing.T, db string) string {
			if err := os.Rename(db, db+".1"); err != nil {
				t.Fatal(err)
			}
			return db + ".1"
		}},
		{"deleted", func(t *testing.T, db string) string {
			if err := os.Remove(db); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"replaced", func(t *testing.T, db string) string {
			// An empty querylog database with a marker row, moved over the live one.
			other := filepath.Join(filepath.Dir(db), "other.db")
			testutil.SQLite3(t, db, "VACUUM INTO '"+other+"'")
			testutil.SQLite3(t, other, "DELETE FROM log; INSERT INTO log (id, name, client, late, a, b, c) VALUES (unixepoch() * 1000 << 8, 'marker.', '', 0, 1, 0, 0)")
			if err := os.Rename(other, db); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, "flush_interval 200ms", "")
			before := testutil.StartLoad(t, "udp", s.dns, "b", 2, 1<<30, time.Millisecond)
			before.WaitAnswers(t, 300)
			s.waitMetric("a first write", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "written_total") > 0 })

			s.out.Mark(tc.name)
			old := tc.move(t, s.db)
			s.waitLog("opening it afresh", 1, 15*time.Second)
			before.WaitAnswers(t, before.Count()+300)
			before.Stop()
			after := testutil.StartLoad(t, "udp", s.dns, "a", 2, 300, 0)
			after.Wait()
			m := s.waitMetric("the buffer to drain", 10*time.Second, func(m testutil.Metrics) bool { return m.Get(s.db, "buffer_size") == 0 })
			s.stop()

			if out := testutil.SQLite3(t, s.db, "PRAGMA integrity_check"); out != "ok" {
				t.Errorf("integrity_check of the new file: %s", out)
			}
			answered, failed := testutil.Results(before, after)
			switch {
			case old != "":
				// Every query answered is a row, in the old file or the new one.
				if out := testutil.SQLite3(t, old, "PRAGMA integrity_check"); out != "ok" {
					t.Errorf("integrity_check of the old file: %s", out)
				}
				testutil.CheckLogged(t, append(answered, s.probes...), failed, s.db, old)
			default:
				// Rows written before querylog noticed went with the old file; everything
				// answered after it reopened is in the new one, once.
				a, f := after.Results()
				b, bf := before.Results()
				testutil.CheckLogged(t, a, append(append(f, b...), append(bf, "marker.")...), s.db)
			}
			if tc.name == "replaced" && testutil.CountRows(t, s.db, "WHERE qname = 'marker.'") != 1 {
				t.Errorf("the replacement's own row is gone")
			}
			if d, w, rows := m.Get(s.db, "dropped_total"), m.Get(s.db, "written_total"), testutil.CountRows(t, s.db, "WHERE qname != 'marker.'"); d != 0 || w < float64(rows) {
				t.Errorf("dropped %v, written %v for %d rows in the new file; want nothing dropped", d, w, rows)
			}
			if !strings.Contains(s.out.String(), s.db) {
				t.Errorf("the log does not name %s", s.db)
			}
			s.checkLog("[ERROR]")
		})
	}
}
