package querylog

import (
	"strings"

	"github.com/miekg/dns"
)

// wireLen is m.Len(): the size of m on the wire, names compressed if m.Compress. m.Len()
// follows compression with a map of every name suffix, which it allocates and fills for each
// reply: most of a reply's logging cost on the DNS path (BenchmarkServeDNS). wireLen keeps the
// suffixes in a small array on the stack and finds them by comparison, for the record types
// replies mostly carry; a message with any other type, an escaped name or more names than the
// array holds goes to m.Len(). TestWireLen checks that the two agree.
func wireLen(m *dns.Msg) int {
	if !m.Compress || len(m.Question) <= 1 && len(m.Answer) == 0 && len(m.Ns) == 0 && len(m.Extra) == 0 {
		return m.Len() // nothing to compress: m.Len() makes no map
	}
	var c compressionNames
	l := headerLen
	for i := range m.Question {
		n, ok := c.nameLen(m.Question[i].Name, l, true)
		if !ok {
			return m.Len()
		}
		l += n + 4 // type and class
	}
	for _, section := range [...]*[]dns.RR{&m.Answer, &m.Ns, &m.Extra} {
		for _, rr := range *section {
			if rr == nil {
				continue
			}
			n, ok := c.rrLen(rr, l)
			if !ok {
				return m.Len()
			}
			l += n
		}
	}
	return l
}

const (
	headerLen = 12 // a DNS message's header
	// maxCompressionOffset is miekg/dns's: a suffix is remembered only if it starts below it,
	// where a 14-bit compression pointer can reach.
	maxCompressionOffset = 1 << 14
)

// compressionNames holds the name suffixes miekg/dns's Len puts in its compression map, in the
// order it puts them there.
type compressionNames struct {
	names [32]string
	n     int
}

func (c *compressionNames) has(s string) bool {
	for _, t := range c.names[:c.n] {
		if t == s {
			return true
		}
	}
	return false
}

// nameLen is what miekg/dns's domainNameLen gives for name s at message offset off: its length,
// or with compress the length up to a pointer to an earlier suffix; like it, it remembers the
// suffixes it passes. ok is false for a name it leaves to m.Len(): an escaped one, or one
// whose suffixes do not fit.
func (c *compressionNames) nameLen(s string, off int, compress bool) (n int, ok bool) {
	if s == "" || s == "." {
		return 1, true
	}
	if strings.IndexByte(s, '\\') >= 0 {
		return 0, false
	}
	if compress || off < maxCompressionOffset {
		// The suffixes start at each label: after each dot but the last character, as
		// dns.NextLabel finds them in a name without escapes.
		for i := 0; ; {
			if c.has(s[i:]) {
				if compress {
					return i + 2, true
				}
				break
			}
			if off+i < maxCompressionOffset {
				if c.n == len(c.names) {
					return 0, false
				}
				c.names[c.n] = s[i:]
				c.n++
			}
			dot := strings.IndexByte(s[i:len(s)-1], '.')
			if dot < 0 {
				break
			}
			i += dot + 1
		}
	}
	return len(s) + 1, true
}

// rrLen is rr's length at message offset off, as miekg/dns's len method of its type gives it
// with a compression map; ok is false for a type it leaves to m.Len().
func (c *compressionNames) rrLen(rr dns.RR, off int) (n int, ok bool) {
	h := rr.Header()
	l, ok := c.nameLen(h.Name, off, true)
	if !ok {
		return 0, false
	}
	l += 10 // type, class, TTL and data length
	switch rr := rr.(type) {
	case *dns.A:
		if len(rr.A) != 0 {
			l += 4
		}
	case *dns.AAAA:
		if len(rr.AAAA) != 0 {
			l += 16
		}
	case *dns.CNAME:
		n, ok = c.nameLen(rr.Target, off+l, true)
	case *dns.NS:
		n, ok = c.nameLen(rr.Ns, off+l, true)
	case *dns.PTR:
		n, ok = c.nameLen(rr.Ptr, off+l, true)
	case *dns.MX:
		l += 2 // preference
		n, ok = c.nameLen(rr.Mx, off+l, true)
	case *dns.SRV:
		l += 6 // priority, weight and port
		n, ok = c.nameLen(rr.Target, off+l, false)
	case *dns.SOA:
		if n, ok = c.nameLen(rr.Ns, off+l, true); ok {
			l += n
			n, ok = c.nameLen(rr.Mbox, off+l, true)
		}
		l += 20 // serial, refresh, retry, expire and minimum TTL
	case *dns.TXT:
		for _, s := range rr.Txt {
			l += len(s) + 1
		}
	case *dns.OPT:
		// No names in its data (options only): dns.Len less the owner name, uncompressed, and
		// the fixed fields.
		owner := len(h.Name) + 1
		if h.Name == "" || h.Name == "." {
			owner = 1
		}
		n = dns.Len(rr) - owner - 10
	default:
		return 0, false
	}
	return l + n, ok
}
