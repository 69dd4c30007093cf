package querylog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// Like ssh's StrictModes, querylog uses no file that another user owns. In a folder that
// user can write, they could otherwise pre-create the database (SQLite, run as root, gives
// -wal and -shm the database's owner, so they would read every row), its -wal or -shm, or the
// hash key (with a known key the pseudonyms can be reversed), or plant a symlink to a place of
// their choosing.

// checkOwner refuses the file fi describes unless root or the user CoreDNS runs as owns it.
// what and path name it in the error. A refusal, as it does not go away by itself.
func checkOwner(what, path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	euid := uint32(os.Geteuid())
	if st.Uid == 0 || st.Uid == euid {
		return nil
	}
	return refusal{fmt.Sprintf("%s %s is owned by %s, not by root or the user CoreDNS runs as (%s): that user can read or replace it; remove it or chown it, in a folder only root or the CoreDNS user can write",
		what, path, userName(st.Uid), userName(euid))}
}

// userName names uid as "user NAME (uid N)", or "uid N (no user name)" if it has none.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("user %s (uid %s)", u.Username, id)
	}
	return fmt.Sprintf("uid %s (no user name)", id)
}

// checkDatabaseOwners refuses a database, -wal or -shm file that another user owns, and a
// database path that is a symlink owned by another user or to nothing. A symlink of the
// CoreDNS user's (or root's) to its database is allowed; the file it names, and the -wal and
// -shm beside that file (where SQLite puts them), are checked. Absent files pass.
func checkDatabaseOwners(path string) error {
	real := path
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// SQLite will create it, through any symlinks in the folder's path.
		if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
			real = filepath.Join(dir, filepath.Base(path))
		}
	case err != nil:
		return fmt.Errorf("database %s: %w", path, pathErr(err))
	default:
		if err := checkOwner("database", path, fi); err != nil {
			return err
		}
		if real, err = filepath.EvalSymlinks(path); errors.Is(err, fs.ErrNotExist) {
			return refusal{fmt.Sprintf("database %s is a symlink to nothing (%v); create the file it names first, or name the file itself", path, pathErr(err))}
		} else if err != nil {
			return fmt.Errorf("database %s: %w", path, err)
		}
	}
	for _, f := range []string{real, real + "-wal", real + "-shm"} {
		fi, err := os.Lstat(f)
		if errors.Is(err, fs.ErrNotExist) || f == path && err == nil {
			continue // absent, or checked above
		}
		if err != nil {
			return fmt.Errorf("database %s: %w", f, pathErr(err))
		}
		if err := checkOwner("database file", f, fi); err != nil {
			return err
		}
	}
	return nil
}
