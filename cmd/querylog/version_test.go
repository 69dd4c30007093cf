package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestVersionText: the version names querylog's module version, the Go release and the commit
// of the build's VCS stamp, with (modified) for a tree with changes; without a stamp, it says so.
func TestVersionText(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261205080122-243cbba7310a+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "243cbba7310a6fe13913df1d58e276ed6e1afbf8"},
			{Key: "vcs.time", Value: "2026-12-05T08:01:22Z"}, {Key: "vcs.modified", Value: "true"}}}
	clean := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "false"}}}
	unstamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	for _, c := range []struct {
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{stamped, true, "querylog-0.0.0-20261205080122-243cbba7310a+dirty\n" + platform + ", go1.26.8, 243cbba7310a6fe13913df1d58e276ed6e1afbf8 (modified)\n"},
		{clean, true, "querylog-1.2.0\n" + platform + ", go1.26.8, 0123456789abcdef0123456789abcdef01234567\n"},
		{unstamped, true, "querylog-(devel)\n" + platform + ", go1.26.8, unknown commit\n"},
		{nil, false, "querylog-(devel)\n" + platform + ", " + runtime.Version() + ", unknown commit\n"},
	} {
		if got := versionText(c.bi, c.ok); got != c.want {
			t.Errorf("versionText(%+v) = %q, want %q", c.bi, got, c.want)
		}
	}
}

// TestVersionCommand: querylog --version, -version and version print this binary's version and
// exit 0.
func TestVersionCommand(t *testing.T) {
	want := versionText(debug.ReadBuildInfo())
	for _, arg := range []string{"--version", "-version", "version"} {
		out, errOut, code := querylogCmd(t, arg)
		if code != exitOK || out != want || errOut != "" {
			t.Errorf("querylog %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", arg, code, out, errOut, want)
		}
	}
}
