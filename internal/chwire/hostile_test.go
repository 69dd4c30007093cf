package chwire_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/querylog/querylog/internal/chwire"
	"github.com/querylog/querylog/internal/testutil"
)

// fakeServer answers every connection with reply.
func fakeServer(t *testing.T, reply []byte) string {
	t.Helper()
	return testutil.StartFakeClickHouse(t, func(int) []byte { return reply }).Addr
}

// Every size a server sends is checked before the client allocates for it: none of these
// replies may panic, exhaust memory or hang; each is an error, and the heap stays small.
func TestHostileServer(t *testing.T) {
	hugeHello := testutil.ClickHouseHugeHello
	afterHello := func(f func(b *proto.Buffer)) []byte {
		b := testutil.ClickHouseHello()
		f(b)
		return b.Buf
	}
	for _, tc := range []struct {
		name  string
		reply []byte
		want  string
	}{
		{"name of 2^62 bytes", hugeHello(1 << 62), "over the limit"},
		{"name of 2^46 bytes", hugeHello(1 << 46), "over the limit"},
		{"name longer than sent", hugeHello(1000), "i/o timeout"}, // after the dial timeout
		{"number of 11 bytes", afterHello(func(b *proto.Buffer) {
			b.PutRaw([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
		}), "longer than 64 bits"},
		{"exception nested 1000 times", afterHello(func(b *proto.Buffer) {
			b.PutUVarInt(2)
			for range 1000 {
				b.PutInt32(1)
				b.PutString("DB::Exception")
				b.PutString("x")
				b.PutString("")
				b.PutBool(true)
			}
		}), "nested exceptions"},
		{"block of 2^40 rows", afterHello(func(b *proto.Buffer) {
			b.PutUVarInt(1)
			b.PutString("")
			b.PutRaw(frame(func(f *proto.Buffer) {
				f.PutUVarInt(0)
				f.PutUVarInt(1)
				f.PutUVarInt(1 << 40)
			}))
		}), "rows in a block"},
		{"frame of 2^31 bytes", afterHello(func(b *proto.Buffer) {
			b.PutUVarInt(1)
			b.PutString("")
			h := make([]byte, 25)
			h[16] = 0x82
			h[17], h[18], h[19], h[20] = 0xff, 0xff, 0xff, 0x7f
			b.PutRaw(h)
		}), "over the limit"},
		{"strings past the budget", afterHello(func(b *proto.Buffer) {
			for range 80 { // 80 exceptions' worth of 1 MiB names, each within its own bound
				b.PutUVarInt(3) // progress packets do not stop the reading
				b.PutUVarInt(1)
				b.PutUVarInt(1)
				b.PutUVarInt(1)
			}
			b.PutUVarInt(1)
			b.PutString("")
			b.PutRaw(frame(func(f *proto.Buffer) {
				f.PutUVarInt(0)
				f.PutUVarInt(1)
				f.PutUVarInt(100)
				f.PutString("s")
				f.PutString("String")
				for range 100 {
					f.PutString(strings.Repeat("x", 1<<20))
				}
			}))
		}), "more than"},
		{"unknown packet", afterHello(func(b *proto.Buffer) { b.PutUVarInt(99) }), "unexpected packet 99"},
		{"value of an unknown type", afterHello(func(b *proto.Buffer) {
			b.PutUVarInt(1)
			b.PutString("")
			b.PutRaw(frame(func(f *proto.Buffer) {
				f.PutUVarInt(0)
				f.PutUVarInt(1)
				f.PutUVarInt(1)
				f.PutString("a")
				f.PutString("Array(\x1b[31mString)")
			}))
		}), `Array(\x1b[31mString)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, tc.reply)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			err := query(ctx, addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 2*chwire.Budget {
				t.Errorf("the client allocated %d bytes, more than twice its budget", grown)
			}
		})
	}
}

// query dials addr and runs a query.
func query(ctx context.Context, addr string) error {
	c, err := chwire.Dial(ctx, chwire.Options{Addr: addr, Database: "default", User: "default"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Select(ctx, "SELECT 1")
	return err
}

// frame wraps a block into one uncompressed frame, with its checksum.
func frame(f func(b *proto.Buffer)) []byte {
	var b proto.Buffer
	f(&b)
	return chwire.AppendFrameForTest(nil, b.Buf)
}

// An exception's text cannot forge a log line or carry terminal escapes.
func TestExceptionIsPrintable(t *testing.T) {
	reply := testutil.ClickHouseException(516, "denied\n[INFO] plugin/querylog: all rows shipped OK\x1b[2J\a\r")
	err := query(context.Background(), fakeServer(t, reply))
	var e *chwire.Exception
	if !errors.As(err, &e) || e.Code != 516 {
		t.Fatalf("want exception 516, got %v", err)
	}
	want := `ClickHouse exception 516: denied\n[INFO] plugin/querylog: all rows shipped OK\x1b[2J\x07\r`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

// A server that keeps talking without ending its reply is cut off by the caller's deadline.
func TestDeadlineEndsEndlessReply(t *testing.T) {
	b := testutil.ClickHouseHello()
	for range 100000 {
		b.PutUVarInt(3)
		b.PutUVarInt(0)
		b.PutUVarInt(0)
		b.PutUVarInt(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := query(ctx, fakeServer(t, b.Buf))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
}
