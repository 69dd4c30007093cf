package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/querylog/querylog/internal/testutil"
)

// TestFilesOwnedByOthers plants, as another user could in a folder they can write, the
// database, its -wal or -shm, the anonymize key or a symlink. CoreDNS (run as root here) must
// refuse to start, naming the file and its owner, and leave the planted file as it was: no
// -wal or -shm created beside it, no key written into it.
func TestFilesOwnedByOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to other users")
	}
	const other = 12345 // no user name on this machine; 65534 is nobody
	hexKey := strings.Repeat("ab", 32) + "\n"
	for _, tc := range []struct {
		name  string
		opts  string
		plant func(t *testing.T, db string)
		want  string // %s is the database's path
	}{
		{"empty database", "", func(t *testing.T, db string) {
			testutil.Plant(t, db, "", 0o640, other)
		}, "database %s is owned by uid 12345 (no user name), not by root or the user CoreDNS runs as (user root (uid 0))"},
		{"-wal", "", func(t *testing.T, db string) {
			testutil.Plant(t, db+"-wal", "", 0o640, 65534)
		}, "database file %s-wal is owned by user nobody (uid 65534)"},
		{"-shm", "", func(t *testing.T, db string) {
			testutil.Plant(t, db+"-shm", "", 0o640, other)
		}, "database file %s-shm is owned by uid 12345"},
		{"database symlink of another user", "", func(t *testing.T, db string) {
			target := filepath.Join(filepath.Dir(db), "target.db")
			testutil.Plant(t, target, "", 0o640, 0)
			symlink(t, target, db, other)
		}, "database %s is owned by uid 12345"},
		{"key file", "anonymize hash", func(t *testing.T, db string) {
			testutil.Plant(t, db+".key", hexKey, 0o600, other)
		}, "anonymize key %s.key is owned by uid 12345 (no user name)"},
		{"empty key file", "anonymize hash", func(t *testing.T, db string) {
			testutil.Plant(t, db+".key", "", 0o600, other)
		}, "anonymize key %s.key is owned by uid 12345"},
		{"key file symlink", "anonymize hash", func(t *testing.T, db string) {
			target := filepath.Join(filepath.Dir(db), "good.key")
			testutil.Plant(t, target, hexKey, 0o600, 0)
			symlink(t, target, db+".key", 0)
		}, "anonymize key %s.key is a symlink, which is never followed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			tc.plant(t, s.db)
			before := listDir(t, s.dir)
			s.write(s.config(tc.opts, "", "192.0.2.1"))
			out := s.failToStart()
			if want := strings.ReplaceAll(tc.want, "%s", s.db); !strings.Contains(out, want) {
				t.Errorf("output does not contain %q:\n%s", want, out)
			}
			if after := listDir(t, s.dir); after != before {
				t.Errorf("the folder changed: before %s, after %s", before, after)
			}
		})
	}
}

// symlink makes link point to target, owned by uid.
func symlink(t *testing.T, target, link string, uid int) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// listDir describes a folder's files with their sizes, but not the Corefile.
func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.Name() == "Corefile" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s (%s, %d bytes) ", e.Name(), fi.Mode(), fi.Size())
	}
	return b.String()
}
