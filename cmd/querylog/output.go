package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/querylog/querylog/internal/logrow"
)

// Names for codes, as the queries_readable view gives them.

func (d *database) typeName(code int64) string {
	if n, ok := d.qtypes[code]; ok {
		return n
	}
	return "TYPE" + strconv.FormatInt(code, 10)
}

func (d *database) rcodeName(code int64) string {
	if n, ok := d.rcodes[code]; ok {
		return n
	}
	return "RCODE" + strconv.FormatInt(code, 10)
}

var flagNames = [...]string{"aa", "tc", "rd", "ra", "ad", "cd"}

// flagsText is the view's flags column: the header bits set, space separated; "" for a row
// of schema 1, which did not store them.
func flagsText(r *row) string {
	var b strings.Builder
	for i, name := range flagNames {
		if r.flags>>i&1 != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(name)
		}
	}
	return b.String()
}

// timeText formats arrival times (Unix ms) as the view does (2026-11-29T18:20:00.278Z),
// formatting each second once.
type timeText struct {
	sec    int64
	prefix []byte
	buf    []byte
}

func (t *timeText) format(ms int64) string { return string(t.append(nil, ms)) }

func (t *timeText) append(b []byte, ms int64) []byte {
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	if t.prefix == nil || sec != t.sec {
		t.sec = sec
		t.prefix = time.Unix(sec, 0).UTC().AppendFormat(t.prefix[:0], "2006-01-02T15:04:05.")
	}
	b = append(b, t.prefix...)
	b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), 'Z')
	return b
}

// duration is a reply time for people: 312µs, 12.4ms, 1.2s.
func duration(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// count is an integer with thousands separators: 10,000,000.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func nullText(s sql.NullString, null string) string {
	if !s.Valid {
		return null
	}
	return s.String
}

// The columns of rows in JSON and CSV: queries_readable's, in its order, but retry_of.
var exportColumns = []string{"id", "ts", "time", "server", "client_ip", "proto", "qname", "qtype", "qclass", "rcode",
	"size", "answers", "duration_us", "do", "plugin", "flags", "ede", "upstream", "metadata", "answer_data", "namespace", "pod", "cache"}

// rowWriter writes rows as JSON lines, CSV or an aligned table.
type rowWriter interface {
	write(r *row) error
	flush() error
}

// jsonRows writes each row as a JSON object on a line of its own, with the columns of
// exportColumns, null where the view has NULL.
type jsonRows struct {
	d   *database
	w   *bufio.Writer
	buf []byte
	t   timeText
}

func newJSONRows(d *database, w io.Writer) *jsonRows {
	return &jsonRows{d: d, w: bufio.NewWriterSize(w, 64<<10)}
}

func (j *jsonRows) write(r *row) error {
	j.buf = j.appendRow(j.buf[:0], r)
	j.buf = append(j.buf, '\n')
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonRows) flush() error { return j.w.Flush() }

func (j *jsonRows) appendRow(b []byte, r *row) []byte {
	d := j.d
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, r.id, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, r.ts, 10)
	b = append(b, `,"time":"`...)
	b = j.t.append(b, r.ts)
	b = append(b, `","server":`...)
	b = appendJSONString(b, r.server)
	b = append(b, `,"client_ip":`...)
	b = appendJSONNull(b, r.client)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.proto)
	b = append(b, `,"qname":`...)
	b = appendJSONNull(b, r.qname)
	b = append(b, `,"qtype":`...)
	b = appendJSONString(b, d.typeName(r.qtype))
	b = append(b, `,"qclass":`...)
	b = appendJSONString(b, logrow.Class(r.qclass))
	b = append(b, `,"rcode":`...)
	b = appendJSONString(b, d.rcodeName(r.rcode))
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, r.size, 10)
	b = append(b, `,"answers":`...)
	b = strconv.AppendInt(b, r.answers, 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, r.durationUS, 10)
	b = append(b, `,"do":`...)
	b = strconv.AppendInt(b, r.flags>>6&1, 10)
	b = append(b, `,"plugin":`...)
	b = appendJSONNull(b, r.plugin)
	b = append(b, `,"flags":`...)
	b = appendJSONString(b, flagsText(r))
	b = append(b, `,"ede":`...)
	if r.ede.Valid {
		b = strconv.AppendInt(b, r.ede.Int64, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"upstream":`...)
	b = appendJSONNull(b, r.upstream)
	b = append(b, `,"metadata":`...)
	b = appendJSONNull(b, r.metadata)
	b = append(b, `,"answer_data":`...)
	b = appendJSONNull(b, r.answerData)
	b = append(b, `,"namespace":`...)
	b = appendJSONNull(b, r.namespace)
	b = append(b, `,"pod":`...)
	b = appendJSONNull(b, r.pod)
	b = append(b, `,"cache":`...)
	b = appendJSONNull(b, r.cache)
	return append(b, '}')
}

func appendJSONNull(b []byte, s sql.NullString) []byte {
	if !s.Valid {
		return append(b, "null"...)
	}
	return appendJSONString(b, s.String)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json escapes it (invalid
// UTF-8 as U+FFFD; <, > and & too, so the output is the same as json.Marshal's), and DEL and the
// C1 controls (U+0080 to U+009F) as \u escapes too, which encoding/json leaves raw: the string
// is the same, and no control character reaches a terminal that shows the JSON.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r >= 0x80 && r <= 0x9f {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// csvRows writes rows as CSV with a header line, the columns of exportColumns, empty where the
// view has NULL, quoted as encoding/csv quotes them. It appends each row's bytes itself:
// encoding/csv's Writer took half of an export's CPU, checking every field rune by rune, numbers
// included, which never need quotes. TestCSVLikeEncodingCSV holds the two to the same output.
type csvRows struct {
	d      *database
	w      *bufio.Writer
	header bool
	buf    []byte
	t      timeText
}

func newCSVRows(d *database, w io.Writer) *csvRows {
	return &csvRows{d: d, w: bufio.NewWriterSize(w, 64<<10)}
}

func (c *csvRows) writeHeader() error {
	c.header = true
	var b []byte
	for i, col := range exportColumns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSV(b, col)
	}
	_, err := c.w.Write(append(b, '\n'))
	return err
}

func (c *csvRows) write(r *row) error {
	if !c.header {
		if err := c.writeHeader(); err != nil {
			return err
		}
	}
	d, b := c.d, c.buf[:0]
	b = strconv.AppendInt(b, r.id, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.ts, 10)
	b = append(b, ',')
	b = c.t.append(b, r.ts)
	b = append(b, ',')
	b = appendCSV(b, r.server)
	b = append(b, ',')
	b = appendCSV(b, r.client.String)
	b = append(b, ',')
	b = appendCSV(b, r.proto)
	b = append(b, ',')
	b = appendCSV(b, r.qname.String)
	b = append(b, ',')
	b = appendCSV(b, d.typeName(r.qtype))
	b = append(b, ',')
	b = appendCSV(b, logrow.Class(r.qclass))
	b = append(b, ',')
	b = appendCSV(b, d.rcodeName(r.rcode))
	for _, n := range [...]int64{r.size, r.answers, r.durationUS, r.flags >> 6 & 1} {
		b = append(b, ',')
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, ',')
	b = appendCSV(b, r.plugin.String)
	b = append(b, ',')
	b = appendCSV(b, flagsText(r))
	b = append(b, ',')
	if r.ede.Valid {
		b = strconv.AppendInt(b, r.ede.Int64, 10)
	}
	for _, s := range [...]string{r.upstream.String, r.metadata.String, r.answerData.String, r.namespace.String, r.pod.String, r.cache.String} {
		b = append(b, ',')
		b = appendCSV(b, s)
	}
	c.buf = append(b, '\n')
	_, err := c.w.Write(c.buf)
	return err
}

func (c *csvRows) flush() error {
	if !c.header { // no rows: the header alone
		if err := c.writeHeader(); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// appendCSV appends a CSV field: quoted, with quotes doubled, when encoding/csv would quote it
// (it holds a comma, a quote, a line break, or begins with a space; or is \.).
func appendCSV(b []byte, s string) []byte {
	if !csvNeedsQuotes(s) {
		return append(b, s...)
	}
	b = append(b, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		b = append(b, s[:i+1]...)
		b = append(b, '"')
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, '"')
}

// csvNeedsQuotes is encoding/csv's fieldNeedsQuotes for a comma separator.
func csvNeedsQuotes(s string) bool {
	if s == "" {
		return false
	}
	if s == `\.` {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// printable is a text from the database as the tables for people show it: as it is, unless it
// holds a control character (ESC, BEL, CR, LF, DEL...), another character that does not print
// (U+202E, U+00A0...) or bytes that are not UTF-8, or begins with a double quote; then in double
// quotes, escaped as Go's strconv.Quote escapes ("evil\x1b[31m.example.", "a\nb", "\xff",
// "\u202e"), which strconv.Unquote reverses. A text shown without quotes is the stored one, one
// in quotes is escaped, and the two never look alike: a tampered file cannot move the cursor,
// forge a line or change the terminal. The escapes of DNS names (\., \032) are text, shown as
// they are. CSV and JSON are exact instead.
func printable(s string) string {
	if !needsQuoting(s) {
		return s
	}
	return strconv.Quote(s)
}

func needsQuoting(s string) bool {
	if strings.HasPrefix(s, `"`) {
		return true
	}
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !strconv.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// tableColumns are the columns of rows for people, the name last since it varies most. POD is
// the client's namespace and pod as kubectl writes them (team-a/web-1); CACHE hit or miss.
var tableColumns = []string{"TIME", "CLIENT", "PROTO", "TYPE", "RCODE", "SIZE", "DURATION", "PLUGIN", "CACHE", "FLAGS", "POD", "QNAME"}

// tableFields are a row's fields for people, in tableColumns' order, printable.
func (d *database) tableFields(r *row, t *timeText) []string {
	flags := flagsText(r)
	if r.flags&logrow.FlagDO != 0 {
		flags = strings.TrimSpace(flags + " do")
	}
	fields := []string{t.format(r.ts), nullText(r.client, "-"), r.proto, d.typeName(r.qtype), d.rcodeName(r.rcode),
		strconv.FormatInt(r.size, 10), duration(r.durationUS), nullText(r.plugin, "-"), nullText(r.cache, "-"), flags, podText(r), nullText(r.qname, "-")}
	for i, f := range fields {
		fields[i] = printable(f)
	}
	return fields
}

// podText is a row's namespace and pod for people: namespace/pod, or - when not known.
func podText(r *row) string {
	if !r.namespace.Valid {
		return "-"
	}
	return r.namespace.String + "/" + r.pod.String
}

// fixedWidths are the widths tail pads columns to, since it cannot wait for every row to align
// them (wider values push the rest right); negative: aligned right.
var fixedWidths = []int{24, clientWidth, 5, 5, 8, -4, -8, 10, 5, 11, podWidth, 0} // PLUGIN: kubernetes

// podWidth fits most namespace/pod texts of a cluster's own workloads (kube-system/coredns-
// and its hash are longer, and push the name right).
const podWidth = 24

// clientWidth fits an IPv4 address (15) and the pseudonym of anonymize hash: "anon-" and 16 hex
// digits (plugin/querylog, clientText). Only IPv6 addresses push the columns after it right.
const clientWidth = len("anon-") + 16

// fixedLine is a row as a line of fixedWidths columns.
func fixedLine(fields []string) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "%*s", -fixedWidths[i], f)
	}
	return strings.TrimRight(b.String(), " ")
}

// writeJSON writes v as indented JSON, with DEL and the C1 controls escaped as
// appendJSONString escapes them.
func writeJSON(out io.Writer, v any) error {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		return err
	}
	_, err := out.Write(escapeControls(buf.Bytes()))
	return err
}

// escapeControls escapes the DEL and C1 characters that encoding/json leaves raw. Its output is
// UTF-8 (it replaces invalid bytes), so a byte 0x7f, or 0xc2 before one of 0x80 to 0x9f, is
// such a character, and inside a string.
func escapeControls(b []byte) []byte {
	const hex = "0123456789abcdef"
	var out []byte
	start := 0
	for i := 0; i < len(b); i++ {
		at, c := i, b[i]
		switch {
		case c == 0x7f:
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			i++
			c = b[i]
		default:
			continue
		}
		out = append(out, b[start:at]...)
		out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		start = i + 1
	}
	if out == nil {
		return b
	}
	return append(out, b[start:]...)
}
