package querylog

import (
	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
)

func init() { plugin.Register("querylog", setup) }

// setup parses one server block's directive and adds its handler to the instance's generation,
// which acquires the writers in OnStartup (lifecycle.go).
func setup(c *caddy.Controller) error {
	o, f, err := parse(c)
	if err != nil {
		return plugin.Error("querylog", err)
	}
	q := &QueryLog{opts: o, filter: f}
	if err := generationOf(c).add(q); err != nil {
		return plugin.Error("querylog", err)
	}
	// After the generation's start (registered first), which opened q's writer; the chain is
	// built by then, and no query is served yet.
	cfg := dnsserver.GetConfig(c)
	c.OnStartup(func() error {
		declareSeries(q.writer.path, listeners(c))
		q.cacheNames = installCacheProbe(cfg)
		q.noMetadata = cfg.Handler("metadata") == nil
		return nil
	})
	cfg.AddPlugin(func(next plugin.Handler) plugin.Handler {
		q.Next = next
		return q
	})
	return nil
}
