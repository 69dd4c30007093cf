package deploy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/childproc"
	"github.com/querylog/querylog/internal/chserver"
	"github.com/querylog/querylog/internal/chwire"
	"github.com/querylog/querylog/internal/testutil"
)

const loopbackDir = "clickhouse/loopback"

// TestLoopbackClickHouse starts clickhouse-server with the files of clickhouse/loopback as
// deploy/README.md says (in a copy whose ports are free ones, the password hash filled in and
// tls.xml in config.d/), and checks what ship needs of it: user querylog logs in with its
// password, in clear and over TLS verified against server.crt as ship_ca does, creates the
// database dns and reads system.processes; a wrong password and the default user are refused.
func TestLoopbackClickHouse(t *testing.T) {
	bin, err := chserver.Binary()
	if errors.Is(err, chserver.ErrNotInstalled) && os.Getenv(testutil.SkipClickHouse) == "1" {
		t.Skipf("%v; %s=1", err, testutil.SkipClickHouse)
	}
	if err != nil {
		t.Fatalf("%v; or set %s=1 to skip", err, testutil.SkipClickHouse)
	}
	readme := readFile(t, "README.md")
	for _, cmd := range []string{"cp -r deploy/clickhouse/loopback ", `sed -i "s/PASSWORD_SHA256_HEX/`,
		"clickhouse-server --config-file=config.xml", "cp tls.xml config.d/", "CREATE DATABASE IF NOT EXISTS dns",
		"ship clickhouse://querylog@127.0.0.1:9000/dns", "ship clickhouse://querylog@127.0.0.1:9440/dns?secure=true", "ship_ca "} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README.md does not say %q", cmd)
		}
	}

	// The copy, as the README makes it, on free ports.
	dir := t.TempDir()
	ports := testutil.Ports(t, 2)
	const password = "try-shipping"
	hash := sha256.Sum256([]byte(password))
	for file, edits := range map[string][][2]string{
		"config.xml": {{"<tcp_port>9000</tcp_port>", fmt.Sprintf("<tcp_port>%d</tcp_port>", ports[0])}},
		"users.xml":  {{"PASSWORD_SHA256_HEX", hex.EncodeToString(hash[:])}},
		"tls.xml":    {{"<tcp_port_secure>9440</tcp_port_secure>", fmt.Sprintf("<tcp_port_secure>%d</tcp_port_secure>", ports[1])}},
	} {
		text := readFile(t, filepath.Join(loopbackDir, file))
		for _, e := range edits {
			if strings.Count(text, e[0]) != 1 {
				t.Fatalf("%s/%s: want %q once", loopbackDir, file, e[0])
			}
			text = strings.Replace(text, e[0], e[1], 1)
		}
		if file == "tls.xml" {
			file = filepath.Join("config.d", file)
			if err := os.Mkdir(filepath.Join(dir, "config.d"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := testutil.LoopbackCert(t, dir)
	for from, to := range map[string]string{cert: "server.crt", key: "server.key"} {
		if err := os.Rename(from, filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}

	out := testutil.NewLogBuffer()
	cmd := exec.Command(bin, "--config-file=config.xml")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	exited, _, err := childproc.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the folder goes
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("clickhouse-server printed:\n%s", out.Stamped())
		}
	})

	plain := chwire.Options{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), User: "querylog", Password: password}
	var conn *chwire.Conn
	testutil.WaitFor(t, 2*time.Minute, "user querylog to log in", func() bool {
		select {
		case <-exited:
			t.Fatalf("clickhouse-server exited: %v", cmd.ProcessState)
		default:
		}
		conn, err = chwire.Dial(context.Background(), plain)
		return err == nil
	})
	defer conn.Close()
	ctx := context.Background()
	for _, q := range []string{"SELECT 1", "CREATE DATABASE IF NOT EXISTS dns", "SELECT count() FROM system.processes",
		"SELECT count() FROM system.columns WHERE database = 'dns'"} {
		if _, err := conn.Select(ctx, q); err != nil {
			t.Errorf("as querylog: %s: %v", q, err)
		}
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(dir, "server.crt")))) {
		t.Fatal("server.crt holds no certificate")
	}
	secure := plain
	secure.Addr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	secure.TLS = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if c, err := chwire.Dial(ctx, secure); err != nil {
		t.Errorf("as querylog over TLS: %v", err)
	} else {
		if cols, err := c.Select(ctx, "SELECT name FROM system.databases WHERE name = 'dns'"); err != nil || len(cols) != 1 || len(cols[0].Strings) != 1 {
			t.Errorf("over TLS, database dns: %v, %v", cols, err)
		}
		c.Close()
	}

	for _, o := range []chwire.Options{{Addr: plain.Addr, User: "querylog", Password: "wrong"}, {Addr: plain.Addr, User: "default"}} {
		if c, err := chwire.Dial(ctx, o); err == nil {
			c.Close()
			t.Errorf("user %q with password %q logged in", o.User, o.Password)
		}
	}
}
