package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionText is what querylog --version prints, in the shape of CoreDNS's -version
// ("CoreDNS-1.15.0", then "linux/amd64, go1.24.2, COMMIT"): querylog's module version, then the
// Go release and the commit it was built from, marked "(modified)" when the tree had changes.
// go build stamps the commit when it runs in the git checkout with -buildvcs=auto (make build
// asks for it); without the stamp (-buildvcs=false, a tarball) the commit is "unknown commit".
func versionText(bi *debug.BuildInfo, ok bool) string {
	version, goVersion, commit := "(devel)", runtime.Version(), "unknown commit"
	if ok {
		if v := bi.Main.Version; v != "" {
			version = strings.TrimPrefix(v, "v")
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		var revision, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
		if revision != "" {
			commit = revision + modified
		}
	}
	return fmt.Sprintf("querylog-%s\n%s/%s, %s, %s\n", version, runtime.GOOS, runtime.GOARCH, goVersion, commit)
}
