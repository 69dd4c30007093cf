package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/querylog/querylog/internal/childproc"
)

// The dnstap variant sends every query and response, with its wire message, to a real
// receiver: golang-dnstap's dnstap command on a unix socket, writing a Frame Streams file,
// as a dnstap deployment would run it. Its CPU is reported apart from CoreDNS's.

// buildDNSTapReceiver builds golang-dnstap's command (a dependency of CoreDNS's dnstap plugin,
// so the module already has it) into out.
func buildDNSTapReceiver(ctx context.Context, repo, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/dnstap/golang-dnstap/dnstap")
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build github.com/dnstap/golang-dnstap/dnstap: %v\n%s", err, b)
	}
	return nil
}

// dnstapReceiver is a running dnstap command.
type dnstapReceiver struct {
	cmd    *exec.Cmd
	exited <-chan struct{}
	sock   string
	file   string
}

// startDNSTapReceiver starts the receiver on dir/dnstap.sock, writing dir/dnstap.fstrm, and
// waits for its socket, so that CoreDNS's first connection attempt finds it.
func startDNSTapReceiver(ctx context.Context, bin, dir string) (*dnstapReceiver, error) {
	r := &dnstapReceiver{sock: filepath.Join(dir, "dnstap.sock"), file: filepath.Join(dir, "dnstap.fstrm")}
	out, err := os.Create(filepath.Join(dir, "dnstap.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	r.cmd = exec.Command(bin, "-u", r.sock, "-w", r.file)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if r.exited, _, err = childproc.Start(r.cmd); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(startTimeout); ; {
		if _, err := os.Stat(r.sock); err == nil {
			return r, nil
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("dnstap receiver exited during startup\n%s", tail(filepath.Join(dir, "dnstap.out"), 10))
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("dnstap receiver: no socket %s within %s", r.sock, startTimeout)
		}
	}
}

// cpuSeconds is the receiver's CPU time so far.
func (r *dnstapReceiver) cpuSeconds() (float64, error) { return procCPU(r.cmd.Process.Pid) }

// stop ends the receiver (after CoreDNS has exited and closed its connection) and returns the
// size of what it wrote.
func (r *dnstapReceiver) stop() int64 {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	fi, err := os.Stat(r.file)
	if err != nil {
		return 0
	}
	return fi.Size()
}
