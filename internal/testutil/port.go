package testutil

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// given holds every port FreePorts has returned in this process. CoreDNS listens with
// SO_REUSEPORT, so two servers handed the same port (free when each asked, before either bound
// it) both start, share its queries, and each test loses rows to the other.
var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// FreePorts returns n distinct loopback ports, each free for both TCP and UDP at the time of
// the call and never returned before in this process.
func FreePorts(n int) ([]int, error) {
	givenMu.Lock()
	defer givenMu.Unlock()
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		if given[port] {
			continue
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	for _, p := range ports {
		given[p] = true
	}
	return ports, nil
}

// FreePort returns one loopback port free for both TCP and UDP.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Ports is FreePorts for a test: it fails the test when there are not n.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	ports, err := FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
