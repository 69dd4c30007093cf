package querylog

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"golang.org/x/sys/unix"
)

// resolvePath makes a path absolute, relative to the root directive's folder as the file
// plugin does.
func resolvePath(c *caddy.Controller, what, path string) (string, error) {
	if strings.ContainsAny(path, "?#") {
		return "", c.Errf("%s %q must not contain '?' or '#'", what, path)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dnsserver.GetConfig(c).Root, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", c.Errf("%s %q: %v", what, path, err)
	}
	return abs, nil
}

// checkPath checks, at parse time, that the database can be used: it creates and removes a
// probe file in the database's folder to prove the folder writable, then checks that an
// existing file is writable and, unless a live writer already has it open, a querylog database
// (read-only). It leaves the database itself untouched.
func checkPath(c *caddy.Controller, abs string) error {
	dir := filepath.Dir(abs)
	// Try it: access(2) says yes to root even where nothing can be created (e.g. /proc).
	probe, err := os.CreateTemp(dir, ".querylog-check-*")
	if err != nil {
		return c.Errf("querylog PATH %q: folder %s is not writable: %v", abs, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := unix.Access(abs, unix.W_OK); err != nil && err != unix.ENOENT {
		return c.Errf("querylog PATH %q is not writable: %v", abs, err)
	}
	registryMu.Lock()
	live := lookup(abs) != nil
	registryMu.Unlock()
	if !live {
		if err := checkDatabase(abs); err != nil {
			return c.Err(err.Error())
		}
	}
	return nil
}
