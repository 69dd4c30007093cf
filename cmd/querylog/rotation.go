package main

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// fileID names a file whatever its path: its device and inode, as the plugin's store.replaced
// compares them.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), uint64(st.Ino)}
	}
	return fileID{}
}

// pathState is what the path of an open database names now.
type pathState int

const (
	pathSame     pathState = iota // the file open
	pathGone                      // nothing: renamed or deleted, no new file yet
	pathReplaced                  // another file: rotated, or replaced
)

// pathNow tells whether d's path still names the file d has open. A rotation renames the file
// (the server, within 10 s, notices and creates a new one at the path: plugin/querylog
// flush.go, checkFile); a replacement puts another file there.
func (d *database) pathNow() pathState {
	fi, err := os.Stat(d.abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return pathGone
	case err != nil: // unreadable for a moment: look again next time
		return pathSame
	case idOf(fi) != d.file:
		return pathReplaced
	}
	return pathSame
}
