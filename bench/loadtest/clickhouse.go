package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/chserver"
)

// clickhousePlaceholder in querylog options stands for the address of the run's own ClickHouse
// (-clickhouse).
const clickhousePlaceholder = "$CLICKHOUSE"

// clickhouse is the private clickhouse-server of a harness invocation (-clickhouse). It runs
// through every run, so that runs with and without ship share the machine with it alike; each
// run that ships gets a table of its own.
type clickhouse struct {
	server       *chserver.Server
	passwordFile string
	info         clickhouseInfo
}

type clickhouseInfo struct {
	Version string `json:"version"`
	Addr    string `json:"addr"`
	DataDir string `json:"data_dir"` // on tmpfs where there is one, as in the tests
	User    string `json:"user"`
}

// startClickHouse starts the server, with its data on tmpfs or else under tmp, and writes the
// password file that the querylog blocks name.
func startClickHouse(ctx context.Context, tmp string) (*clickhouse, error) {
	s, err := chserver.Start(tmp)
	if err != nil {
		return nil, err
	}
	ch := &clickhouse{server: s, passwordFile: filepath.Join(tmp, "clickhouse-password"),
		info: clickhouseInfo{Addr: s.Addr, DataDir: s.Dir, User: chserver.User}}
	if err := os.WriteFile(ch.passwordFile, []byte(chserver.Password+"\n"), 0o600); err != nil {
		s.Close()
		return nil, err
	}
	conn, err := s.Conn()
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT version()").Scan(&ch.info.Version)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("clickhouse-server on %s: %w", s.Addr, err)
	}
	return ch, nil
}

// close stops the server and deletes its data; with keep, its output is kept in tmp first.
func (ch *clickhouse) close(tmp string, keep bool) {
	if keep {
		os.WriteFile(filepath.Join(tmp, "clickhouse-server.log"), []byte(ch.server.Log()), 0o644)
	}
	ch.server.Close()
}

// usesClickHouse reports whether querylog options name the run's ClickHouse.
func usesClickHouse(opts string) bool { return strings.Contains(opts, clickhousePlaceholder) }

// expand gives $CLICKHOUSE in querylog options the server's address with table, and adds the
// password the way the plugin's README documents it: from a file, never in the Corefile.
func (ch *clickhouse) expand(opts, table string) string {
	url := fmt.Sprintf("clickhouse://%s@%s/default?table=%s", chserver.User, ch.server.Addr, table)
	return joinOptions(strings.ReplaceAll(opts, clickhousePlaceholder, url), "ship_password file "+ch.passwordFile)
}

// count returns what the run's table holds, after CoreDNS has exited (its shipper's last pass
// sends the tail on shutdown), and then drops the table, so that its background merges do not
// load the runs that follow.
func (ch *clickhouse) count(ctx context.Context, table string) (rows, distinct uint64, nodes []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := ch.server.Conn()
	if err != nil {
		return 0, 0, nil, err
	}
	q := fmt.Sprintf("SELECT count(), uniqExact(node, seq), groupUniqArray(node) FROM default.%s", table)
	if err := conn.QueryRow(ctx, q).Scan(&rows, &distinct, &nodes); err != nil {
		return 0, 0, nil, fmt.Errorf("clickhouse: %s: %w", q, err)
	}
	if err := conn.Exec(ctx, "DROP TABLE default."+table); err != nil {
		return 0, 0, nil, fmt.Errorf("clickhouse: dropping %s: %w", table, err)
	}
	return rows, distinct, nodes, nil
}
