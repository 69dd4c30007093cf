package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouse is a clickhouse-server of the test's own (Debian's clickhouse-server package,
// release 18.16), listening for the native protocol on a free loopback port, with its data in
// a temporary folder on tmpfs where there is one. It has two users: default, without a
// password, and ClickHouseUser with ClickHousePassword. Stop and Start take it down and up
// again on the same port with the same data, as an outage would.
type ClickHouse struct {
	Addr string // 127.0.0.1:PORT
	Port int

	t      testing.TB
	bin    string
	dir    string
	config string
	cmd    *exec.Cmd
	exited chan struct{}
	out    *clickhouseOutput

	connOnce sync.Once
	conn     driver.Conn
	connErr  error
}

const (
	ClickHouseUser     = "ship"
	ClickHousePassword = "ship-secret"
)

// SkipClickHouse is the environment variable that lets developers without clickhouse-server
// skip the tests that need it. CI never sets it, so there a missing server fails the test.
const SkipClickHouse = "QUERYLOG_SKIP_CLICKHOUSE"

// StartClickHouse starts a server for the test and stops it, deleting its data, when the
// test ends. It fails the test if the server cannot be started, unless QUERYLOG_SKIP_CLICKHOUSE=1.
func StartClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	if os.Getenv(SkipClickHouse) == "1" {
		t.Skipf("%s=1: not starting clickhouse-server", SkipClickHouse)
	}
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/clickhouse-server"); err != nil {
			t.Fatalf("clickhouse-server is not installed (apt-get install clickhouse-server clickhouse-client, or set %s=1 to skip): %v", SkipClickHouse, err)
		}
	}
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // tmpfs: fast, and nothing left on disk
	}
	dir, err := os.MkdirTemp(base, "querylog-clickhouse-")
	if err != nil {
		t.Fatal(err)
	}
	c := &ClickHouse{t: t, bin: bin, dir: dir, config: filepath.Join(dir, "config.xml")}
	t.Cleanup(func() {
		if c.conn != nil {
			c.conn.Close()
		}
		c.kill()
		os.RemoveAll(dir)
	})
	// A port found free can be taken before the server binds it: try a few.
	for attempt := 0; ; attempt++ {
		c.Port = Ports(t, 1)[0]
		c.Addr = fmt.Sprintf("127.0.0.1:%d", c.Port)
		if err := os.WriteFile(c.config, []byte(clickhouseConfig(dir, c.Port)), 0o600); err != nil {
			t.Fatal(err)
		}
		err := c.start()
		if err == nil {
			return c
		}
		if attempt == 2 || !strings.Contains(c.out.String(), "Address already in use") {
			t.Fatalf("starting clickhouse-server: %v\n%s", err, c.out)
		}
	}
}

// Start starts the server again after Stop or Kill, on the same port with the same data.
func (c *ClickHouse) Start() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("restarting clickhouse-server: %v\n%s", err, c.out)
	}
}

// Stop shuts the server down (SIGTERM) and waits for it to exit.
func (c *ClickHouse) Stop() {
	c.t.Helper()
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.kill()
		c.t.Fatalf("clickhouse-server did not stop within 30s:\n%s", c.out)
	}
	c.cmd = nil
}

// Kill ends the server at once (SIGKILL).
func (c *ClickHouse) Kill() { c.kill() }

func (c *ClickHouse) kill() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Kill()
	<-c.exited
	c.cmd = nil
}

// Pid is the server's process id (0 while it is stopped).
func (c *ClickHouse) Pid() int {
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Log is what the server has printed (warnings and errors).
func (c *ClickHouse) Log() string { return c.out.String() }

func (c *ClickHouse) start() error {
	c.out = &clickhouseOutput{}
	c.cmd = exec.Command(c.bin, "--config-file="+c.config)
	c.cmd.Dir = c.dir
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := c.cmd.Start(); err != nil {
		c.cmd = nil
		return err
	}
	c.exited = make(chan struct{})
	cmd, exited := c.cmd, c.exited
	go func() { cmd.Wait(); close(exited) }()

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{c.Addr}, DialTimeout: time.Second})
	if err != nil {
		c.kill()
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			c.cmd = nil
			return fmt.Errorf("clickhouse-server exited: %v", cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := conn.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("no answer on %s after 30s: %v", c.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Conn is a connection pool as the default user, shared by the test and closed with the server.
func (c *ClickHouse) Conn(t testing.TB) driver.Conn {
	t.Helper()
	c.connOnce.Do(func() {
		c.conn, c.connErr = clickhouse.Open(&clickhouse.Options{Addr: []string{c.Addr}, DialTimeout: 5 * time.Second})
	})
	if c.connErr != nil {
		t.Fatal(c.connErr)
	}
	return c.conn
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

// clickhouseConfig is a whole server configuration, users included: loopback only, native
// protocol only (clickhouse-go's HTTP mode does not work with 18.16), small caches.
func clickhouseConfig(dir string, port int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%d</tcp_port>
    <path>%s/data/</path>
    <tmp_path>%s/tmp/</tmp_path>
    <user_files_path>%s/user_files/</user_files_path>
    <format_schema_path>%s/format_schemas/</format_schema_path>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
    <timezone>UTC</timezone>
    <default_database>default</default_database>
    <default_profile>default</default_profile>
    <profiles><default></default></profiles>
    <quotas><default></default></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <%s>
            <password>%s</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </%s>
    </users>
</yandex>
`, port, dir, dir, dir, dir, ClickHouseUser, ClickHousePassword, ClickHouseUser)
}

// clickhouseOutput collects a process's output.
type clickhouseOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *clickhouseOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *clickhouseOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
