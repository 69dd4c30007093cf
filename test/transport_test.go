package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/querylog/querylog/internal/testutil"
)

// TestTransports sends queries over UDP, TCP, DNS over TLS and DNS over HTTPS with a real
// client (kdig, from knot-dnsutils) and checks the transport and listener recorded for each.
func TestTransports(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("kdig"); err != nil {
		t.Skip("kdig not installed (apt-get install knot-dnsutils)")
	}
	s := newServer(t)
	cert, key := testutil.LoopbackCert(t, s.dir)
	ports := testutil.Ports(t, 2)
	dot, doh := ports[0], ports[1]
	block := func(key string, extra string) string {
		return fmt.Sprintf(`%s {
    bind 127.0.0.1
    %s
    querylog %s
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}
`, key, extra, s.db)
	}
	tls := fmt.Sprintf("tls %s %s", cert, key)
	s.write(s.config("", "", "192.0.2.1") + block(fmt.Sprintf("tls://.:%d", dot), tls) + block(fmt.Sprintf("https://.:%d", doh), tls))
	s.start()

	queries := []struct {
		proto, server string
		args          []string
	}{
		{"udp", fmt.Sprintf("dns://127.0.0.1:%d", s.port), []string{"-p", fmt.Sprint(s.port)}},
		{"tcp", fmt.Sprintf("dns://127.0.0.1:%d", s.port), []string{"-p", fmt.Sprint(s.port), "+tcp"}},
		{"dot", fmt.Sprintf("tls://127.0.0.1:%d", dot), []string{"-p", fmt.Sprint(dot), "+tls"}},
		{"doh", fmt.Sprintf("https://127.0.0.1:%d", doh), []string{"-p", fmt.Sprint(doh), "+https"}},
	}
	for _, q := range queries {
		for i := range 3 {
			name := fmt.Sprintf("%s%d.example.org.", q.proto, i)
			out, err := exec.Command("kdig", append([]string{"@127.0.0.1", name, "A", "+timeout=5"}, q.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "NOERROR") || !strings.Contains(string(out), "192.0.2.1") {
				t.Fatalf("kdig %v for %s: %v\n%s", q.args, name, err, out)
			}
		}
	}
	s.stop()
	for _, q := range queries {
		got := testutil.SQLite3(t, s.db, fmt.Sprintf(`SELECT count(*), group_concat(DISTINCT proto), group_concat(DISTINCT server)
			FROM queries WHERE qname LIKE '%s_.example.org.'`, q.proto))
		if want := fmt.Sprintf("3|%s|%s", q.proto, q.server); got != want {
			t.Errorf("%s queries are logged as %s (rows|proto|server), want %s", q.proto, got, want)
		}
	}
	s.checkLog("[ERROR]")
}
