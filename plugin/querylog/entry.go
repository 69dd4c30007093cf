package querylog

import (
	"net/netip"
	"strings"

	coretransport "github.com/coredns/coredns/plugin/pkg/transport"
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
	protoUnix
)

var protoNames = [...]string{"udp", "tcp", "dot", "doh", "doh3", "doq", "grpc", "unix"}

func (p proto) String() string { return protoNames[p] }

// transport maps a server address such as "tls://:853" to the transport it serves, by CoreDNS's
// scheme names. Plain "dns://" listeners serve both UDP and TCP, so for those, and for an
// address without a known scheme, the caller decides from the connection. CoreDNS v1.15.0
// names unix:// but has no unix listener yet; should one appear, it is not logged as udp.
func transport(server string) (p proto, plain bool) {
	scheme, _, _ := strings.Cut(server, "://")
	switch scheme {
	case coretransport.TLS:
		return protoDoT, false
	case coretransport.HTTPS:
		return protoDoH, false
	case coretransport.HTTPS3:
		return protoDoH3, false
	case coretransport.QUIC:
		return protoDoQ, false
	case coretransport.GRPC:
		return protoGRPC, false
	case coretransport.UNIX:
		return protoUnix, false
	}
	return protoUDP, true
}
