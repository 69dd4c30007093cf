package querylog

// The tests' only reads of the writer registry's internals, kept in one place.

// liveWriter returns the live writer for path and its number of references.
func liveWriter(path string) (*writer, int) {
	registryMu.Lock()
	defer registryMu.Unlock()
	w := writers[path]
	if w == nil {
		return nil, 0
	}
	return w, len(w.holders)
}

// held reports whether w is still the live writer for its path and not draining to close.
func held(w *writer) bool {
	registryMu.Lock()
	defer registryMu.Unlock()
	return writers[w.path] == w && !w.closing
}
