package querylog

import "slices"

// WithDirective returns the directive list dirs with querylog inserted right after log, where
// it sees the final reply of every query: cache hits, acl blocks, rewrites undone and the error
// replies the server writes itself. A list that already has querylog is returned as it is.
func WithDirective(dirs []string) []string {
	if slices.Contains(dirs, "querylog") {
		return dirs
	}
	i := slices.Index(dirs, "log")
	if i < 0 {
		i = len(dirs) - 1
	}
	return slices.Insert(slices.Clone(dirs), i+1, "querylog")
}
