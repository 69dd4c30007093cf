package querylog

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

// generation is the querylog state of one CoreDNS instance (one load of the Corefile): its
// handlers, which acquire their writers when the instance starts and release them when it
// stops. During a reload two generations are live; the new one acquires before the old one
// releases, so writers are handed over with their buffers.
type generation struct {
	handlers   []*QueryLog
	restarting atomic.Bool
	started    bool // guarded by generationsMu
	stopped    bool // guarded by generationsMu
	tracked    bool // its instance was in caddy.Instances() when it started; guarded by generationsMu
}

type generationKey struct{}

// generationsMu guards the generations' state. It is never held while a writer is acquired or
// released: those take the writer registry's own lock (writer.go).
var (
	generationsMu sync.Mutex
	running       []*generation // generations whose handlers hold writers
)

func generationOf(c *caddy.Controller) *generation {
	if g, ok := c.Get(generationKey{}).(*generation); ok {
		return g
	}
	g := &generation{}
	c.Set(generationKey{}, g)
	c.OnStartup(g.start)
	c.OnRestart(func() error { g.restarting.Store(true); return nil })
	c.OnRestartFailed(func() error { g.restarting.Store(false); return nil })
	hookRestartFailed()
	// On reload the old instance's servers have stopped when OnShutdown runs, so it releases
	// there. On SIGTERM/SIGINT DNS is still served until after OnFinalShutdown (health's
	// lameduck runs in its own, earlier in the directive order), so the final drain waits for it.
	c.OnShutdown(func() error {
		if g.restarting.Load() {
			g.stop(false)
		}
		return nil
	})
	c.OnFinalShutdown(func() error { g.stop(true); return nil })
	return g
}

type reapHookKey struct{}

// hookRestartFailed adds, once per instance, a reapOrphans callback to the OnRestartFailed of
// every instance Caddy lists. It exists because of how a reload fails after the new instance's
// OnStartup has run (a port in use, say): Caddy drops the new instance without calling any of
// its callbacks and runs only the *running* instance's OnRestartFailed, and the running
// instance may have no querylog (the reload adds it), so no querylog callback would run and
// the new generation would keep its writers, and their databases, open for ever. The append is
// seen: setup of the new instance runs in the reloading goroutine, and Caddy reads the running
// instance's OnRestartFailed afterwards. TestLifecycleReloadFailsAfterStartupWithoutQuerylog
// covers it.
func hookRestartFailed() {
	for _, inst := range caddy.Instances() {
		inst.StorageMu.Lock()
		if inst.Storage[reapHookKey{}] == nil {
			inst.Storage[reapHookKey{}] = true
			inst.OnRestartFailed = append(inst.OnRestartFailed, func() error { reapOrphans(); return nil })
		}
		inst.StorageMu.Unlock()
	}
}

// add registers a handler. Two server blocks of one Corefile naming the same database must
// configure it identically, since they share one buffer and one writer.
func (g *generation) add(q *QueryLog) error {
	for _, other := range g.handlers {
		if sameFile(other.opts.path, q.opts.path) && !sameOptions(other.opts, q.opts) {
			return fmt.Errorf("server blocks logging to %s must use identical querylog options", q.opts.path)
		}
	}
	g.handlers = append(g.handlers, q)
	return nil
}

func (g *generation) start() error {
	// An earlier reload may have failed after its OnStartup, with no querylog in the running
	// instance to notice: release its writers before taking ours.
	reapOrphans()
	for i, q := range g.handlers {
		if err := q.start(); err != nil {
			for _, q := range g.handlers[:i] {
				q.writer.release(q.opts, false)
			}
			return plugin.Error("querylog", err)
		}
	}
	tracked := liveGenerations()[g]
	generationsMu.Lock()
	g.started, g.tracked = true, tracked
	running = append(running, g)
	generationsMu.Unlock()
	return nil
}

// stop releases the generation's writers, once, after those of any orphaned generation, so
// that a final shutdown drains writers the orphans still hold.
func (g *generation) stop(final bool) {
	reapOrphans()
	g.release(final)
}

func (g *generation) release(final bool) {
	generationsMu.Lock()
	if !g.started || g.stopped {
		generationsMu.Unlock()
		return
	}
	g.stopped = true
	for i, r := range running {
		if r == g {
			running = append(running[:i], running[i+1:]...)
			break
		}
	}
	generationsMu.Unlock()
	for _, q := range g.handlers {
		if q.writer != nil {
			q.writer.release(q.opts, final)
		}
	}
}

// reapOrphans releases generations whose instance failed to start after their OnStartup ran:
// Caddy drops such an instance from its list without calling any shutdown callback. Only
// generations whose instance was listed when they started are considered (in-process tests
// may start generations outside Caddy's list). A generation that is restarting is not an
// orphan: on a healthy reload Caddy unlists the old instance (Stop) before its OnShutdown,
// which releases it.
func reapOrphans() {
	live := liveGenerations()
	generationsMu.Lock()
	var orphans []*generation
	for _, g := range running {
		if g.tracked && !live[g] && !g.restarting.Load() {
			orphans = append(orphans, g)
		}
	}
	generationsMu.Unlock()
	for _, g := range orphans {
		log.Infof("Releasing the databases of an instance that failed to start")
		g.release(false)
	}
}

// liveGenerations returns the generations of the instances Caddy is running or starting.
func liveGenerations() map[*generation]bool {
	live := map[*generation]bool{}
	for _, inst := range caddy.Instances() {
		inst.StorageMu.RLock()
		if g, ok := inst.Storage[generationKey{}].(*generation); ok {
			live[g] = true
		}
		inst.StorageMu.RUnlock()
	}
	return live
}
