package main

import (
	"os/exec"
	"runtime"
	"syscall"

	"github.com/prometheus/procfs"
)

// startLocked starts cmds with Pdeathsig SIGKILL, so that none outlives the harness, from a
// goroutine locked to its OS thread that lives until all have been waited for: the kernel
// sends Pdeathsig when the creating thread ends, not the process (go.dev/issue/27505), and Go
// may end threads. done is closed once every Wait has returned; errs[i] is cmds[i]'s error.
// If one fails to start, those already started are killed.
func startLocked(cmds ...*exec.Cmd) (done <-chan struct{}, errs []error, err error) {
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

// procCPU returns utime+stime of a process in seconds.
func procCPU(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return st.CPUTime(), nil
}

// procMem returns VmHWM (peak RSS) and VmRSS in bytes.
func procMem(pid int) (hwm, rss int64, err error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, 0, err
	}
	return int64(st.VmHWM), int64(st.VmRSS), nil
}
