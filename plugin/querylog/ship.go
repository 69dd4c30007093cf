package querylog

import "github.com/querylog/querylog/plugin/querylog/ship"

// The writer's side of shipping (package ship): one shipper per writer, started, replaced and
// stopped as its options change, woken by the flusher, and asked by retention what may be
// deleted.

// What becomes of the rows not shipped when a shipper stops, for its log line.
const (
	leftAtExit  = "they are sent from the file at the next start"
	leftRotated = "they stay in the old file, which is no longer read"
)

// shipTuning is every shipper's pace; zero fields take package ship's defaults (a variable so
// tests can shorten it).
var shipTuning ship.Tuning

// setShip starts, replaces or stops the writer's shipper to match o. The old shipper stops
// before a new one starts, so two never send the same rows, and stays visible to retention
// until then.
func (w *writer) setShip(o ship.Options) {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	old := w.ship.Load()
	if old != nil && old.Options() == o {
		return
	}
	if old == nil && !o.Enabled() {
		return
	}
	if old != nil {
		old.Stop()
	}
	var s *ship.Shipper
	if o.Enabled() {
		s = ship.Start(w.path, shipSource{w}, o, shipTuning)
	}
	w.ship.Store(s)
}

// finishShip lets the shipper send what is left, bounded by shutdown_timeout, and stops it. The
// writer's last holder calls it once the flusher has drained the buffer, and the flusher before
// it leaves a renamed file (leftRotated). It reports whether there was a shipper.
func (w *writer) finishShip(leftover string) bool {
	w.shipMu.Lock()
	defer w.shipMu.Unlock()
	s := w.ship.Load()
	if s != nil {
		s.Finish(w.options().shutdownTimeout, leftover)
		w.ship.Store(nil)
	}
	return s != nil
}

// shipWake tells the shipper, if any, that n rows were committed. It never blocks.
func (w *writer) shipWake(n int) {
	if s := w.ship.Load(); s != nil {
		s.Wake(n)
	}
}

// shipBound reports whether rows are being shipped and, if so, the highest rowid that may be
// deleted without losing a row ClickHouse does not have.
func (w *writer) shipBound() (shipped int64, shipping bool) {
	if s := w.ship.Load(); s != nil {
		return s.Bound(), true
	}
	return 0, false
}

// pruneOldestShipping deletes a chunk of the oldest rows for max_size, and while shipping counts
// and logs those not shipped yet: max_size leaves no choice.
func (f *flusher) pruneOldestShipping(s *store, chunk int) (int64, error) {
	sh := f.w.ship.Load()
	if sh == nil {
		return s.pruneOldest(chunk)
	}
	deleted, unshipped, err := s.pruneOldestShipping(chunk, sh.Bound())
	if err != nil || unshipped == 0 {
		return deleted, err
	}
	sh.Dropped("max_size", unshipped)
	return deleted, nil
}

// runningShippers returns the shipper of every live writer, for the lag gauges.
func runningShippers() []*ship.Shipper {
	registryMu.Lock()
	defer registryMu.Unlock()
	var out []*ship.Shipper
	for _, w := range writers {
		if s := w.ship.Load(); s != nil && !w.retired {
			out = append(out, s)
		}
	}
	return out
}
