// Package freeport hands out loopback ports for servers that a test or the load harness starts:
// CoreDNS, and ClickHouse (internal/chserver). Both take their ports here.
//
// A test may stop a server and start it again on the same port, as an outage would, and the
// port must stay its own in between. Two kinds of neighbours could take it meanwhile:
//   - the kernel, which gives the ports of its ephemeral range (ip_local_port_range) to
//     outgoing connections and to listeners on port 0: so the ports come from beside that
//     range (portRange);
//   - other processes taking ports here (go test runs packages in parallel): so each port is
//     held by a lock file for as long as the process lives.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// given holds every port Take has returned in this process, and the lock files that keep them.
// CoreDNS listens with SO_REUSEPORT, so two servers handed the same port (free when each asked,
// before either bound it) would both start, share its queries, and each lose rows to the other.
var (
	givenMu sync.Mutex
	given   = map[int]*os.File{}
)

// rangeSpan is how many ports outside the ephemeral range are handed out, at most; minSpan the
// fewest worth keeping to (else the ports come from the ephemeral range itself).
const (
	rangeSpan = 12000
	minSpan   = 1000
)

// Take returns n distinct loopback ports, each free for both TCP and UDP at the time of the
// call, beside the kernel's ephemeral range, and never returned before by any live process.
func Take(n int) ([]int, error) {
	givenMu.Lock()
	defer givenMu.Unlock()
	lo, hi, err := portRange()
	if err != nil {
		return nil, err
	}
	dir, err := lockDir()
	if err != nil {
		return nil, err
	}
	var ports []int
	start := lo + rand.IntN(hi-lo)
	for i := 0; i < hi-lo && len(ports) < n; i++ {
		port := lo + (start-lo+i)%(hi-lo)
		if given[port] != nil {
			continue
		}
		lock, ok := lockPort(dir, port)
		if !ok {
			continue // another process has it
		}
		if !free(port) {
			lock.Close()
			continue
		}
		given[port] = lock // kept open: the lock lasts as long as the process
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free ports on 127.0.0.1 between %d and %d", n, lo, hi-1)
	}
	return ports, nil
}

// portRange is [lo, hi): up to rangeSpan ports just below the kernel's ephemeral range, or just
// above it when there is no room below. A machine whose ephemeral range leaves neither gets
// ports of the range itself, as before: a server stopped and started again may then, rarely,
// find its port taken by an outgoing connection.
func portRange() (lo, hi int, err error) {
	const file = "/proc/sys/net/ipv4/ip_local_port_range"
	ephLo, ephHi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile(file); err == nil {
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return 0, 0, fmt.Errorf("%s: %q is not two ports", file, b)
		}
		if ephLo, err = strconv.Atoi(f[0]); err != nil {
			return 0, 0, fmt.Errorf("%s: %v", file, err)
		}
		if ephHi, err = strconv.Atoi(f[1]); err != nil {
			return 0, 0, fmt.Errorf("%s: %v", file, err)
		}
	}
	lo, hi = outside(ephLo, ephHi)
	return lo, hi, nil
}

// outside is [lo, hi): up to rangeSpan unprivileged ports just below [ephLo, ephHi], or just
// above it, or (no minSpan ports on either side) the range itself.
func outside(ephLo, ephHi int) (lo, hi int) {
	if lo, hi = max(1024, ephLo-rangeSpan), ephLo; hi-lo >= minSpan {
		return lo, hi
	}
	if lo, hi = ephHi+1, min(65536, ephHi+1+rangeSpan); hi-lo >= minSpan {
		return lo, hi
	}
	return max(1024, ephLo), min(65536, ephHi+1)
}

// lockDir is the folder of the port locks, this user's own.
func lockDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("querylog-ports-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() {
		return "", fmt.Errorf("%s is not a folder of user %d: refusing it for port locks", dir, os.Getuid())
	}
	return dir, nil
}

// lockPort takes the lock of port (an exclusive flock, which the kernel lets go of when the
// process ends, however it ends); false if another process holds it.
func lockPort(dir string, port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// free reports whether port can be bound on 127.0.0.1 for both TCP and UDP now.
func free(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
