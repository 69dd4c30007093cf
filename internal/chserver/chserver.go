// Package chserver runs a clickhouse-server of its own (Debian's clickhouse-server package,
// release 18.16) on loopback, for the shipping tests (through internal/testutil) and the load
// harness (bench/loadtest). The server never outlives the process that started it
// (internal/childproc).
package chserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/querylog/querylog/internal/childproc"
	"github.com/querylog/querylog/internal/freeport"
)

// The user that querylog ships as; the default user has no password.
const (
	User     = "ship"
	Password = "ship-secret"
)

// ErrNotInstalled is returned by Start when there is no clickhouse-server to run.
var ErrNotInstalled = errors.New("clickhouse-server is not installed (apt-get install clickhouse-server clickhouse-client)")

// Server is a clickhouse-server listening for the native protocol on a free loopback port, with
// its data in a folder of its own. It has two users: default, without a password, and User with
// Password. Stop and Start take it down and up again on the same port with the same data, as
// an outage would.
type Server struct {
	Addr string // 127.0.0.1:PORT
	Port int
	// SecureAddr is the native protocol over TLS (tcp_port_secure), when started with TLS.
	SecureAddr string
	Dir        string // data, config.xml, and the server's output in server.log

	tls *TLS

	bin    string
	cmd    *exec.Cmd
	exited <-chan struct{}

	connOnce sync.Once
	conn     driver.Conn
	connErr  error
}

// TLS is the certificate and key (PEM files) of the secure native port.
type TLS struct{ CertFile, KeyFile string }

// Binary is the clickhouse-server to run: on the PATH, or Debian's /usr/sbin one, which a user's
// PATH may lack. Its error wraps ErrNotInstalled.
func Binary() (string, error) {
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/clickhouse-server"); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
	}
	return bin, nil
}

// Start starts a server with its data in a new folder on tmpfs (/dev/shm) where there is one
// (fast, and nothing left on disk), else in a new folder under dir ("" for the default
// temporary folder). It returns once the server answers; Close stops it and deletes the folder.
func Start(dir string) (*Server, error) { return StartTLS(dir, nil) }

// StartTLS starts a server as Start does which also listens with TLS (if tls is not nil), on
// SecureAddr.
func StartTLS(dir string, tls *TLS) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	d, err := os.MkdirTemp(dir, "querylog-clickhouse-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: d, bin: bin, tls: tls}
	// A port found free can be taken before the server binds it: try a few.
	for attempt := 0; ; attempt++ {
		ports, err := freeport.Take(2)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Port = ports[0]
		s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
		if tls != nil {
			s.SecureAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		}
		if err := os.WriteFile(s.configPath(), []byte(config(d, s.Port, ports[1], tls)), 0o600); err != nil {
			s.Close()
			return nil, err
		}
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if attempt == 2 || !strings.Contains(s.Log(), "Address already in use") {
			s.Close()
			return nil, err
		}
	}
}

func (s *Server) configPath() string { return filepath.Join(s.Dir, "config.xml") }
func (s *Server) logPath() string    { return filepath.Join(s.Dir, "server.log") }

// Start starts the server again after Stop or Kill, on the same port with the same data, and
// waits (at most 30 s) until it answers.
func (s *Server) Start() error {
	out, err := os.Create(s.logPath()) // what this start prints: Log
	if err != nil {
		return err
	}
	defer out.Close() // the server has its own copy
	cmd := exec.Command(s.bin, "--config-file="+s.configPath())
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	exited, _, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("starting clickhouse-server: %w", err)
	}
	s.cmd, s.exited = cmd, exited

	if err := s.waitAnswer(); err != nil {
		s.Kill()
		return fmt.Errorf("starting clickhouse-server on %s: %w\n%s", s.Addr, err, s.Log())
	}
	return nil
}

// answerWithin bounds how long a starting server may take to answer: a few seconds alone, but
// much longer on busy shared cores with several servers starting at once.
const answerWithin = 2 * time.Minute

// waitAnswer pings the server until it answers, for at most answerWithin.
func (s *Server) waitAnswer() error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}, DialTimeout: time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(answerWithin)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("clickhouse-server exited: %v", s.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := conn.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s: %v", answerWithin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (SIGTERM) and waits for it to exit; after 30 s it is killed.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		s.cmd = nil
		return nil
	case <-time.After(30 * time.Second):
		s.Kill()
		return fmt.Errorf("clickhouse-server did not stop within 30s; killed:\n%s", s.Log())
	}
}

// Kill ends the server at once (SIGKILL).
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Exited reports how the server exited if it did so by itself, while it should be running
// (empty if it is running or was stopped).
func (s *Server) Exited() string {
	if s.cmd == nil {
		return ""
	}
	select {
	case <-s.exited:
		return s.cmd.ProcessState.String()
	default:
		return ""
	}
}

// Pid is the server's process id (0 while it is stopped).
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Log is what the server has printed (warnings and errors) since it last started.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// Conn is a connection pool as the default user, opened at the first call and closed by Close.
func (s *Server) Conn() (driver.Conn, error) {
	s.connOnce.Do(func() {
		s.conn, s.connErr = clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}, DialTimeout: 5 * time.Second})
	})
	return s.conn, s.connErr
}

// Close kills the server and deletes its folder.
func (s *Server) Close() {
	if s.conn != nil {
		s.conn.Close()
	}
	s.Kill()
	os.RemoveAll(s.Dir)
}

// config is a whole server configuration, users included: loopback only, native protocol only
// (clickhouse-go's HTTP mode does not work with 18.16), with TLS on securePort if tls is not
// nil, small caches.
func config(dir string, port, securePort int, tls *TLS) string {
	secure := ""
	if tls != nil {
		secure = fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
    <openSSL><server>
        <certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile>
        <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
        <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
    </server></openSSL>`, securePort, tls.CertFile, tls.KeyFile)
	}
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%d</tcp_port>
    %s
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
`, port, secure, dir, dir, dir, dir, User, Password, User)
}
