package querylog

import (
	"net/netip"
	"strings"
)

// entry is one logged response. It is stored by value in the buffer's ring, so it holds no
// pointers but two strings (server is shared by every entry of a listener; qname is the
// request's own string unless it had to be lower-cased) and formats nothing: turning values into
// text happens in the flusher, off the DNS path.
type entry struct {
	start    int64 // Unix nanoseconds when the query reached querylog
	server   string
	qname    string
	client   netip.Addr
	hashKey  *[32]byte // non-nil: store a keyed hash of client instead (anonymize hash)
	duration int64     // nanoseconds until the reply was written
	size     uint32
	qtype    uint16
	qclass   uint16
	rcode    uint16
	answers  uint16
	proto    proto
	do       bool
}

// proto is the transport a query arrived on.
type proto uint8

const (
	protoUDP proto = iota
	protoTCP
	protoDoT
	protoDoH
	protoDoH3
	protoDoQ
	protoGRPC
)

var protoNames = [...]string{"udp", "tcp", "dot", "doh", "doh3", "doq", "grpc"}

func (p proto) String() string { return protoNames[p] }

// transport maps a server address such as "tls://:853" to the transport it serves. Plain
// "dns://" listeners serve both UDP and TCP, so the caller decides those from the connection.
func transport(server string) (p proto, plain bool) {
	scheme, _, ok := strings.Cut(server, "://")
	if !ok {
		return protoUDP, true
	}
	switch scheme {
	case "tls":
		return protoDoT, false
	case "https":
		return protoDoH, false
	case "https3":
		return protoDoH3, false
	case "quic":
		return protoDoQ, false
	case "grpc":
		return protoGRPC, false
	}
	return protoUDP, true
}
