package querylog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"golang.org/x/sys/unix"
)

// resolvePath makes a path absolute, relative to the root directive's folder as the file
// plugin does. Any character but NUL may appear in it: dsn escapes what SQLite's URIs would
// take for syntax ('%', '?', '#'); a '#' needs quotes in the Corefile, where it starts a comment.
func resolvePath(c *caddy.Controller, what, path string) (string, error) {
	if strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("%s %q must not contain a NUL byte", what, path)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dnsserver.GetConfig(c).Root, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", what, path, err)
	}
	return abs, nil
}

// checkPath checks, at parse time, that the database can be used: it creates and removes a
// probe file in the database's folder to prove the folder writable, then checks that an
// existing file is writable and, unless a live writer already has it open, a querylog database
// (read-only). It leaves the database itself untouched. Errors name the file, not the probe.
func checkPath(abs string) error {
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("querylog PATH %q: folder %s does not exist", abs, dir)
	case err != nil:
		return fmt.Errorf("querylog PATH %q: folder %s: %w", abs, dir, pathErr(err))
	case !fi.IsDir():
		return fmt.Errorf("querylog PATH %q: %s is not a folder", abs, dir)
	}
	// Try it: access(2) says yes to root even where nothing can be created (e.g. /proc).
	probe, err := os.CreateTemp(dir, ".querylog-check-*")
	if errors.Is(err, fs.ErrNotExist) { // a folder that exists but takes no files, as /proc
		return fmt.Errorf("querylog PATH %q: folder %s does not accept new files", abs, dir)
	}
	if err != nil {
		return fmt.Errorf("querylog PATH %q: folder %s is not writable: %w", abs, dir, pathErr(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := unix.Access(abs, unix.W_OK); err != nil && err != unix.ENOENT {
		return fmt.Errorf("querylog PATH %q is not writable: %w", abs, err)
	}
	warnReadableByAll(abs)
	registryMu.Lock()
	live := lookup(abs) != nil
	registryMu.Unlock()
	if !live {
		if err := checkDatabase(abs); err != nil {
			return err
		}
	}
	return nil
}

// pathErr is the reason inside an *fs.PathError, without the file name it carries, which
// may be the probe's.
func pathErr(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// warnReadableByAll warns about a database, -wal or -shm file that every user may read. It is
// left as it is: the plugin creates the database with mode 0640 (SQLite gives -wal and -shm the
// database's mode), so another mode is the operator's doing, perhaps on purpose.
func warnReadableByAll(abs string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(abs + suffix)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o004 != 0 { // a folder is refused, not warned about
			log.Warningf("%s is readable by every user (mode %04o), and with it every client's queries; chmod 640 it unless that is intended (SQLite gives -wal and -shm the database's mode)", abs+suffix, fi.Mode().Perm())
		}
	}
}
