// Package childproc starts the processes that the load harness and the tests run beside them
// (CoreDNS, dnsperf, clickhouse-server) so that none outlives this process, even if it is killed.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmds with Pdeathsig SIGKILL, so that none outlives this process, from a
// goroutine locked to its OS thread that lives until all have been waited for: the kernel
// sends Pdeathsig when the creating thread ends, not the process (go.dev/issue/27505), and Go
// may end threads. done is closed once every Wait has returned; errs[i] is cmds[i]'s error.
// If one fails to start, those already started are killed.
func Start(cmds ...*exec.Cmd) (done <-chan struct{}, errs []error, err error) {
	for _, cmd := range cmds {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	started := make(chan error, 1)
	ch := make(chan struct{})
	errs = make([]error, len(cmds))
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		for i, cmd := range cmds {
			if err := cmd.Start(); err != nil {
				for _, c := range cmds[:i] {
					c.Process.Kill()
					c.Wait()
				}
				started <- err
				return
			}
		}
		started <- nil
		for i, cmd := range cmds {
			errs[i] = cmd.Wait()
		}
		close(ch)
	}()
	if err := <-started; err != nil {
		return nil, nil, err
	}
	return ch, errs, nil
}
