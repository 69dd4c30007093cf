package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// startTimeout bounds how long CoreDNS may take to become ready.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long CoreDNS may take to exit after SIGTERM (querylog drains for
	// at most shutdown_timeout, 5 s by default) before it is killed.
	stopTimeout = 60 * time.Second
)

// corefile returns the Corefile of one run. The variants differ in the logging lines only.
func corefile(c *config, v variant, db string, dnsPort, metricsPort, readyPort, pprofPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".:%d {\n    bind 127.0.0.1\n", dnsPort)
	fmt.Fprintf(&b, "    prometheus 127.0.0.1:%d\n", metricsPort)
	fmt.Fprintf(&b, "    ready 127.0.0.1:%d\n", readyPort)
	if pprofPort > 0 {
		fmt.Fprintf(&b, "    pprof 127.0.0.1:%d\n", pprofPort)
	}
	switch {
	case v.Name == "none":
		b.WriteString("    # no query logging\n")
	case v.Name == "log":
		b.WriteString("    log\n")
	case v.Name == "dnstap":
		fmt.Fprintf(&b, "    dnstap unix://%s full\n", filepath.Join(filepath.Dir(db), "dnstap.sock"))
	case v.Querylog:
		querylogBlock(&b, db, v.Options)
	}
	if c.cache {
		b.WriteString("    cache 30\n")
	}
	// template checks its templates in order: the NXDOMAIN subzone first.
	fmt.Fprintf(&b, `    template ANY ANY %[1]s {
        rcode NXDOMAIN
    }
    template IN A %[2]s {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN AAAA %[2]s {
        answer "{{ .Name }} 60 IN AAAA 2001:db8::1"
    }
    template IN HTTPS %[2]s {
        answer "{{ .Name }} 60 IN HTTPS 1 . alpn=h2,h3"
    }
    template IN MX %[2]s {
        answer "{{ .Name }} 300 IN MX 10 mx.%[2]s"
    }
    template IN TXT %[2]s {
        answer "{{ .Name }} 300 IN TXT \"v=spf1 -all\""
    }
    template IN PTR 10.in-addr.arpa. {
        answer "{{ .Name }} 300 IN PTR host.%[2]s"
    }
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`, nxZone, zone)
	return b.String()
}

// querylogBlock writes the querylog line of the database db, with a block of the ';'-separated
// options if there are any.
func querylogBlock(b *strings.Builder, db, options string) {
	var opts []string
	for _, o := range strings.FieldsFunc(options, func(r rune) bool { return r == ';' || r == '\n' }) {
		if o = strings.TrimSpace(o); o != "" {
			opts = append(opts, o)
		}
	}
	if len(opts) == 0 {
		fmt.Fprintf(b, "    querylog %s\n", db)
		return
	}
	fmt.Fprintf(b, "    querylog %s {\n", db)
	for _, o := range opts {
		fmt.Fprintf(b, "        %s\n", o)
	}
	b.WriteString("    }\n")
}

// waitAnswers sends HINFO queries (as the loop plugin's probe, which no mix sends: the rows
// are counted apart) to the DNS port until one is answered. The ready plugin can say ready
// before the server listens: the listeners open only after every plugin's startup, and the
// kubernetes plugin reports its API synced up to 100 ms before its startup returns. dnsperf
// started then loses its first queries to the closed port (the kernel counts them in
// /proc/net/snmp's Udp NoPorts) and waits 5 s for each: a round of either variant lost up to
// all 100 outstanding so, which says nothing of the variant.
func waitAnswers(ctx context.Context, addr string, exited <-chan struct{}) error {
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("ready-probe.bench.test.", dns.TypeHINFO)
	// A closed port refuses at once: 10 ms between tries.
	return pollStartup(ctx, exited, 10*time.Millisecond, "did not answer on "+addr, func() bool {
		_, _, err := c.ExchangeContext(ctx, m, addr)
		return err == nil
	})
}

// waitReady polls the ready plugin (which waits for querylog's database) and the metrics
// endpoint (waitAnswers then tries the DNS port itself).
func waitReady(ctx context.Context, readyURL, metricsURL string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	return pollStartup(ctx, exited, 100*time.Millisecond, "not ready", func() bool {
		for _, u := range []string{readyURL, metricsURL} {
			resp, err := client.Get(u)
			if err != nil {
				return false
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
}

// pollStartup calls ok every interval until it returns true, CoreDNS exits, ctx ends or
// startTimeout passes ("CoreDNS <what> within ...").
func pollStartup(ctx context.Context, exited <-chan struct{}, interval time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for !ok() {
		select {
		case <-exited:
			return errors.New("CoreDNS exited during startup")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CoreDNS %s within %s", what, startTimeout)
		}
	}
	return nil
}

func fetch(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "CoreDNS output (last lines):\n  " + strings.Join(lines, "\n  ")
}
