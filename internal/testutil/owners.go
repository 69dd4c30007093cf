package testutil

import (
	"os"
	"testing"
)

// OtherUID owns the files planted by "another user"; it has no user name on this machine.
const OtherUID = 12345

// Plant writes a file as another user would leave it: owned by uid, with mode perm (the tests
// run as root, which may give files away).
func Plant(t testing.TB, path, content string, perm os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}
