package querylog

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// serveFrom sends one query for name from client through a handler with filter f and returns
// what it logged.
func serveFrom(t *testing.T, f filter, name, client string) []entry {
	t.Helper()
	return serveFromAddr(t, f, name, &test.ResponseWriter{RemoteIP: client})
}

// serveFromAddr is serveFrom for a ResponseWriter w, whose RemoteAddr is the client.
func serveFromAddr(t *testing.T, f filter, name string, w dns.ResponseWriter) []entry {
	t.Helper()
	sink := &memSink{}
	q := &QueryLog{filter: f, sink: sink, Next: replyWith(dns.RcodeSuccess, 0, nil)}
	if _, err := q.ServeDNS(context.Background(), dnstest.NewRecorder(w), query(name, dns.TypeA, dns.ClassINET)); err != nil {
		t.Fatal(err)
	}
	return sink.got()
}

// TestZonedAndMappedClients: a link-local client arrives with its interface as zone
// (fe80::1%eth0), an IPv4 client on a dual-stack socket as ::ffff:192.0.2.1. Both are the same
// client as the plain address for ignore_clients, anonymize and the hash pseudonym.
func TestZonedAndMappedClients(t *testing.T) {
	t.Parallel()
	udp := func(ip, zone string) dns.ResponseWriter {
		return &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 5353, Zone: zone}}
	}
	tcp := func(ip, zone string) dns.ResponseWriter {
		return &fakeWriter{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 5353, Zone: zone}}
	}
	other := func(s string) dns.ResponseWriter { return &fakeWriter{remote: textAddr(s)} }

	linkLocal := []dns.ResponseWriter{udp("fe80::1", "eth0"), udp("fe80::1", "eth1"), udp("fe80::1", "3"),
		tcp("fe80::1", "eth0"), udp("fe80::1", ""), other("[fe80::1%eth0]:5353")}
	mapped := []dns.ResponseWriter{udp("::ffff:192.0.2.1", ""), tcp("::ffff:192.0.2.1", ""), udp("192.0.2.1", ""), other("[::ffff:192.0.2.1]:53")}

	ignore := func(cidr string) filter {
		p, err := parsePrefix(cidr)
		if err != nil {
			t.Fatalf("parsePrefix(%q): %v", cidr, err)
		}
		return filter{ignoreClients: []netip.Prefix{p}}
	}
	for _, tc := range []struct {
		cidr    string
		clients []dns.ResponseWriter
	}{
		{"fe80::/10", linkLocal},
		{"fe80::1", linkLocal},
		{"192.0.2.0/24", mapped},
		{"::ffff:192.0.2.0/120", mapped},
		{"::ffff:192.0.2.1", mapped},
	} {
		for _, w := range tc.clients {
			if got := serveFromAddr(t, ignore(tc.cidr), "example.org.", w); len(got) != 0 {
				t.Errorf("ignore_clients %s: client %v was logged", tc.cidr, w.RemoteAddr())
			}
		}
	}

	var keys keyring
	key := &[32]byte{7}
	keyIndex, _ := keys.index(key)
	for _, group := range []struct {
		clients   []dns.ResponseWriter
		plain     string // stored without anonymize
		truncated string // stored with anonymize 24 56
	}{
		{linkLocal, "fe80::1", "fe80::"},
		{mapped, "192.0.2.1", "192.0.2.0"},
	} {
		var hashes []string
		for _, w := range group.clients {
			e := serveFromAddr(t, filter{}, "example.org.", w)[0]
			if s := clientText(&e, nil); s != group.plain {
				t.Errorf("client %v stored as %q, want %q", w.RemoteAddr(), s, group.plain)
			}
			e = serveFromAddr(t, filter{anonV4: 24, anonV6: 56}, "example.org.", w)[0]
			if s := clientText(&e, nil); s != group.truncated {
				t.Errorf("client %v anonymized to %q, want %q", w.RemoteAddr(), s, group.truncated)
			}
			e = serveFromAddr(t, filter{hash: true, key: key, keyIndex: keyIndex}, "example.org.", w)[0]
			hashes = append(hashes, clientText(&e, &keys))
		}
		for i, h := range hashes {
			if h != hashes[0] {
				t.Errorf("client %v hashes to %s, but %v to %s", group.clients[i].RemoteAddr(), h, group.clients[0].RemoteAddr(), hashes[0])
			}
		}
	}
}

// textAddr is a net.Addr of another kind than UDP or TCP, known only by its text.
type textAddr string

func (a textAddr) Network() string { return "other" }
func (a textAddr) String() string  { return string(a) }

func TestAnonymizeTruncates(t *testing.T) {
	t.Parallel()
	f := filter{anonV4: 24, anonV6: 56}
	for _, tc := range []struct{ client, want string }{
		{"192.0.2.77", "192.0.2.0"},
		{"2001:db8:1234:5678:9abc::1", "2001:db8:1234:5600::"},
	} {
		got := serveFrom(t, f, "example.org.", tc.client)
		if len(got) != 1 {
			t.Fatalf("%s: %d entries, want 1", tc.client, len(got))
		}
		if s := clientText(&got[0], nil); s != tc.want {
			t.Errorf("%s stored as %s, want %s", tc.client, s, tc.want)
		}
	}
}

func TestAnonymizeHashIsKeyedAndStable(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "q.db.key")
	key, err := loadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := loadKey(keyFile) // as after a restart
	if err != nil {
		t.Fatal(err)
	}
	if *again != *key {
		t.Fatal("reloading the key file gave a different key")
	}
	text := func(k *[32]byte, client string) string {
		var keys keyring
		i, err := keys.index(k)
		if err != nil {
			t.Fatal(err)
		}
		got := serveFrom(t, filter{hash: true, key: k, keyIndex: i}, "example.org.", client)
		return clientText(&got[0], &keys)
	}
	a1, a2, b := text(key, "192.0.2.1"), text(again, "192.0.2.1"), text(key, "192.0.2.2")
	if !strings.HasPrefix(a1, "anon-") || len(a1) != len("anon-")+16 || strings.Contains(a1, "192.0.2") {
		t.Errorf("hashed client %q: want anon- and 16 hex digits", a1)
	}
	if a1 != a2 {
		t.Errorf("same client, same key: %s != %s", a1, a2)
	}
	if a1 == b {
		t.Errorf("different clients hash alike: %s", a1)
	}
	other := [32]byte{1}
	if text(&other, "192.0.2.1") == a1 {
		t.Error("a different key gave the same hash")
	}

	if err := os.WriteFile(keyFile, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(keyFile); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("bad key file: error %v, want one naming %s", err, keyFile)
	}
}

// TestKeyFileRules: a missing key file is created whole or not at all (mode 0600, nothing else
// left in the folder); an empty one, which a crash while creating it used to leave behind and
// which no entry can have been hashed with, is replaced; one that group or others may access
// is refused with what to do.
func TestKeyFileRules(t *testing.T) {
	dir := t.TempDir()
	files := func() []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	mode := func(path string) os.FileMode {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	write := func(path, content string, perm os.FileMode) {
		if err := os.WriteFile(path, []byte(content), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}

	created := filepath.Join(dir, "new.key")
	k1, err := loadKey(created)
	if err != nil {
		t.Fatalf("creating a key: %v", err)
	}
	if m := mode(created); m != 0o600 {
		t.Errorf("created key has mode %04o, want 0600", m)
	}
	if got := files(); len(got) != 1 || got[0] != "new.key" {
		t.Errorf("after creating the key the folder holds %q, want only new.key", got)
	}
	if b, _ := os.ReadFile(created); len(bytes.TrimSpace(b)) != 64 {
		t.Errorf("created key %q: want 32 bytes as hex", b)
	}
	if k2, err := loadKey(created); err != nil || *k2 != *k1 {
		t.Errorf("reading the created key again: %v, same key %v", err, err == nil && *k2 == *k1)
	}

	for _, perm := range []os.FileMode{0o600, 0o644} {
		empty := filepath.Join(dir, fmt.Sprintf("empty-%04o.key", perm))
		write(empty, "", perm)
		if _, err := loadKey(empty); err != nil {
			t.Errorf("empty key file, mode %04o: %v; want a new key in its place", perm, err)
			continue
		}
		if b, _ := os.ReadFile(empty); len(bytes.TrimSpace(b)) != 64 {
			t.Errorf("empty key file, mode %04o, replaced by %q; want 32 bytes as hex", perm, b)
		}
		if m := mode(empty); m != 0o600 {
			t.Errorf("empty key file replaced with mode %04o, want 0600", m)
		}
	}

	hexKey := strings.Repeat("ab", 32) + "\n"
	for _, perm := range []os.FileMode{0o640, 0o604, 0o660, 0o606, 0o644, 0o610} {
		open := filepath.Join(dir, fmt.Sprintf("open-%04o.key", perm))
		write(open, hexKey, perm)
		_, err := loadKey(open)
		if err == nil {
			t.Errorf("key file with mode %04o accepted; want it refused", perm)
			continue
		}
		for _, want := range []string{open, fmt.Sprintf("%04o", perm), "chmod 600"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("key file with mode %04o: error %q does not contain %q", perm, err, want)
			}
		}
	}
	for _, perm := range []os.FileMode{0o600, 0o400} {
		private := filepath.Join(dir, fmt.Sprintf("private-%04o.key", perm))
		write(private, hexKey, perm)
		if _, err := loadKey(private); err != nil {
			t.Errorf("key file with mode %04o: %v", perm, err)
		}
	}
	if got := files(); slices.ContainsFunc(got, func(n string) bool { return strings.Contains(n, "tmp") }) {
		t.Errorf("temporary files left in the folder: %q", got)
	}
}

func TestIgnoreNamesAndClients(t *testing.T) {
	f := filter{
		ignoreNames:   plugin.OriginsFromArgsOrServerBlock([]string{"health.example.org"}, nil),
		ignoreClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	before := promtest.ToFloat64(ignoredTotal.WithLabelValues(""))
	for _, tc := range []struct {
		name, client string
		logged       bool
	}{
		{"health.example.org.", "192.0.2.1", false},
		{"a.b.HEALTH.example.org.", "192.0.2.1", false},
		{"nothealth.example.org.", "192.0.2.1", true},
		{"example.org.", "10.1.2.3", false},
		{"example.org.", "11.1.2.3", true},
	} {
		got := serveFrom(t, f, tc.name, tc.client)
		if (len(got) == 1) != tc.logged {
			t.Errorf("%s from %s: logged %v, want %v", tc.name, tc.client, len(got) == 1, tc.logged)
		}
	}
	if got := promtest.ToFloat64(ignoredTotal.WithLabelValues("")) - before; got != 3 {
		t.Errorf("ignored_total rose by %v, want 3", got)
	}
}
