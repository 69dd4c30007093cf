// Package chwire is a small client of ClickHouse's native TCP protocol, for the shipper: a
// handshake (over TLS if asked), DDL, queries whose results are a few String and integer
// columns, and inserts of one block.
//
// It exists because a ClickHouse, or anyone between querylog and it, is a peer that may lie.
// General clients trust the sizes the server sends (a string length of 2^62 made clickhouse-go
// panic inside CoreDNS, 2^46 exhausted its memory) and read replies in goroutines of their own,
// where no recover can reach. This one is synchronous, reads every reply in the caller's
// goroutine, and checks each size against a fixed bound before allocating anything for it
// (decode.go), with a budget for a whole query.
//
// It speaks protocol revision 54429, which ClickHouse 18.16 and every later release accept, and
// which predates the packets and serialisations the client would have to understand otherwise
// (profile events, custom serialisation). Blocks are LZ4-compressed both ways.
package chwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

const (
	clientRevision = 54429
	// Features by revision, as ClickHouse numbers them.
	revTempTables       = 50264
	revBlockInfo        = 51903
	revClientInfo       = 54032
	revTimezone         = 54058
	revQuotaKey         = 54060
	revDisplayName      = 54372
	revVersionPatch     = 54401
	revClientWriteInfo  = 54420
	revSettingsAsString = 54429
)

// Packets, as the server numbers them.
const (
	serverHello         = 0
	serverData          = 1
	serverException     = 2
	serverProgress      = 3
	serverPong          = 4
	serverEndOfStream   = 5
	serverProfileInfo   = 6
	serverTotals        = 7
	serverExtremes      = 8
	serverLog           = 10
	serverTableColumns  = 11
	clientHello         = 0
	clientQuery         = 1
	clientData          = 2
	clientPing          = 4
	stageComplete       = 2
	compressionEnabled  = 1
	queryKindInitial    = 1
	interfaceTCP        = 1
	clientName          = "coredns-querylog"
	clientVersionMajor  = 1
	clientVersionMinor  = 0
	clientVersionPatch  = 0
	defaultDialTimeout  = 5 * time.Second
	defaultQueryTimeout = 60 * time.Second
)

// Options say where and as whom to connect.
type Options struct {
	Addr                     string // host:port
	Database, User, Password string
	TLS                      *tls.Config // nil: cleartext
	DialTimeout              time.Duration
}

// Conn is one connection, used by one goroutine at a time. After any error but an Exception it
// is broken (Broken says so) and should be closed.
type Conn struct {
	nc     net.Conn
	r      reader
	budget int64 // what the exchange in progress may still make the client hold
	rev    int   // the revision both sides speak: the lower of the two
	out    proto.Buffer
	block  proto.Buffer
	broken bool
	// Server is the server's name and version as it introduced itself, escaped.
	Server string
}

// Dial connects and shakes hands.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	timeout := o.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nc net.Conn
	var err error
	if o.TLS != nil {
		d := tls.Dialer{NetDialer: &net.Dialer{}, Config: o.TLS}
		nc, err = d.DialContext(dctx, "tcp", o.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", o.Addr)
	}
	if err != nil {
		// A TLS error may quote the server's certificate (its names), which the server chose.
		return nil, escaped{err}
	}
	c := &Conn{nc: nc}
	c.r = reader{r: bufio.NewReaderSize(nc, 64<<10), budget: &c.budget}
	if err := c.hello(dctx, o); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Broken says whether the connection is of no further use.
func (c *Conn) Broken() bool { return c.broken }

// start bounds one exchange by ctx: its deadline, or defaultQueryTimeout, and its cancellation
// (which interrupts a read or write in progress). The returned func ends the exchange.
func (c *Conn) start(ctx context.Context) func() {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultQueryTimeout)
	}
	c.nc.SetDeadline(deadline)
	c.budget = Budget
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// fail marks the connection broken unless err is the server's own exception, after which the
// protocol goes on.
func (c *Conn) fail(err error) error {
	var e *Exception
	if err != nil && !errors.As(err, &e) {
		c.broken = true
	}
	return err
}

func (c *Conn) hello(ctx context.Context, o Options) (err error) {
	defer c.start(ctx)()
	defer func() { err = c.fail(err) }()
	c.out.Reset()
	proto.ClientHello{Name: clientName, Major: clientVersionMajor, Minor: clientVersionMinor,
		ProtocolVersion: clientRevision, Database: o.Database, User: o.User, Password: o.Password}.Encode(&c.out)
	if err := c.flush(); err != nil {
		return err
	}
	code, err := c.r.uvarint()
	if err != nil {
		return err
	}
	switch code {
	case serverHello:
	case serverException:
		e, err := c.r.exception()
		if err != nil {
			return err
		}
		c.broken = true // the server closes the connection after it
		return e
	default:
		return protocolErrorf("packet %d instead of the server's hello", code)
	}
	name, err := c.r.str()
	if err != nil {
		return err
	}
	var v [3]uint64 // major, minor, revision
	for i := range v {
		if v[i], err = c.r.uvarint(); err != nil {
			return err
		}
	}
	c.rev = int(min(v[2], clientRevision))
	c.Server = fmt.Sprintf("%s %d.%d (revision %d)", Printable(name), v[0], v[1], v[2])
	if c.rev >= revTimezone {
		if _, err := c.r.str(); err != nil {
			return err
		}
	}
	if c.rev >= revDisplayName {
		if _, err := c.r.str(); err != nil {
			return err
		}
	}
	if c.rev >= revVersionPatch {
		if _, err := c.r.uvarint(); err != nil {
			return err
		}
	}
	return nil
}

// flush sends what has been encoded.
func (c *Conn) flush() error {
	_, err := c.nc.Write(c.out.Buf)
	c.out.Reset()
	return err
}

// Ping checks that the server answers.
func (c *Conn) Ping(ctx context.Context) (err error) {
	defer c.start(ctx)()
	defer func() { err = c.fail(err) }()
	c.out.PutUVarInt(clientPing)
	if err := c.flush(); err != nil {
		return err
	}
	for {
		code, err := c.r.uvarint()
		if err != nil {
			return err
		}
		if code == serverPong {
			return nil
		}
		if ok, err := c.common(code); !ok {
			return protocolErrorf("packet %d in reply to a ping", code)
		} else if err != nil {
			return err
		}
	}
}

// Exec runs a statement that returns no rows.
func (c *Conn) Exec(ctx context.Context, query string) error {
	_, err := c.Select(ctx, query)
	return err
}

// Select runs a query and returns its result's columns, at most Budget bytes of them.
func (c *Conn) Select(ctx context.Context, query string) (cols []Column, err error) {
	defer c.start(ctx)()
	defer func() { err = c.fail(err) }()
	if err := c.sendQuery("", query); err != nil {
		return nil, err
	}
	err = c.receive(func(block []Column, rows int) error {
		switch {
		case cols == nil:
			cols = block
		case len(block) != len(cols):
			return protocolErrorf("a block of %d columns after one of %d", len(block), len(cols))
		default:
			for i := range cols {
				cols[i].Strings = append(cols[i].Strings, block[i].Strings...)
				cols[i].Uints = append(cols[i].Uints, block[i].Uints...)
			}
		}
		return nil
	}, false)
	return cols, err
}

// Insert runs query, an INSERT ... naming the columns of input, with the rows of input, as
// query id.
func (c *Conn) Insert(ctx context.Context, query, id string, input []proto.InputColumn) (err error) {
	defer c.start(ctx)()
	defer func() { err = c.fail(err) }()
	if err := c.sendQuery(id, query+" VALUES"); err != nil {
		return err
	}
	// The server answers with the table's header block before it takes the rows.
	if err := c.receive(nil, true); err != nil {
		return err
	}
	rows := 0
	if len(input) > 0 {
		rows = input[0].Data.Rows()
	}
	if err := c.appendData(input, rows); err != nil {
		return err
	}
	if err := c.appendData(nil, 0); err != nil { // the end of the rows
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	return c.receive(nil, false)
}

// sendQuery sends a query and the empty block that ends its (absent) external tables.
func (c *Conn) sendQuery(id, query string) error {
	b := &c.out
	b.PutUVarInt(clientQuery)
	b.PutString(id)
	if c.rev >= revClientInfo {
		b.PutUInt8(queryKindInitial)
		b.PutString("")       // initial user
		b.PutString("")       // initial query id
		b.PutString("[::]:0") // initial address
		b.PutUInt8(interfaceTCP)
		b.PutString("") // OS user
		b.PutString("") // client host name
		b.PutString(clientName)
		b.PutUVarInt(clientVersionMajor)
		b.PutUVarInt(clientVersionMinor)
		b.PutUVarInt(clientRevision)
		if c.rev >= revQuotaKey {
			b.PutString("")
		}
		if c.rev >= revVersionPatch {
			b.PutUVarInt(clientVersionPatch)
		}
	}
	b.PutString("") // no settings
	b.PutUVarInt(stageComplete)
	b.PutUVarInt(compressionEnabled)
	b.PutString(query)
	if err := c.appendData(nil, 0); err != nil {
		return err
	}
	return c.flush()
}

// appendData appends a Data packet of one block, compressed.
func (c *Conn) appendData(input []proto.InputColumn, rows int) error {
	c.out.PutUVarInt(clientData)
	if c.rev >= revTempTables {
		c.out.PutString("")
	}
	c.block.Reset()
	blk := proto.Block{Info: proto.BlockInfo{BucketNum: -1}, Columns: len(input), Rows: rows}
	if err := blk.EncodeBlock(&c.block, c.rev, input); err != nil {
		return err
	}
	c.out.Buf = appendFrames(c.out.Buf, c.block.Buf)
	return nil
}

// receive reads the server's packets until the end of the query's result (or, with header, until
// the header block of an insert), handing each data block to data (if not nil).
func (c *Conn) receive(data func([]Column, int) error, header bool) error {
	for {
		code, err := c.r.uvarint()
		if err != nil {
			return err
		}
		switch code {
		case serverData, serverTotals, serverExtremes:
			if _, err := c.r.str(); err != nil { // table name
				return err
			}
			f := &frameReader{r: &c.r}
			blockReader := reader{r: f, budget: &c.budget}
			cols, rows, err := blockReader.block(data != nil && code == serverData)
			if err == nil && len(f.data) > 0 {
				err = protocolErrorf("%d bytes after a block in its frame", len(f.data))
			}
			if err != nil {
				return err
			}
			if header && code == serverData {
				return nil
			}
			if data != nil && code == serverData && len(cols) > 0 {
				if err := data(cols, rows); err != nil {
					return err
				}
			}
		case serverEndOfStream:
			if header {
				return protocolErrorf("the end of an insert before its header block")
			}
			return nil
		default:
			if ok, err := c.common(code); !ok {
				return protocolErrorf("unexpected packet %d", code)
			} else if err != nil {
				return err
			}
		}
	}
}

// common reads a packet that any reply may carry besides its own: an exception (returned as
// the error), progress, profile info, server logs and a table's columns. It reports whether
// code was one of them.
func (c *Conn) common(code uint64) (bool, error) {
	switch code {
	case serverException:
		e, err := c.r.exception()
		if err != nil {
			return true, err
		}
		return true, e
	case serverProgress:
		return true, c.r.progress(c.rev)
	case serverProfileInfo:
		return true, c.r.profileInfo()
	case serverLog: // a table name and an uncompressed block
		if _, err := c.r.str(); err != nil {
			return true, err
		}
		_, _, err := c.r.block(false)
		return true, err
	case serverTableColumns: // a table name and its columns' description
		for range 2 {
			if _, err := c.r.str(); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	return false, nil
}
