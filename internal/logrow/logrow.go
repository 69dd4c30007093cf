// Package logrow is the read side of a querylog database, shared by the plugin (its shipper and
// its rollups' catch-up) and the querylog command: the marks that say a file is one (Identity),
// a column's value as the driver gives it (Int, Text), and the rows of the log table (schema 2),
// which plugin/querylog packs (codec.go there, with the SQL of its views beside it), decoded
// (Decode) and named from the dictionaries and labels (Reader, Dict, Labels) without going
// through the views. It also names the codes a row stores as numbers, as the view
// queries_readable does.
package logrow

import (
	"strconv"

	"github.com/miekg/dns"
)

// Fields are the values a log row packs into its id and its columns late, a, b and c.
type Fields struct {
	TS                       int64 // arrival, Unix ms
	Qtype, Qclass, Rcode     int64
	Flags                    int64 // FlagAA ... FlagDO
	Plugin, Server, Upstream int64 // label numbers (Label*); 0: none
	Proto                    int64 // index of Protos
	Answers, Size            int64
	DurationUS               int64
	EDE                      int64 // Extended DNS Error INFO-CODE; -1: none
}

// Decode unpacks a log row: id, late, a, b and c as the table holds them.
func Decode(id, late, a, b, c int64) Fields {
	return Fields{
		TS:    id>>8 - late,
		Qtype: a & 0xffff, Flags: a >> 16 & 0x7f, Rcode: a >> 23 & 0xfff, Qclass: a>>35&0xffff ^ 1,
		Plugin: b & 0xff, Server: b >> 8 & 0xff, Proto: b >> 16 & 7, Upstream: b >> 19 & 0xff,
		Answers: b >> 27 & 0xfff, EDE: b>>39 - 1,
		Size: c & 0xffffff, DurationUS: c >> 24,
	}
}

// The bits of Fields.Flags: the reply's header flags and the query's DNSSEC OK bit.
const (
	FlagAA = 1 << iota
	FlagTC
	FlagRD
	FlagRA
	FlagAD
	FlagCD
	FlagDO
)

// The kinds of the labels table: which text a label number in a row stands for.
const (
	LabelServer   = 0 // the listener, e.g. dns://:53
	LabelPlugin   = 1 // the plugin that wrote the reply
	LabelUpstream = 2 // the upstream forward used
)

// DurationBounds are the upper bounds, in µs, of the reply-time buckets d0..d14 of the rollups
// (rollup_outcomes, rollup_upstreams): a bucket counts the durations above the bound before it,
// up to its own. d15 counts the rest.
var DurationBounds = []int64{100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000}

// Protos are the transports by the number a row stores (three bits).
var Protos = [...]string{"udp", "tcp", "dot", "doh", "doh3", "doq", "grpc", "unix"}

// Proto is the transport numbered p.
func Proto(p int64) string { return Protos[p&7] }

// Class is a query class: IN, CH, HS, NONE, ANY, or CLASS and the number.
func Class(code int64) string {
	switch code {
	case 1:
		return "IN"
	case 3:
		return "CH"
	case 4:
		return "HS"
	case 254:
		return "NONE"
	case 255:
		return "ANY"
	}
	return "CLASS" + strconv.FormatInt(code, 10)
}

// Type is a query type's name as miekg/dns has it, or TYPE and the number.
func Type(code int64) string {
	t := uint16(code)
	if n, ok := dns.TypeToString[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// Rcode is a response code's name as miekg/dns has it, or RCODE and the number.
func Rcode(code int64) string {
	r := uint16(code)
	if n, ok := dns.RcodeToString[int(r)]; ok {
		return n
	}
	return "RCODE" + strconv.Itoa(int(r))
}
