package main

import (
	"github.com/prometheus/procfs"
)

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
