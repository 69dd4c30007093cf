package querylog

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
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
	sink := &memSink{}
	q := &QueryLog{filter: f, sink: sink, Next: replyWith(dns.RcodeSuccess, 0, nil)}
	w := &test.ResponseWriter{RemoteIP: client}
	if _, err := q.ServeDNS(context.Background(), dnstest.NewRecorder(w), query(name, dns.TypeA, dns.ClassINET)); err != nil {
		t.Fatal(err)
	}
	return sink.got()
}

func TestAnonymizeTruncates(t *testing.T) {
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
