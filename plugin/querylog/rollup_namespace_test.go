package querylog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/testutil"
)

// namespaceRow is a row of a query of name from client, pod p-CLIENT of namespace ("": none).
func namespaceRow(ms int64, client, namespace, name string, qtype uint16, rcode, answers int64) entry {
	e := entryOf(&testLabels, queryRow{ts: ms, server: "dns://:53", client: client, proto: "udp", qname: name,
		qtype: int64(qtype), qclass: 1, rcode: rcode, answers: answers, us: 700})
	e.extra = &extra{namespace: namespace, pod: "p-" + client}
	return e
}

// writeDue writes es as one batch, with the rollups' counts.
func writeDue(t *testing.T, s *store, es ...entry) {
	t.Helper()
	s.state.rollups.flushed = s.state.rollups.flushed.Add(-rollupEvery) // due with this batch
	if err := s.write(es); err != nil {
		t.Fatal(err)
	}
}

// TestRollupsNamespaceDetail: within each namespace, a period keeps limit names, clients and
// pods (with their cache hits and misses) and folds the rest into (other); a name's counts say
// how many were A and AAAA and answered; an
// hour keeps the limit names of each namespace with the most queries, and once summed its
// minutes go, a late row adding to the hour; and every namespace's names and clients add up to
// its queries in rollup_namespaces.
func TestRollupsNamespaceDetail(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := rollupStore(t, path, 2)
	const hour = 1_700_000_000 / 3600 * 3600 * 1000 // ms, an hour's start
	row := namespaceRow
	write := func(es ...entry) { t.Helper(); writeDue(t, s, es...) }
	hit := func(e entry) entry {
		e.cache = cacheHit
		return e
	}
	// Namespace a: api. asked through its search list (an NXDOMAIN expansion, then the name as is,
	// A and AAAA, AAAA without answers), then a third name and client past the limit.
	write(
		row(hour, "10.0.0.1", "a", "api.a.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0),
		row(hour, "10.0.0.1", "a", "api.a.svc.cluster.local.", dns.TypeAAAA, dns.RcodeNameError, 0),
		hit(row(hour+1, "10.0.0.1", "a", "api.", dns.TypeA, dns.RcodeSuccess, 1)),
		row(hour+1, "10.0.0.1", "a", "api.", dns.TypeAAAA, dns.RcodeSuccess, 0),
		row(hour+2, "10.0.0.2", "a", "api.", dns.TypeMX, dns.RcodeSuccess, 1),
		row(hour+3, "10.0.0.3", "a", "third.", dns.TypeA, dns.RcodeSuccess, 1),
		row(hour+4, "10.0.0.4", "b", "third.", dns.TypeA, dns.RcodeSuccess, 1),
	)
	// The next minute: third. is asked more than the expansion in a, so the hour keeps it instead.
	write(
		row(hour+60_000, "10.0.0.3", "a", "third.", dns.TypeA, dns.RcodeSuccess, 1),
		row(hour+60_001, "10.0.0.3", "a", "third.", dns.TypeA, dns.RcodeSuccess, 1),
		row(hour+60_002, "10.0.0.3", "a", "third.", dns.TypeA, dns.RcodeSuccess, 1),
	)
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	names := func(span int64) string {
		return testutil.SQLite3(t, path, `SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || name || ':' || rcode || '=' || n || ':' || a || ':' || aaaa || ':' || answered AS x
			FROM rollup_namespace_names WHERE span = `+fmt.Sprint(span)+` AND start < `+fmt.Sprint(hour/1000+3600)+` ORDER BY 1)`)
	}
	clients := func(span int64) string {
		return testutil.SQLite3(t, path, `SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || client || '=' || n AS x
			FROM rollup_namespace_clients WHERE span = `+fmt.Sprint(span)+` AND start = `+fmt.Sprint(hour/1000)+` ORDER BY 1)`)
	}
	// pod=n:hits:misses
	pods := func(span int64) string {
		return testutil.SQLite3(t, path, `SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || pod || '=' || n || ':' || hits || ':' || misses AS x
			FROM rollup_namespace_pods WHERE span = `+fmt.Sprint(span)+` AND start = `+fmt.Sprint(hour/1000)+` ORDER BY 1)`)
	}
	// name:rcode=n:a:aaaa:answered
	if got, want := names(60), "a/(other):0=1:1:0:1 a/api.:0=3:1:1:1 a/api.a.svc.cluster.local.:3=2:1:1:0 a/third.:0=3:3:0:3 b/third.:0=1:1:0:1"; got != want {
		t.Errorf("the minutes' names:\n got %s\nwant %s", got, want)
	}
	if got, want := clients(60), "a/(other)=1 a/10.0.0.1=4 a/10.0.0.2=1 b/10.0.0.4=1"; got != want {
		t.Errorf("the first minute's clients:\n got %s\nwant %s", got, want)
	}
	if got, want := pods(60), "a/(other)=1:0:0 a/p-10.0.0.1=4:1:0 a/p-10.0.0.2=1:0:0 b/p-10.0.0.4=1:0:0"; got != want {
		t.Errorf("the first minute's pods:\n got %s\nwant %s", got, want)
	}

	// Once the hour is over it is summed, and its minutes go.
	write(row(hour+2*3600_000, "10.0.0.9", "b", "late.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	hourNames := "a/(other):0=1:1:0:1 a/(other):3=2:1:1:0 a/api.:0=3:1:1:1 a/third.:0=3:3:0:3 b/third.:0=1:1:0:1"
	if got := names(3600); got != hourNames {
		t.Errorf("the hour's names:\n got %s\nwant %s", got, hourNames)
	}
	if got, want := clients(3600), "a/(other)=2 a/10.0.0.1=4 a/10.0.0.3=3 b/10.0.0.4=1"; got != want {
		t.Errorf("the hour's clients:\n got %s\nwant %s", got, want)
	}
	if got, want := pods(3600), "a/(other)=2:0:0 a/p-10.0.0.1=4:1:0 a/p-10.0.0.3=3:0:0 b/p-10.0.0.4=1:0:0"; got != want {
		t.Errorf("the hour's pods:\n got %s\nwant %s", got, want)
	}
	if got := names(60) + clients(60) + pods(60); got != "" {
		t.Errorf("minutes of the summed hour: %q, want none", got)
	}
	// A late row of the hour adds to it.
	write(row(hour+5, "10.0.0.1", "a", "api.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	if got, want := names(3600), strings.Replace(hourNames, "a/api.:0=3:1:1:1", "a/api.:0=4:2:1:2", 1); got != want {
		t.Errorf("the hour's names after a late row:\n got %s\nwant %s", got, want)
	}
	if got := names(60) + clients(60); got != "" {
		t.Errorf("minutes of the summed hour after a late row: %q, want none", got)
	}
	if got, want := pods(3600), "a/(other)=2:0:0 a/p-10.0.0.1=5:1:0 a/p-10.0.0.3=3:0:0 b/p-10.0.0.4=1:0:0"; got != want {
		t.Errorf("the hour's pods after a late row:\n got %s\nwant %s", got, want)
	}
	// The day's last hour (the row two hours after the first is of the next day): a client of a
	// asks more than any of the first hour's.
	for i := range int64(6) {
		write(row(hour+3600_000+i, "10.0.0.5", "a", "api.", dns.TypeA, dns.RcodeSuccess, 1))
	}
	// A row of no namespace the next day, past its first hour, ends the day: it is summed from
	// its two hours, each namespace keeping the limit clients and pods with the most queries of
	// the day and folding the others, with the hours' (other), into its (other).
	const day = hour / 86_400_000 * 86400 // s
	write(row((day+86400+2*3600)*1000, "10.0.0.8", "", "next.", dns.TypeA, dns.RcodeSuccess, 1))
	if err := s.flushRollups(); err != nil {
		t.Fatal(err)
	}
	ofDay := func(key, table, counts string) string {
		return testutil.SQLite3(t, path, `SELECT group_concat(x, ' ') FROM (SELECT namespace || '/' || `+key+` || '=' || `+counts+` AS x
			FROM `+table+` WHERE span = 86400 AND start = `+fmt.Sprint(day)+` ORDER BY 1)`)
	}
	if got, want := ofDay("client", "rollup_namespace_clients", "n"), "a/(other)=5 a/10.0.0.1=5 a/10.0.0.5=6 b/10.0.0.4=1"; got != want {
		t.Errorf("the day's clients:\n got %s\nwant %s", got, want)
	}
	if got, want := ofDay("pod", "rollup_namespace_pods", "n || ':' || hits || ':' || misses"),
		"a/(other)=5:0:0 a/p-10.0.0.1=5:1:0 a/p-10.0.0.5=6:0:0 b/p-10.0.0.4=1:0:0"; got != want {
		t.Errorf("the day's pods:\n got %s\nwant %s", got, want)
	}
	for _, table := range []string{"rollup_namespace_names", "rollup_namespace_clients", "rollup_namespace_pods"} {
		got := testutil.SQLite3(t, path, `SELECT count(*) FROM (SELECT span, start, namespace, sum(n) AS n FROM `+table+` GROUP BY 1, 2, 3) d
			JOIN rollup_namespaces r USING (span, start, namespace) WHERE d.n <> r.n`)
		if got != "0" {
			t.Errorf("%s: %s periods of a namespace whose counts differ from rollup_namespaces", table, got)
		}
	}
}
