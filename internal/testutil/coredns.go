package testutil

import (
	"regexp"
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

// kubeMu lets one instance with the kubernetes plugin run at a time: the plugin's setup sets
// klog's global logger (klog.SetLogger), which the informers of another running instance read
// without a lock, a data race in CoreDNS's plugin that the race detector reports (CI saw it
// with two cluster tests in parallel). A real CoreDNS runs one instance.
var kubeMu sync.Mutex

// kubernetesDirective finds the kubernetes plugin's directive in a Corefile.
var kubernetesDirective = regexp.MustCompile(`(?m)^\s*kubernetes(\s|$)`)

// StartCoreDNS starts CoreDNS serving the Corefile text (CaddyStart) and returns a stop
// (StopCoreDNS) that runs at the end of the test if the test did not call it. An instance with
// the kubernetes plugin waits for any other to stop first (kubeMu).
func StartCoreDNS(t testing.TB, text string) (inst *caddy.Instance, stop func()) {
	t.Helper()
	kube := kubernetesDirective.MatchString(text)
	if kube {
		kubeMu.Lock()
	}
	inst, err := CaddyStart(text)
	if err != nil {
		if kube {
			kubeMu.Unlock()
		}
		t.Fatalf("starting CoreDNS: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			StopCoreDNS(t, inst)
			if kube {
				kubeMu.Unlock()
			}
		})
	}
	t.Cleanup(stop)
	return inst, stop
}
