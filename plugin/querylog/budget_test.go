package querylog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/coredns/coredns/plugin/file"

	"github.com/querylog/querylog/internal/testutil"
)

// bigReplyBlock answers A queries for any name under example.org with n A records (over TCP,
// as UDP would truncate them), from a zone file with a wildcard, written into dir.
func bigReplyBlock(t *testing.T, dir, db, opts string, n int) string {
	t.Helper()
	zone := filepath.Join(dir, "example.org.zone")
	var z strings.Builder
	z.WriteString("$ORIGIN example.org.\n@ 60 IN SOA ns.example.org. admin.example.org. 1 3600 600 86400 60\n@ 60 IN NS ns.example.org.\nns 60 IN A 192.0.2.53\n")
	for i := range n {
		fmt.Fprintf(&z, "* 60 IN A 198.51.%d.%d\n", i/250, i%250+1)
	}
	if err := os.WriteFile(zone, []byte(z.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`.:0 {
    bind 127.0.0.1
    querylog %s {
%s
    }
    file %s example.org
}
`, db, opts, zone)
}

// TestBufferBytesEndToEnd: with the database's write lock held, replies of 300 A records with
// answers at their largest cap fill buffer_bytes long before buffer_size; the rest are dropped
// as buffer_bytes, the buffer never holds more than its budget, and once the lock is released
// every answered query is a row or a counted drop. The rows written keep at most MAXBYTES of
// answer data, cut at a record boundary with the marker, and the cuts are counted.
func TestBufferBytesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	const budget = 1_000_000
	// The cuts are counted per server, of every server this process ran: count from here.
	cutBefore := testutil.Gather(t).Get("", "truncated_total", "field", "answer_data")
	inst := startCoreDNS(t, bigReplyBlock(t, dir, db, "        buffer_bytes 1MB\n        answers 2000\n        adaptive off\n        flush_interval 100ms", 300))
	defer testutil.StopCoreDNS(t, inst)
	addr := tcpAddr(inst, 0)

	warm := testutil.StartLoad(t, "tcp", addr, "w", 1, 2, 0)
	warm.Wait()
	testutil.WaitFor(t, 10*time.Second, "the warm-up rows", func() bool { return testutil.Gather(t).Get(db, "written_total") == 2 })

	unlock := testutil.Lock(t, db)
	flood := testutil.StartLoad(t, "tcp", addr, "f", 4, 300, 0)
	watching := testutil.Watch(20*time.Millisecond, func() {
		if m := testutil.Gather(t); m.Get(db, "buffer_bytes") > budget {
			t.Errorf("buffer holds %v bytes, budget %d", m.Get(db, "buffer_bytes"), budget)
		}
	})
	flood.Wait()
	watching()
	m := testutil.Gather(t)
	held, bytes := m.Get(db, "buffer_size"), m.Get(db, "buffer_bytes")
	if d := m.Get(db, "dropped_total", "reason", "buffer_bytes"); d == 0 || m.Get(db, "dropped_total", "reason", "buffer_full") != 0 {
		t.Errorf("dropped %v as buffer_bytes, %v as buffer_full; want buffer_bytes drops only", d, m.Get(db, "dropped_total", "reason", "buffer_full"))
	}
	if m.Get(db, "buffer_bytes_capacity") != budget || bytes > budget || held == 0 || held >= 1200 {
		t.Errorf("%v entries, %v bytes held of %v", held, bytes, m.Get(db, "buffer_bytes_capacity"))
	}
	unlock()

	testutil.WaitFor(t, 20*time.Second, "the buffer to drain", func() bool {
		m := testutil.Gather(t)
		return m.Get(db, "buffer_size") == 0 && m.Get(db, "buffer_bytes") == 0
	})
	m = testutil.Gather(t)
	answered, failed := testutil.Results(warm, flood)
	enq, written, dropped := m.Get(db, "enqueued_total"), m.Get(db, "written_total"), m.Get(db, "dropped_total")
	if enq != written+dropped || float64(len(answered)) > enq || enq > float64(len(answered)+len(failed)) {
		t.Errorf("%d answered (%d failed): enqueued %v, written %v, dropped %v", len(answered), len(failed), enq, written, dropped)
	}
	// Every reply was cut, those dropped too: the cut happens before the entry is queued.
	if c := m.Get("", "truncated_total", "field", "answer_data") - cutBefore; c != enq {
		t.Errorf("truncated_total{answer_data} = %v, want one cut for each of the %v entries\n%s", c, enq, m)
	}

	rows := 0
	r, err := testutil.OpenRO(t, db).Query("SELECT answer_data FROM queries")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for r.Next() {
		var data string
		if err := r.Scan(&data); err != nil {
			t.Fatal(err)
		}
		rows++
		tokens := strings.Fields(data)
		kept := len(tokens) - 1
		if len(data) > 2000 || tokens[kept] != fmt.Sprintf("+%d", 300-kept) || tokens[kept-1] != fmt.Sprintf("198.51.%d.%d", (kept-1)/250, (kept-1)%250+1) {
			t.Fatalf("answer_data of %d bytes ends %q", len(data), tokens[max(0, kept-1):])
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if float64(rows) != written {
		t.Errorf("%d rows, written_total %v", rows, written)
	}
}
