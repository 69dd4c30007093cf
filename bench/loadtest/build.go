package main

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// build builds ./cmd/coredns into out and says which sources it was built from.
func build(ctx context.Context, repo, out string) (*provenance, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	before := sourceHash(repo)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	var notes []string
	// -buildvcs=auto asks for the VCS stamp even where GOFLAGS turns it off, as on the
	// reference machine; if git cannot tell the state, build without it and use git below.
	for _, vcs := range []string{"-buildvcs=auto", "-buildvcs=false"} {
		cmd := exec.CommandContext(ctx, goBin, "build", vcs, "-o", out, "./cmd/coredns")
		cmd.Dir = repo
		b, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if vcs == "-buildvcs=false" || !strings.Contains(string(b), "error obtaining VCS status") {
			return nil, fmt.Errorf("go build ./cmd/coredns: %v\n%s", err, b)
		}
		notes = append(notes, "built with -buildvcs=false: "+strings.SplitN(string(b), "\n", 2)[0])
	}

	p := stampOf(out)
	if head := strings.TrimSpace(git(repo, "rev-parse", "HEAD")); head != "" && p.Commit != head {
		if p.Commit == "" {
			notes = append(notes, "the binary carries no VCS stamp (Go does not stamp builds in a linked git worktree, go.dev/issue/58218)")
		} else {
			notes = append(notes, fmt.Sprintf("the binary's VCS stamp %.12s is not this checkout's HEAD (a worktree inside another checkout gets that one's stamp)", p.Commit))
		}
		modified := git(repo, "status", "--porcelain") != ""
		p.Commit, p.CommitFrom, p.Modified = head, "git", &modified
		notes[len(notes)-1] += ": commit and modified state from git"
	}
	// The stamp says whether anything in the checkout differed from the commit; this says
	// which files of the build did.
	for l := range strings.Lines(git(repo, "status", "--porcelain", "--", "plugin", "cmd", "go.mod", "go.sum")) {
		if l = strings.TrimRight(l, "\n"); l != "" {
			p.Dirty = append(p.Dirty, l)
		}
	}
	p.SHA256 = sourceHash(repo)
	if before != p.SHA256 {
		notes = append(notes, "the sources changed while CoreDNS was being built: the binary may match neither state")
	}
	p.Note = strings.Join(notes, "; ")
	return p, nil
}

// prebuilt describes a binary given with -coredns: its VCS stamp, if it has one.
func prebuilt(bin string) *provenance {
	p := stampOf(bin)
	p.Note = "prebuilt binary given with -coredns: " + bin
	return p
}

// provenance identifies the sources a CoreDNS build came from, since the tree may carry
// uncommitted changes.
type provenance struct {
	Commit     string   `json:"commit,omitempty"`
	CommitFrom string   `json:"commit_from,omitempty"`  // "build info" (vcs.revision of the binary) or "git"
	Modified   *bool    `json:"vcs_modified,omitempty"` // anything in the checkout differed from the commit, untracked files included
	Dirty      []string `json:"uncommitted,omitempty"`  // git status --porcelain of plugin/, cmd/, go.mod, go.sum
	// SHA256 is of the non-test .go files under plugin/ and cmd/, go.mod and go.sum. The VCS
	// stamp cannot tell two builds with different uncommitted changes apart, is missing in
	// linked worktrees, and says nothing of edits made during the build; the hash does all three.
	SHA256 string `json:"sha256,omitempty"`
	Note   string `json:"note,omitempty"`
}

// stampOf reads the commit and modified state Go stamped into a binary (vcs.revision and
// vcs.modified, present when it was built inside a git checkout).
func stampOf(bin string) *provenance {
	p := &provenance{}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return p
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			p.Commit, p.CommitFrom = s.Value, "build info"
		case "vcs.modified":
			modified := s.Value == "true"
			p.Modified = &modified
		}
	}
	return p
}

// git runs git in repo and returns its output, or "" if it failed.
func git(repo string, args ...string) string {
	out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// sourceHash hashes the non-test .go files under plugin/ and cmd/, go.mod and go.sum.
func sourceHash(repo string) string {
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
	slices.Sort(files)
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
	return hex.EncodeToString(h.Sum(nil))
}
