package chwire_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/querylog/querylog/internal/chwire"
	"github.com/querylog/querylog/internal/testutil"
)

// The client against the real clickhouse-server: DDL, an insert of 50,000 rows (two compressed
// frames of 1 MiB and more), a query of them back, and an exception. The deadline is generous:
// a busy machine is slow, not wrong.
func TestRealServer(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := chwire.Dial(ctx, chwire.Options{Addr: ch.Addr, Database: "default", User: testutil.ClickHouseUser, Password: testutil.ClickHousePassword})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.Contains(c.Server, "ClickHouse") {
		t.Errorf("server %q", c.Server)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "CREATE TABLE t (n UInt64, s String, d DateTime('UTC')) ENGINE = MergeTree ORDER BY n"); err != nil {
		t.Fatal(err)
	}
	const rows = 50000
	var n proto.ColUInt64
	var s proto.ColStr
	var d proto.ColDateTime
	for i := range rows {
		n.Append(uint64(i))
		s.Append(fmt.Sprintf("name-%d.example.org.", i))
		d.Append(time.Unix(int64(i), 0))
	}
	input := []proto.InputColumn{{Name: "n", Data: &n}, {Name: "s", Data: &s}, {Name: "d", Data: &d}}
	if err := c.Insert(ctx, "INSERT INTO t (n, s, d)", "chwire-test:1", input); err != nil {
		t.Fatal(err)
	}
	cols, err := c.Select(ctx, "SELECT count(), sum(n), max(s) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint64{cols[0].Uints[0], cols[1].Uints[0]}; !slices.Equal(got, []uint64{rows, rows * (rows - 1) / 2}) {
		t.Errorf("count, sum = %v", got)
	}
	if got := cols[2].Strings; !slices.Equal(got, []string{"name-9999.example.org."}) {
		t.Errorf("max(s) = %q", got)
	}
	cols, err = c.Select(ctx, "SELECT n, s FROM t WHERE n >= 1000 AND n < 3000 ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cols[0].Uints) != 2000 || cols[0].Uints[1999] != 2999 || cols[1].Strings[0] != "name-1000.example.org." {
		t.Errorf("rows %d, last %v", len(cols[0].Uints), cols[0].Uints[len(cols[0].Uints)-1:])
	}
	_, err = c.Select(ctx, "SELECT * FROM missing")
	var e *chwire.Exception
	if !errors.As(err, &e) || e.Code != 60 {
		t.Fatalf("want exception 60, got %v", err)
	}
	if c.Broken() {
		t.Fatal("an exception broke the connection")
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after an exception: %v", err)
	}
}

// TLS to the real server's secure port: a handshake with the right CA, and an error naming
// the failure (before anything is sent) with another.
func TestRealServerTLS(t *testing.T) {
	ch := testutil.StartClickHouseTLS(t)
	pool := func(pem []byte) *tls.Config {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			t.Fatal("no certificate")
		}
		return &tls.Config{RootCAs: p, ServerName: "127.0.0.1"}
	}
	good, err := os.ReadFile(ch.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := chwire.Dial(ctx, chwire.Options{Addr: ch.SecureAddr, Database: "default", User: "default", TLS: pool(good)})
	if err != nil {
		t.Fatal(err)
	}
	cols, err := c.Select(ctx, "SELECT count() FROM system.one")
	c.Close()
	if err != nil || cols[0].Uints[0] != 1 {
		t.Fatalf("over TLS: %v %v", cols, err)
	}
	wrong, _, err := testutil.LoopbackCertPEM()
	if err != nil {
		t.Fatal(err)
	}
	_, err = chwire.Dial(ctx, chwire.Options{Addr: ch.SecureAddr, Database: "default", User: "default", TLS: pool(wrong)})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("with the wrong CA: %v", err)
	}
}
