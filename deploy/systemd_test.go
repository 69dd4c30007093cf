package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const unitFile = "systemd/coredns.service"

// TestSystemdUnit checks the unit for hosts without Kubernetes: systemd-analyze verify finds
// nothing to say about it (a misspelt value is only a warning there, so any output fails), and
// it keeps the promises docs/kubernetes.md makes: its own user, the state folder, a read-only
// system, and a stop timeout that covers lameduck and two shutdown_timeouts.
func TestSystemdUnit(t *testing.T) {
	unit := readFile(t, unitFile)
	settings := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "User": "coredns", "StateDirectory": "querylog", "StateDirectoryMode": "0750",
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"ExecStart": "/usr/local/bin/coredns -conf /etc/coredns/Corefile",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s=%v, want %s", unitFile, k, got, want)
		}
	}
	stop, err := time.ParseDuration(strings.Join(settings["TimeoutStopSec"], ""))
	if err != nil || stop < 15*time.Second {
		t.Errorf("%s: TimeoutStopSec=%v (%v), want at least lameduck 5s + 2 x shutdown_timeout 5s", unitFile, settings["TimeoutStopSec"], err)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed: the unit is not verified")
	}
	if out := verifyUnit(t, unit); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", unitFile, out)
	}
	// The check can fail: a value systemd does not know is reported.
	if out := verifyUnit(t, strings.Replace(unit, "ProtectSystem=strict", "ProtectSystem=strictly", 1)); out == "" {
		t.Error("systemd-analyze verify says nothing about ProtectSystem=strictly")
	}
}

// verifyUnit runs systemd-analyze verify on a copy of unit whose ExecStart names an executable
// that exists (verify requires it), and returns what it printed.
func verifyUnit(t *testing.T, unit string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "coredns")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "coredns.service")
	if err := os.WriteFile(path, []byte(strings.Replace(unit, "ExecStart=/usr/local/bin/coredns", "ExecStart="+bin, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return strings.TrimSpace(string(out))
}
