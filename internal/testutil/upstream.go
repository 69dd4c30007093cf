package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/miekg/dns"
)

// UpstreamIP is what Upstream answers for A queries under example.org.
const UpstreamIP = "192.0.2.53"

// Upstream is a tiny DNS server on loopback for *forward* to send to, so that no test query
// leaves the machine: A queries for names under example.org. get UpstreamIP, other names under
// example.org. an empty NOERROR, and every other name NXDOMAIN (which is also what the *loop*
// plugin's startup probe must get, or it detects a loop).
type Upstream struct {
	Addr string // IP:PORT, UDP and TCP
	// ResolvConf is a resolv.conf naming the upstream, in t.TempDir(). resolv.conf has no port
	// (*forward* reads port 53), so the upstream listens on port 53 of a random 127/8 address
	// when it may; otherwise ResolvConf is "" and Target is Addr.
	ResolvConf string
	// Target is what to put after `forward .`: ResolvConf if there is one, else Addr.
	Target  string
	queries atomic.Int64
}

// Queries is the number of queries the upstream has answered.
func (u *Upstream) Queries() int64 { return u.queries.Load() }

// StartUpstream starts an Upstream that stops when the test ends.
func StartUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{}
	pc, ln, err := listenPort53()
	if err != nil {
		t.Logf("upstream: cannot listen on port 53 of a loopback address (%v); forward gets IP:PORT instead of a resolv.conf", err)
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			t.Fatal(err)
		}
	}
	u.Addr = pc.LocalAddr().String()
	u.Target = u.Addr
	if strings.HasSuffix(u.Addr, ":53") {
		ip, _, _ := net.SplitHostPort(u.Addr)
		u.ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(u.ResolvConf, []byte("nameserver "+ip+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		u.Target = u.ResolvConf
	}
	h := dns.HandlerFunc(u.answer)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return u
}

// listenPort53 listens on UDP and TCP port 53 of a random address in 127/8 (all of which are
// loopback on Linux), trying a few in case one is taken.
func listenPort53() (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		addr := fmt.Sprintf("127.%d.%d.%d:53", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EADDRNOTAVAIL) {
				return nil, nil, err
			}
			continue
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
			continue
		}
		return pc, ln, nil
	}
	return nil, nil, err
}

func (u *Upstream) answer(w dns.ResponseWriter, r *dns.Msg) {
	u.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		switch {
		case !dns.IsSubDomain("example.org.", q.Name):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + UpstreamIP)
			m.Answer = append(m.Answer, rr)
		}
	}
	_ = w.WriteMsg(m)
}
