package testutil

import (
	"sync"
	"testing"

	"github.com/coredns/caddy"
)

// Corefile is a Corefile given as a string, for caddy.Start and Instance.Restart.
type Corefile string

func (c Corefile) Body() []byte       { return []byte(c) }
func (c Corefile) Path() string       { return "Corefile" }
func (c Corefile) ServerType() string { return "dns" }

// caddyMu serializes starting and stopping instances: Caddy's list of instances, which
// querylog reads while an instance starts and stops (caddy.Instances), is not safe for two at
// once. A real CoreDNS starts and reloads one instance at a time.
var caddyMu sync.Mutex

// CaddyStart starts CoreDNS in this process, as CoreDNS's own test/server.go does, serving the
// Corefile text, and returns what caddy.Start does. The caller imports the plugins it uses (and
// so core/dnsserver), sets the directive order, and stops it (StopCoreDNS).
func CaddyStart(text string) (*caddy.Instance, error) {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	return caddy.Start(Corefile(text))
}

// StopCoreDNS shuts inst down the way SIGTERM does: the shutdown callbacks (which drain
// querylog's buffer), then the servers.
func StopCoreDNS(t testing.TB, inst *caddy.Instance) {
	t.Helper()
	caddyMu.Lock()
	defer caddyMu.Unlock()
	for _, err := range inst.ShutdownCallbacks() {
		t.Errorf("shutdown callback: %v", err)
	}
	inst.Stop()
}

// StartCoreDNS starts CoreDNS serving the Corefile text (CaddyStart) and returns a stop
// (StopCoreDNS) that runs at the end of the test if the test did not call it.
func StartCoreDNS(t testing.TB, text string) (inst *caddy.Instance, stop func()) {
	t.Helper()
	inst, err := CaddyStart(text)
	if err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { StopCoreDNS(t, inst) }) }
	t.Cleanup(stop)
	return inst, stop
}
