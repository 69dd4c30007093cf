package querylog

import (
	"net/netip"
	"strings"
	"unsafe"

	coretransport "github.com/coredns/coredns/plugin/pkg/transport"

	"github.com/querylog/querylog/internal/logrow"
)

// entry is one logged response. It is stored by value in the buffer's ring, so it is kept small
// (80 bytes, BenchmarkBufferMemory) and holds one string, the query name, which is the request's
// own string unless it had to be lower-cased. Text that every row repeats (server, answering
// plugin, upstream) is a small label number (labels.go), and nothing is formatted: turning
// values into text happens in the flusher, off the DNS path.
type entry struct {
	start    int64    // Unix nanoseconds when the query reached querylog
	qname    string   // lower-cased, presentation format
	client   [16]byte // the client address, IPv4 as IPv4-mapped IPv6 (see addr)
	extra    *extra   // opt-in fields (metadata, answers); nil unless configured
	duration uint32   // microseconds until the reply was written, saturating
	size     uint32   // bytes sent; a sum for multi-message replies (AXFR)
	qtype    uint16
	qclass   uint16
	rcode    uint16 // extended rcode (12 bits) when the reply had an OPT record
	answers  uint16
	ede      uint16 // Extended DNS Error INFO-CODE + 1 of the reply; 0: none
	upstream uint16 // label: the upstream forward used; 0: none or unknown
	server   uint8  // label: the listener, e.g. dns://:53
	plugin   uint8  // label: the plugin that wrote the reply; 0: unknown
	flags    flags  // header bits of the reply and the query's DO bit
	bits     uint8  // transport (low 3 bits) and hash key index (high 5)
	port     uint16 // the client's source port, and
	id       uint16 // the query's DNS id: with the rest, they tell a retransmission (retransmit.go)
	cache    cacheStatus
}

// extra holds the fields of an entry that most entries do not have: the metadata and answers
// options', and the client's namespace and pod (cluster.go). It is not changed once made: the
// entries of a pod's queries share one (podExtras).
type extra struct {
	metadataLabels []string // the configured metadata labels (shared by a handler's entries)
	metadata       []string // their values, in that order; "" where unset
	answers        string   // answer data, space separated (answerData)
	namespace, pod string   // the kubernetes plugin's client-namespace and client-pod-name
}

// Sizes the byte budget (buffer_bytes) charges for: an entry's slot in the ring, and the extra
// struct with its metadata slice header.
const (
	entrySize = int64(unsafe.Sizeof(entry{}))
	extraSize = int64(unsafe.Sizeof(extra{}))
	valueSize = int64(unsafe.Sizeof("")) // one string header in extra.metadata
)

// wantsColumns reports whether the row needs the metadata and answer_data columns: the metadata
// or answers option is on (the namespace and pod have columns of their own).
func (x *extra) wantsColumns() bool { return x.metadataLabels != nil || x.answers != "" }

// cost is what e holds in memory, for the buffer's byte budget: its slot and the texts only it
// refers to (the query name, answer data, metadata values). The metadata labels are shared by
// a handler's entries and not counted. A pod's extra, which its entries share too (podExtras),
// is counted in each, as when each had its own: the bound is the same, only less of it is used.
// Allocator rounding is not counted either; the RSS bound of docs/options.md (buffer_bytes)
// covers it.
func (e *entry) cost() int64 {
	n := entrySize + int64(len(e.qname))
	if x := e.extra; x != nil {
		n += extraSize + int64(len(x.answers)) + int64(len(x.metadata))*valueSize + int64(len(x.namespace)+len(x.pod))
		for _, v := range x.metadata {
			n += int64(len(v))
		}
	}
	return n
}

// flags are the reply's header bits and the query's DNSSEC OK bit, in the order the database
// stores them (codec.go).
type flags uint8

const (
	flagAA flags = 1 << iota
	flagTC
	flagRD
	flagRA
	flagAD
	flagCD
	flagDO
	flagV4 // the client address is IPv4 (not stored: the address says it)
)

const (
	bitsProto    = 0x07 // transport
	bitsKeyShift = 3    // hash key index, 1-31; 0: no hashing
	bitsKeyMask  = 0x1f
)

func (e *entry) proto() proto { return proto(e.bits & bitsProto) }

func (e *entry) setProto(p proto) { e.bits = e.bits&^bitsProto | uint8(p)&bitsProto }

// keyIndex is the index of the anonymize hash key in the writer's keys, 0 for none.
func (e *entry) keyIndex() int { return int(e.bits>>bitsKeyShift) & bitsKeyMask }

func (e *entry) setKeyIndex(i int) {
	e.bits = e.bits&^(bitsKeyMask<<bitsKeyShift) | uint8(i&bitsKeyMask)<<bitsKeyShift
}

// addr returns the client address; the zero Addr when the transport gave none (stored as all
// zeros, which no client can send from).
func (e *entry) addr() netip.Addr {
	if e.client == ([16]byte{}) && e.flags&flagV4 == 0 {
		return netip.Addr{}
	}
	a := netip.AddrFrom16(e.client)
	if e.flags&flagV4 != 0 {
		return a.Unmap()
	}
	return a
}

// setAddr stores the client address without its zone, which neither matching, masking nor
// hashing should see.
func (e *entry) setAddr(a netip.Addr) {
	e.flags &^= flagV4
	if !a.IsValid() {
		e.client = [16]byte{}
		return
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		e.flags |= flagV4
	}
	e.client = a.As16()
}

// micros converts nanoseconds to whole microseconds, saturating at the field's limit.
func micros(ns int64) uint32 { return uint32(min(max(ns/1e3, 0), 1<<32-1)) }

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

func (p proto) String() string { return logrow.Protos[p] }

// transport maps a server address such as "tls://:853" to the transport it serves, by CoreDNS's
// scheme names. Plain "dns://" listeners serve both UDP and TCP, so for those, and for an
// address without a known scheme, the caller decides from the connection. CoreDNS v1.15.0
// names unix:// but has no unix listener yet; should one appear, it is not logged as udp.
func transport(server string) (p proto, plain bool) {
	if strings.HasPrefix(server, "dns://") {
		return protoUDP, true // the common case, without looking for the scheme's end
	}
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
