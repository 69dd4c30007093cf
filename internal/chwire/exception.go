package chwire

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Exception is an error ClickHouse sent. Its text comes from the network: Error escapes it, so
// that it cannot forge log lines or drive a terminal.
type Exception struct {
	Code          int32
	Name, Message string
	Nested        *Exception
}

func (e *Exception) Error() string {
	var b strings.Builder
	for x := e; x != nil; x = x.Nested {
		if x != e {
			b.WriteString("; caused by: ")
		}
		// The message starts with the exception's name ("DB::Exception: ...").
		fmt.Fprintf(&b, "ClickHouse exception %d: %s", x.Code, Printable(x.Message))
	}
	return b.String()
}

// escaped is an error whose text came in part from the peer: Error escapes it.
type escaped struct{ err error }

func (e escaped) Error() string { return Printable(e.err.Error()) }
func (e escaped) Unwrap() error { return e.err }

// Printable returns s with control characters, invalid UTF-8 and other unprintable runes
// escaped Go-style (\n, \x1b, \u2028), so that text from a peer stays on one line and cannot
// carry terminal escapes. Backslashes are doubled, so that the escaping cannot be forged.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
