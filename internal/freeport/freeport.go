// Package freeport hands out loopback ports for servers that a test or the load harness starts:
// CoreDNS, and ClickHouse (internal/chserver). Both take their ports here, so that no port is
// handed out twice in one process.
package freeport

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// given holds every port Take has returned in this process. CoreDNS listens with SO_REUSEPORT,
// so two servers handed the same port (free when each asked, before either bound it) both
// start, share its queries, and each test loses rows to the other.
var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// Take returns n distinct loopback ports, each free for both TCP and UDP at the time of the
// call and never returned before in this process.
func Take(n int) ([]int, error) {
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
