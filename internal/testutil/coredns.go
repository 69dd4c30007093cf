package testutil

import (
	"sync"
	"testing"

	"github.com/coredns/caddy"
)

// corefile is a Corefile given as a string, for caddy.Start.
type corefile string

func (c corefile) Body() []byte       { return []byte(c) }
func (c corefile) Path() string       { return "Corefile" }
func (c corefile) ServerType() string { return "dns" }

// StartCoreDNS starts CoreDNS in this process, as CoreDNS's own test/server.go does, serving
// the Corefile text. The caller imports the plugins it uses (and so core/dnsserver) and sets
// the directive order. The returned stop shuts it down the way SIGTERM does (shutdown callbacks,
// which drain querylog's buffer, then the servers); it runs at the end of the test if the test
// did not call it.
func StartCoreDNS(t testing.TB, text string) (inst *caddy.Instance, stop func()) {
	t.Helper()
	inst, err := caddy.Start(corefile(text))
	if err != nil {
		t.Fatalf("starting CoreDNS: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for _, err := range inst.ShutdownCallbacks() {
				t.Errorf("shutdown callback: %v", err)
			}
			inst.Stop()
		})
	}
	t.Cleanup(stop)
	return inst, stop
}
