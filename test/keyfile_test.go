package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestKeyFile runs anonymize hash on key files as an operator or a crash may leave them: one
// that others can read stops the start with an error naming it and the fix; an empty one is
// replaced by a new key (mode 0600), and queries are then logged as pseudonyms.
func TestKeyFile(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	key := filepath.Join(s.dir, "q.db.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	s.write(s.config("anonymize hash\n        flush_interval 100ms", "", "192.0.2.1"))
	out := s.failToStart()
	if want := "anonymize key " + key + " has mode 0644: group and others must have no access to it (chmod 600 " + key + ")"; !strings.Contains(out, want) {
		t.Errorf("output does not contain %q:\n%s", want, out)
	}

	if err := os.WriteFile(key, nil, 0o600); err != nil { // as a crash while creating it left it
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.waitMetric("the probes to be written", 10*time.Second, func(m testutil.Metrics) bool {
		return m.Get(s.db, "written_total") >= float64(len(s.probes))
	})
	s.stop()
	b, err := os.ReadFile(key)
	if err != nil || len(bytes.TrimSpace(b)) != 64 {
		t.Errorf("key file after start: %q, %v; want 32 bytes as hex", b, err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file after start: %v, %v; want mode 0600", fi.Mode(), err)
	}
	var clients []string
	rows, err := testutil.OpenRO(t, s.db).Query("SELECT DISTINCT client_ip FROM queries")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		rows.Scan(&c)
		clients = append(clients, c)
	}
	if len(clients) != 1 || !strings.HasPrefix(clients[0], "anon-") {
		t.Errorf("client_ip values %q, want one anon- pseudonym (127.0.0.1)", clients)
	}
	s.checkLog("[ERROR]")
}
