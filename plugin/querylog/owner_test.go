package querylog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/querylog/querylog/internal/testutil"
)

// TestKeyFileOwnerAndSymlink: a key file another user owns is refused, even empty (it would
// otherwise be replaced, and the rule is simpler without exceptions), and so is a symlink to a
// good key file, or to nothing. The errors name the file and, for the owner, uid and name.
func TestKeyFileOwnerAndSymlink(t *testing.T) {
	dir := t.TempDir()
	hexKey := strings.Repeat("ab", 32) + "\n"
	good := filepath.Join(dir, "good.key")
	testutil.Plant(t, good, hexKey, 0o600, os.Geteuid())
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.key")
	if err := os.Symlink(filepath.Join(dir, "nothing"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, dangling} {
		_, err := loadKey(path)
		if err == nil || !strings.Contains(err.Error(), path+" is a symlink") {
			t.Errorf("loadKey(%s): %v, want it refused as a symlink", path, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nothing")); err == nil {
		t.Errorf("a key was created through the dangling symlink")
	}

	needRoot(t)
	for _, content := range []string{hexKey, ""} {
		foreign := filepath.Join(dir, "foreign.key")
		testutil.Plant(t, foreign, content, 0o600, testutil.OtherUID)
		_, err := loadKey(foreign)
		if err == nil || !strings.Contains(err.Error(), "anonymize key "+foreign+" is owned by uid 12345 (no user name)") {
			t.Errorf("key file of %d bytes owned by uid %d: %v, want it refused naming file and owner", len(content), testutil.OtherUID, err)
		}
	}
}

// TestDatabaseOwners: a database, -wal or -shm file another user owns is refused before
// SQLite touches anything, as is a symlink another user owns (even to a good database) or one
// to nothing; a symlink of this user's to a database of this user's is allowed.
func TestDatabaseOwners(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.db")
	createQuerylogDB(t, ours, 0)
	tests := []struct {
		name   string
		plant  func(db string)
		refuse string // in the error; "" for none
	}{
		{"empty database", func(db string) { testutil.Plant(t, db, "", 0o640, testutil.OtherUID) }, "database %s is owned by uid 12345"},
		{"-wal", func(db string) { testutil.Plant(t, db+"-wal", "", 0o640, testutil.OtherUID) }, "database file %s-wal is owned by uid 12345"},
		{"-shm", func(db string) { testutil.Plant(t, db+"-shm", "", 0o640, 65534) }, "database file %s-shm is owned by user nobody (uid 65534)"},
		{"our symlink to our database", func(db string) { os.Symlink(ours, db) }, ""},
		{"their symlink to our database", func(db string) {
			os.Symlink(ours, db)
			os.Lchown(db, testutil.OtherUID, testutil.OtherUID)
		}, "database %s is owned by uid 12345"},
		{"symlink to nothing", func(db string) { os.Symlink(filepath.Join(dir, "nothing.db"), db) }, "database %s is a symlink to nothing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "q.db")
			tc.plant(db)
			err := checkDatabase(db)
			if tc.refuse == "" {
				if err != nil {
					t.Errorf("checkDatabase: %v", err)
				}
				return
			}
			want := strings.ReplaceAll(tc.refuse, "%s", db)
			if err == nil || !strings.Contains(err.Error(), want) || !refused(err) {
				t.Errorf("checkDatabase: %v, want a refusal containing %q", err, want)
			}
			if _, err := openStore(db); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("openStore: %v, want %q", err, want)
			}
		})
	}
}
