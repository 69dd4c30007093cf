package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/querylog/querylog/internal/testutil"
)

// TestShipHostileClickHouse ships to fake ClickHouse servers: one answers the handshake with a
// string length of 2^62 (which made the old client panic), one with 2^46 (which made it
// allocate until the process died), one with an exception whose text would forge a log line and
// drive a terminal. CoreDNS answers throughout, every answer is a row, the failures are counted
// and logged escaped, and nothing panics.
func TestShipHostileClickHouse(t *testing.T) {
	t.Parallel()
	forged := "denied\n[INFO] plugin/querylog: all rows shipped OK\x1b[2J"
	cases := []struct {
		reply []byte
		log   string
	}{
		{testutil.ClickHouseHugeHello(1 << 62), "string length 4611686018427387904 is over the limit of 1048576"},
		{testutil.ClickHouseHugeHello(1 << 46), "string length 70368744177664 is over the limit of 1048576"},
		{testutil.ClickHouseException(516, forged), `ClickHouse exception 516: denied\n[INFO] plugin/querylog: all rows shipped OK\x1b[2J`},
	}
	var servers []*server
	var loads []*testutil.Load
	for i, c := range cases {
		fake := testutil.StartFakeClickHouse(t, func(int) []byte { return c.reply })
		s := shipServerTo(t, fake.Addr+"/default", fmt.Sprintf("hostile%d", i), "")
		s.start()
		servers, loads = append(servers, s), append(loads, testutil.StartLoad(t, "udp", s.dns, "h", 1, 1000, time.Millisecond))
	}
	for i, s := range servers {
		s.waitLog(cases[i].log, 1, 2*time.Minute)
		s.waitMetric("failed attempts", 2*time.Minute, func(m testutil.Metrics) bool { return m.Get(s.db, "ship_errors_total") >= 3 })
		loads[i].Wait()
		answered, failed := loads[i].Results()
		if len(failed) > 0 {
			t.Errorf("%s: %d queries unanswered while shipping to a hostile server, e.g. %s", s.db, len(failed), failed[0])
		}
		m := s.waitMetric("every answer written", time.Minute, func(m testutil.Metrics) bool {
			return m.Get(s.db, "buffer_size") == 0 && m.Get(s.db, "written_total") >= float64(len(answered))
		})
		if n := testutil.CountRows(t, s.db, ""); n < int64(len(answered)) {
			t.Errorf("%s: %d rows for %d answers", s.db, n, len(answered))
		}
		if p := m.Get(s.db, "panics_total"); p != 0 {
			t.Errorf("%s: panics_total %v: a hostile reply should be an error, not a panic", s.db, p)
		}
		if m.Get(s.db, "shipped_total") != 0 {
			t.Errorf("%s: shipped_total %v to a fake server", s.db, m.Get(s.db, "shipped_total"))
		}
		for _, line := range strings.Split(s.out.String(), "\n") {
			if strings.HasPrefix(line, "[INFO] plugin/querylog: all rows") || strings.ContainsRune(line, '\x1b') {
				t.Errorf("a forged or raw line in the log: %q", line)
			}
		}
		s.stop()
		s.checkLog("panic:", "goroutine ")
	}
}

// TestShipTLS ships over TLS to the real clickhouse-server's secure port (18.16, TLS 1.3, a
// certificate the test makes): with ship_ca naming the right CA every row arrives; with another
// CA nothing is sent, and the failure is logged naming the host and counted.
func TestShipTLS(t *testing.T) {
	t.Parallel()
	ch := testutil.StartClickHouseTLS(t)
	url := ch.SecureAddr + "/default?secure=true"
	good := shipServerTo(t, url, "tls-good", "ship_ca "+ch.CAFile)
	bad := shipServerTo(t, url, "tls-bad", "ship_ca "+wrongCA(t))
	for _, s := range []*server{good, bad} {
		s.start()
		testutil.StartLoad(t, "udp", s.dns, "tls", 1, 300, time.Millisecond).Wait()
	}
	good.waitShipped(2 * time.Minute)
	if n := checkShipped(t, ch, "tls-good", good.db); n < 300 {
		t.Errorf("%d rows shipped over TLS, want at least the 300 answered", n)
	}
	bad.waitMetric("failed attempts", time.Minute, func(m testutil.Metrics) bool { return m.Get(bad.db, "ship_errors_total") >= 2 })
	bad.waitLog("tls: failed to verify certificate", 1, time.Minute)
	host := strings.Split(ch.SecureAddr, ":")[0]
	if !regexpMatch(`Shipping .* failed .*`+host+`:\d+: tls: failed to verify certificate: x509: certificate signed by unknown authority`, bad.out.String()) {
		t.Errorf("the error does not name the host and the cause:\n%s", bad.out)
	}
	if n := ch.Uint64(t, "SELECT count() FROM querylog WHERE node = 'tls-bad'"); n != 0 {
		t.Errorf("%d rows arrived through a server the CA did not sign", n)
	}
	if m := bad.mustScrape(); m.Get(bad.db, "shipped_total") != 0 {
		t.Errorf("shipped_total %v with the wrong CA", m.Get(bad.db, "shipped_total"))
	}
	good.stop()
	bad.stop()
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// wrongCA writes a certificate that did not sign the server's.
func wrongCA(t *testing.T) string {
	t.Helper()
	cert, _, err := testutil.LoopbackCertPEM()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "wrong-ca.pem")
	if err := os.WriteFile(f, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}
