package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// stage is the image's build context (make image-context): the static coredns and querylog,
// built once for TestManifests and TestImage, which run the binaries the image ships.
var (
	stageOnce sync.Once
	stageDir  string
	stageErr  error
	stageRoot string // removed after the tests
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stageRoot != "" {
		os.RemoveAll(stageRoot)
	}
	os.Exit(code)
}

// staticBuild runs make image-context once per test binary and returns the context's folder,
// which holds coredns and querylog.
func staticBuild(t *testing.T) string {
	t.Helper()
	stageOnce.Do(func() {
		stageRoot, stageErr = os.MkdirTemp("", "querylog-image-")
		if stageErr != nil {
			return
		}
		stageDir = filepath.Join(stageRoot, "stage")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "make", "-s", "-C", "..", "image-context", "STAGE="+stageDir).CombinedOutput()
		if err != nil {
			stageErr = fmt.Errorf("make image-context: %v\n%s", err, out)
		}
	})
	if stageErr != nil {
		t.Fatal(stageErr)
	}
	return stageDir
}
