package querylog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/querylog/querylog/internal/testutil"
)

// A PATH that is a folder is refused with an error that says so, and without first advising
// to chmod 640 it, as for a database every user may read.
func TestPathIsAFolder(t *testing.T) {
	logs := testutil.CaptureLog(t)
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := checkPath(dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("checkPath(folder) = %v, want an error naming it", err)
	}
	if strings.Contains(logs.String(), "chmod 640") {
		t.Errorf("a folder as PATH drew the chmod 640 warning:\n%s", logs)
	}
	t.Logf("error: %v", err)
}
