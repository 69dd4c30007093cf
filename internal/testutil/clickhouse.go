package testutil

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/querylog/querylog/internal/chserver"
)

// ClickHouse is a clickhouse-server of the test's own (internal/chserver: release 18.16, native
// protocol on a free loopback port, data on tmpfs where there is one). It has two users:
// default, without a password, and ClickHouseUser with ClickHousePassword. Stop and Start take
// it down and up again on the same port with the same data, as an outage would.
type ClickHouse struct {
	Addr string // 127.0.0.1:PORT
	Port int
	// SecureAddr is the native protocol over TLS, and CAFile the certificate that verifies it
	// (StartClickHouseTLS only).
	SecureAddr, CAFile string

	t      testing.TB
	server *chserver.Server
}

const (
	ClickHouseUser     = chserver.User
	ClickHousePassword = chserver.Password
)

// SkipClickHouse is the environment variable that lets developers without clickhouse-server
// skip the tests that need it. CI never sets it, so there a missing server fails the test.
const SkipClickHouse = "QUERYLOG_SKIP_CLICKHOUSE"

// StartClickHouse starts a server for the test and stops it, deleting its data, when the
// test ends. It fails the test if the server cannot be started, unless QUERYLOG_SKIP_CLICKHOUSE=1.
func StartClickHouse(t testing.TB) *ClickHouse { t.Helper(); return startClickHouse(t, false) }

// StartClickHouseTLS starts a server as StartClickHouse does which also listens with TLS, on
// SecureAddr, with a certificate for 127.0.0.1 made for the test (CAFile).
func StartClickHouseTLS(t testing.TB) *ClickHouse { t.Helper(); return startClickHouse(t, true) }

func startClickHouse(t testing.TB, secure bool) *ClickHouse {
	t.Helper()
	if os.Getenv(SkipClickHouse) == "1" {
		t.Skipf("%s=1: not starting clickhouse-server", SkipClickHouse)
	}
	var tls *chserver.TLS
	caFile := ""
	if secure {
		dir := t.TempDir()
		cert, key := LoopbackCert(t, dir)
		// clickhouse-server runs as this user: root here, which may read 0600 files.
		tls, caFile = &chserver.TLS{CertFile: cert, KeyFile: key}, cert
	}
	s, err := chserver.StartTLS("", tls)
	if errors.Is(err, chserver.ErrNotInstalled) {
		t.Fatalf("%v; or set %s=1 to skip", err, SkipClickHouse)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() { // what the server said, and whether it died, tell why a test failed
			t.Logf("clickhouse-server on %s (exited by itself: %q) printed:\n%s", s.Addr, s.Exited(), s.Log())
		}
		s.Close()
	})
	return &ClickHouse{Addr: s.Addr, Port: s.Port, SecureAddr: s.SecureAddr, CAFile: caFile, t: t, server: s}
}

// Start starts the server again after Stop or Kill, on the same port with the same data.
func (c *ClickHouse) Start() {
	c.t.Helper()
	if err := c.server.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop shuts the server down (SIGTERM) and waits for it to exit.
func (c *ClickHouse) Stop() {
	c.t.Helper()
	if err := c.server.Stop(); err != nil {
		c.t.Fatal(err)
	}
}

// Kill ends the server at once (SIGKILL).
func (c *ClickHouse) Kill() { c.server.Kill() }

// Pid is the server's process id (0 while it is stopped).
func (c *ClickHouse) Pid() int { return c.server.Pid() }

// Log is what the server has printed (warnings and errors) since it last started.
func (c *ClickHouse) Log() string { return c.server.Log() }

// Conn is a connection pool as the default user, shared by the test and closed with the server.
func (c *ClickHouse) Conn(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := c.server.Conn()
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// Exec runs a statement as the default user.
func (c *ClickHouse) Exec(t testing.TB, query string, args ...any) {
	t.Helper()
	conn := c.Conn(t)
	if err := conn.Exec(context.Background(), query, args...); err != nil {
		t.Fatalf("clickhouse: %s: %v", query, err)
	}
}

// Uint64 runs a query that returns one UInt64 (count(), uniqExact()...) as the default user.
func (c *ClickHouse) Uint64(t testing.TB, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := c.Conn(t).QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("clickhouse: %s: %v", query, err)
	}
	return n
}
