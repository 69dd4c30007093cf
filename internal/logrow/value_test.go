package logrow

import (
	"database/sql/driver"
	"testing"
)

func TestValues(t *testing.T) {
	for _, c := range []struct {
		v       driver.Value
		n       int64
		text    string
		notNull bool
	}{
		{nil, 0, "", false},
		{int64(-7), -7, "-7", true},
		{2.75, 2, "2.75", true},
		{"12", 12, "12", true},
		{"a.example.", 0, "a.example.", true},
		{[]byte("34"), 34, "34", true},
		{true, 1, "true", true},
	} {
		if n := Int(c.v); n != c.n {
			t.Errorf("Int(%#v) = %d, want %d", c.v, n, c.n)
		}
		if s, ok := Text(c.v); s != c.text || ok != c.notNull {
			t.Errorf("Text(%#v) = %q, %v; want %q, %v", c.v, s, ok, c.text, c.notNull)
		}
	}
}

// The names of codes are miekg/dns's, as queries_readable shows them, or the number.
func TestCodeNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Type(1), "A"}, {Type(28), "AAAA"}, {Type(65280), "TYPE65280"},
		{Rcode(0), "NOERROR"}, {Rcode(3), "NXDOMAIN"}, {Rcode(3841), "RCODE3841"},
		{Class(1), "IN"}, {Class(2), "CLASS2"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
