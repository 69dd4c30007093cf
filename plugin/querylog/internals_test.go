package querylog

import "github.com/coredns/caddy"

// The tests' reads of the writer registry and the reload generations, kept in one place.

// liveWriter returns the live writer for path and its number of references; not one that is
// closing, which stays registered until its database is closed.
func liveWriter(path string) (*writer, int) {
	registryMu.Lock()
	defer registryMu.Unlock()
	w := writers[path]
	if w == nil || w.closing {
		return nil, 0
	}
	return w, len(w.holders)
}

// handlersOf is the number of querylog handlers in the generation (Corefile load) of c.
func handlersOf(c *caddy.Controller) int { return len(generationOf(c).handlers) }

// held reports whether w is still the live writer for its path and not draining to close.
func held(w *writer) bool {
	registryMu.Lock()
	defer registryMu.Unlock()
	return writers[w.path] == w && !w.closing
}

// retiredCount is the number of closed writers (or, per database, their counts) the registry
// keeps for metrics.
func retiredCount() int {
	registryMu.Lock()
	defer registryMu.Unlock()
	return len(retired)
}
