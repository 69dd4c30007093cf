package ship

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"

	"github.com/querylog/querylog/internal/chwire"
)

const (
	shipDialTimeout = 5 * time.Second
	// shipQueryTimeout bounds one insert or question; a 100,000-row insert takes well under a
	// second on loopback.
	shipQueryTimeout = 60 * time.Second
	// shipConnLifetime is how long a connection is reused: after a failover, the first
	// address is tried again at the latest this much later.
	shipConnLifetime = 5 * time.Minute
)

// clickHouse is the shipper's connection to one ClickHouse: o's addresses are tried in the
// order given, and the first that answers is used until it fails or shipConnLifetime has
// passed. chwire bounds everything the server sends (a hostile server cannot make it panic or
// allocate without limit) and reads it in the shipper's own goroutine.
type clickHouse struct {
	o     Options
	conn  *chwire.Conn
	addr  string // conn's, which errors name
	since time.Time
}

// get returns a working connection, dialling one if needed.
func (c *clickHouse) get(ctx context.Context) (*chwire.Conn, error) {
	if c.conn != nil && (c.conn.Broken() || time.Since(c.since) > shipConnLifetime) {
		c.close()
	}
	if c.conn != nil {
		return c.conn, nil
	}
	var errs []error
	for _, addr := range c.o.addrList() {
		opts := chwire.Options{Addr: addr, Database: c.o.Database, User: c.o.User, Password: c.o.Password, DialTimeout: shipDialTimeout}
		if c.o.Secure {
			var err error
			if opts.TLS, err = c.o.TLSConfig(addr); err != nil {
				return nil, err
			}
		}
		conn, err := chwire.Dial(ctx, opts)
		if err == nil {
			c.conn, c.addr, c.since = conn, addr, time.Now()
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

func (c *clickHouse) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// ping connects if needed and checks that the server answers.
func (c *clickHouse) ping(ctx context.Context) error {
	conn, err := c.get(ctx)
	if err != nil {
		return err
	}
	return c.named(conn.Ping(ctx))
}

// named prefixes an error of the connection with its address.
func (c *clickHouse) named(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", c.addr, err)
}

func (c *clickHouse) exec(ctx context.Context, query string) error {
	conn, err := c.get(ctx)
	if err != nil {
		return err
	}
	return c.named(conn.Exec(ctx, query))
}

// query runs a query whose result has the column types want ("String" or "UInt64").
func (c *clickHouse) query(ctx context.Context, query string, want ...string) ([]chwire.Column, error) {
	conn, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	cols, err := conn.Select(ctx, query)
	if err != nil {
		return nil, c.named(err)
	}
	if len(cols) != len(want) {
		return nil, c.named(fmt.Errorf("a reply of %d columns to a query of %d", len(cols), len(want)))
	}
	for i, col := range cols {
		if col.Type != want[i] {
			return nil, c.named(fmt.Errorf("a reply of type %s where %s was asked", chwire.Printable(col.Type), want[i]))
		}
	}
	return cols, nil
}

// insert sends the rows of input with an INSERT naming their columns, as query id.
func (c *clickHouse) insert(ctx context.Context, query, id string, input []chproto.InputColumn) error {
	conn, err := c.get(ctx)
	if err != nil {
		return err
	}
	return c.named(conn.Insert(ctx, query, id, input))
}

// quote makes s a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
