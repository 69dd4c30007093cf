package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// oddNames are database file names with characters that mean something in a SQLite URI ('%',
// '?', '#'), in a query string ('&', '=', '+', ';'), in a shell (spaces), or outside ASCII.
var oddNames = []string{
	"q%41.db",
	"q%00.db",
	"with space.db",
	" lead and trail .db",
	"hash#1.db",
	"what?.db",
	"a&b=c+d;e.db",
	"ünïcødé-日本.db",
	"%2Fslash.db",
}

// TestOddPaths serves one zone per odd database name, each logging to its file in one folder.
// Each database must be exactly the file named (nothing else appears in the folder but its
// -wal and -shm), all three with mode 0640, and hold exactly the queries of its zone.
func TestOddPaths(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	var b strings.Builder
	fmt.Fprintf(&b, `.:%d {
    bind 127.0.0.1
    prometheus 127.0.0.1:%d
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}
`, s.port, s.mport)
	paths := make([]string, len(oddNames))
	for i, name := range oddNames {
		paths[i] = filepath.Join(s.dir, name)
		fmt.Fprintf(&b, `z%d.example.net.:%d {
    bind 127.0.0.1
    querylog "%s" {
        flush_interval 100ms
        adaptive off
    }
    template IN A z%d.example.net {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}
`, i, s.port, paths[i], i)
	}
	s.write(b.String())
	s.start()

	const perZone = 5
	c := &dns.Client{Timeout: 2 * time.Second}
	for i := range oddNames {
		for j := range perZone {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("n%d.z%d.example.net.", j, i), dns.TypeA)
			if r, _, err := c.Exchange(m, s.dns); err != nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("query %s: %v %v", m.Question[0].Name, r, err)
			}
		}
	}
	s.waitMetric("every zone's queries to be written", 15*time.Second, func(m testutil.Metrics) bool {
		for _, p := range paths {
			if m.Get(p, "written_total") < perZone {
				return false
			}
		}
		return true
	})

	// While it runs: the folder holds the Corefile and, per name, the database, -wal and -shm.
	want := []string{"Corefile"}
	for _, name := range oddNames {
		want = append(want, name, name+"-wal", name+"-shm")
	}
	slices.Sort(want)
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("the folder holds\n%q\nwant\n%q", got, want)
	}
	for _, p := range paths {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if fi, err := os.Stat(p + suffix); err != nil {
				t.Errorf("%v", err)
			} else if m := fi.Mode().Perm(); m != 0o640 {
				t.Errorf("%q has mode %04o, want 0640", p+suffix, m)
			}
		}
	}
	s.stop()

	for i, p := range paths {
		names := testutil.Names(t, p)
		for j := range perZone {
			if n := fmt.Sprintf("n%d.z%d.example.net.", j, i); names[n] != 1 {
				t.Errorf("%q: %s has %d rows, want 1", p, n, names[n])
			}
		}
		if len(names) != perZone {
			t.Errorf("%q holds %d names, want %d: %v", p, len(names), perZone, names)
		}
	}
	s.checkLog("[ERROR]", "readable by every user")
}
