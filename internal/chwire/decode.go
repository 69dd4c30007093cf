package chwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Every size the server sends is checked before anything is allocated for it: a hostile server
// (or anyone between querylog and it) can make the client allocate at most these bounds, and
// a query at most Budget bytes in all, however it lies.
const (
	maxStringLen  = 1 << 20 // one string: a value, a name, an exception message
	maxColumns    = 4096    // in one block
	maxBlockRows  = 1 << 20 // in one block
	maxFrameSize  = 8 << 20 // one compressed frame, compressed or not (ClickHouse sends <= 1 MiB)
	maxExceptions = 32      // nested exceptions of one error
	// Budget bounds what one query or handshake may make the client hold: every string, value
	// and frame read counts against it.
	Budget = 64 << 20
)

// errProtocol marks a reply that breaks the protocol; the connection is closed after it.
var errProtocol = errors.New("ClickHouse protocol error")

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// reader decodes the server's side of the native protocol with every size bounded.
type reader struct {
	r      io.Reader
	budget *int64 // bytes this query may still make the client hold, shared by its readers
	buf    [8]byte
}

// spend takes n bytes from the budget, before they are allocated.
func (r *reader) spend(n int64) error {
	if n < 0 || n > *r.budget {
		return protocolErrorf("the reply needs more than the %d bytes a query may hold", Budget)
	}
	*r.budget -= n
	return nil
}

func (r *reader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(r.r, r.buf[:1]); err != nil {
		return 0, err
	}
	return r.buf[0], nil
}

func (r *reader) uvarint() (uint64, error) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, protocolErrorf("a number longer than 64 bits")
}

// count reads a uvarint that counts something, at most max.
func (r *reader) count(what string, max int) (int, error) {
	v, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if v > uint64(max) {
		return 0, protocolErrorf("%s %d is over the limit of %d", what, v, max)
	}
	return int(v), nil
}

func (r *reader) fixed(n int) ([]byte, error) {
	if _, err := io.ReadFull(r.r, r.buf[:n]); err != nil {
		return nil, err
	}
	return r.buf[:n], nil
}

func (r *reader) int32() (int32, error) {
	b, err := r.fixed(4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

// str reads a string of at most maxStringLen bytes, taken from the budget.
func (r *reader) str() (string, error) {
	n, err := r.count("string length", maxStringLen)
	if err != nil {
		return "", err
	}
	if err := r.spend(int64(n)); err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// skip reads and discards n bytes, in small pieces.
func (r *reader) skip(n int64) error {
	_, err := io.CopyN(io.Discard, r.r, n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Column is one column of a result: strings for String columns, numbers for unsigned integers.
type Column struct {
	Name, Type string
	Strings    []string
	Uints      []uint64
}

// fixedSize is the width of the fixed-size types a reply may carry; their values are skipped
// unless they are unsigned (kept as Uints).
var fixedSize = map[string]int{
	"UInt8": 1, "Int8": 1, "UInt16": 2, "Int16": 2, "UInt32": 4, "Int32": 4, "UInt64": 8, "Int64": 8,
	"Float32": 4, "Float64": 8, "Date": 2, "DateTime": 4,
}

// block reads one block: info, columns and their values. Only String and the fixed-size types
// can carry rows; a header block (no rows) may name any type.
func (r *reader) block(keep bool) ([]Column, int, error) {
	for { // block info: numbered fields, ended by 0
		field, err := r.uvarint()
		if err != nil {
			return nil, 0, err
		}
		switch field {
		case 0:
		case 1:
			_, err = r.ReadByte() // is_overflows
		case 2:
			_, err = r.int32() // bucket_num
		default:
			return nil, 0, protocolErrorf("unknown block info field %d", field)
		}
		if err != nil {
			return nil, 0, err
		}
		if field == 0 {
			break
		}
	}
	ncols, err := r.count("columns in a block", maxColumns)
	if err != nil {
		return nil, 0, err
	}
	rows, err := r.count("rows in a block", maxBlockRows)
	if err != nil {
		return nil, 0, err
	}
	var cols []Column
	for range ncols {
		var c Column
		if c.Name, err = r.str(); err != nil {
			return nil, 0, err
		}
		if c.Type, err = r.str(); err != nil {
			return nil, 0, err
		}
		if rows > 0 {
			if err := r.values(&c, rows, keep); err != nil {
				return nil, 0, err
			}
		}
		if keep {
			cols = append(cols, c)
		}
	}
	return cols, rows, nil
}

func (r *reader) values(c *Column, rows int, keep bool) error {
	typ := c.Type
	if typ == "String" {
		for range rows {
			s, err := r.str()
			if err != nil {
				return err
			}
			if keep {
				c.Strings = append(c.Strings, s)
			}
		}
		return nil
	}
	if len(typ) > len("DateTime(") && typ[:len("DateTime(")] == "DateTime(" {
		typ = "DateTime"
	}
	size, ok := fixedSize[typ]
	if !ok {
		return protocolErrorf("a reply of type %s cannot be read", Printable(c.Type))
	}
	unsigned := typ[0] == 'U'
	if !keep || !unsigned {
		return r.skip(int64(rows) * int64(size))
	}
	if err := r.spend(int64(rows) * 8); err != nil {
		return err
	}
	c.Uints = make([]uint64, 0, rows)
	for range rows {
		b, err := r.fixed(size)
		if err != nil {
			return err
		}
		var v uint64
		for i := size - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		c.Uints = append(c.Uints, v)
	}
	return nil
}

// exception reads an exception and the ones nested in it.
func (r *reader) exception() (*Exception, error) {
	var first, last *Exception
	for depth := 0; ; depth++ {
		if depth == maxExceptions {
			return nil, protocolErrorf("more than %d nested exceptions", maxExceptions)
		}
		e := &Exception{}
		code, err := r.int32()
		if err != nil {
			return nil, err
		}
		e.Code = code
		if e.Name, err = r.str(); err != nil {
			return nil, err
		}
		if e.Message, err = r.str(); err != nil {
			return nil, err
		}
		if _, err = r.str(); err != nil { // stack trace: not kept
			return nil, err
		}
		nested, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = e
		} else {
			last.Nested = e
		}
		last = e
		if nested == 0 {
			return first, nil
		}
	}
}

// progress reads a Progress packet, which the client has no use for.
func (r *reader) progress(rev int) error {
	n := 3 // rows, bytes, total rows
	if rev >= revClientWriteInfo {
		n += 2 // written rows and bytes
	}
	for range n {
		if _, err := r.uvarint(); err != nil {
			return err
		}
	}
	return nil
}

// profileInfo reads a ProfileInfo packet: rows, blocks, bytes, applied_limit,
// rows_before_limit, calculated_rows_before_limit.
func (r *reader) profileInfo() error {
	for _, varint := range []bool{true, true, true, false, true, false} {
		var err error
		if varint {
			_, err = r.uvarint()
		} else {
			_, err = r.ReadByte()
		}
		if err != nil {
			return err
		}
	}
	return nil
}
