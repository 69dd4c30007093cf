package testutil

import (
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// FakeClickHouse is a hostile ClickHouse on loopback: it answers the n-th connection (from 0)
// with reply(n), whatever the client says, reads what the client sends until the client
// closes, and stops with the test. Conns counts the connections it accepted.
type FakeClickHouse struct {
	Addr  string
	conns atomic.Int64
}

func StartFakeClickHouse(t testing.TB, reply func(n int) []byte) *FakeClickHouse {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &FakeClickHouse{Addr: l.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(f.conns.Add(1) - 1)
			go func() {
				defer c.Close()
				c.Write(reply(n))
				io.Copy(io.Discard, c) // until the client gives up and closes
			}()
		}
	}()
	return f
}

// Conns is the number of connections accepted so far.
func (f *FakeClickHouse) Conns() int { return int(f.conns.Load()) }

// ClickHouseHello is a valid server hello of ClickHouse 18.16 (revision 54413), to which a
// fake adds what it likes.
func ClickHouseHello() *proto.Buffer {
	b := &proto.Buffer{}
	b.PutUVarInt(0)
	b.PutString("ClickHouse")
	b.PutUVarInt(18)
	b.PutUVarInt(16)
	b.PutUVarInt(54413)
	b.PutString("UTC")
	b.PutString("fake")
	b.PutUVarInt(1)
	return b
}

// ClickHouseHugeHello is a server hello whose first string claims n bytes.
func ClickHouseHugeHello(n uint64) []byte {
	b := &proto.Buffer{}
	b.PutUVarInt(0)
	b.PutUVarInt(n)
	return b.Buf
}

// ClickHouseException is a hello followed by an exception with message msg.
func ClickHouseException(code int32, msg string) []byte {
	b := ClickHouseHello()
	b.PutUVarInt(2)
	b.PutInt32(code)
	b.PutString("DB::Exception")
	b.PutString(msg)
	b.PutString("")
	b.PutBool(false)
	return b.Buf
}
