package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

func build(ctx context.Context, repo, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/coredns")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/coredns: %v\n%s", err, b)
	}
	return nil
}

// provenance identifies the sources a CoreDNS build came from, since the tree may carry
// uncommitted changes.
type provenance struct {
	Commit string   `json:"commit,omitempty"`
	Dirty  []string `json:"uncommitted,omitempty"` // git status --porcelain of plugin/, cmd/, go.mod, go.sum
	SHA256 string   `json:"sha256,omitempty"`      // of the non-test .go files under plugin/ and cmd/, go.mod and go.sum
	Note   string   `json:"note,omitempty"`
}

func sourceOf(repo string) *provenance {
	p := &provenance{}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output(); err == nil {
		p.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--", "plugin", "cmd", "go.mod", "go.sum").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if l != "" {
				p.Dirty = append(p.Dirty, l)
			}
		}
	}
	var files []string
	for _, dir := range []string{"plugin", "cmd"} {
		filepath.WalkDir(filepath.Join(repo, dir), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				files = append(files, path)
			}
			return nil
		})
	}
	files = append(files, filepath.Join(repo, "go.mod"), filepath.Join(repo, "go.sum"))
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(repo, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	p.SHA256 = hex.EncodeToString(h.Sum(nil))
	return p
}
