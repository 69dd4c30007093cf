package main

import (
	"os/exec"
	"runtime"
	"syscall"

	"github.com/prometheus/procfs"
)

// startLocked starts cmd with Pdeathsig SIGKILL, so that it never outlives the harness, from a
// goroutine locked to its OS thread that lives until the process has been waited for: the
// kernel sends Pdeathsig when the creating thread ends, not the process (go.dev/issue/27505),
// and Go may end threads. done is closed once Wait has returned, and *waitErr is its error.
func startLocked(cmd *exec.Cmd) (done <-chan struct{}, waitErr *error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	ch := make(chan struct{})
	var werr error
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		werr = cmd.Wait()
		close(ch)
	}()
	if err := <-started; err != nil {
		return nil, nil, err
	}
	return ch, &werr, nil
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
