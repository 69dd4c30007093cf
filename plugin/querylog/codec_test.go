package querylog

import (
	"database/sql"
	"fmt"
	"math"
	"testing"

	"github.com/miekg/dns"

	"github.com/querylog/querylog/internal/logrow"
)

// richRow is a row of the queries view with the fields schema 2 added.
type richRow struct {
	ts                             int64
	qtype, qclass, rcode           int64
	aa, tc, rd, ra, ad, cd, do     int64
	plugin, upstream               sql.NullString
	ede                            sql.NullInt64
	metadata, answers, flags, time sql.NullString
	namespace, pod, cache          sql.NullString
}

func readRich(t *testing.T, db *sql.DB) []richRow {
	t.Helper()
	rows, err := db.Query(`SELECT q.ts, q.qtype, q.qclass, q.rcode, q.aa, q.tc, q.rd, q.ra, q.ad, q.cd, q."do",
		q.plugin, q.upstream, q.ede, q.metadata, q.answer_data, r.flags, r.time, r.namespace, r.pod, r.cache
		FROM queries q JOIN queries_readable r USING (id) ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []richRow
	for rows.Next() {
		var r richRow
		if err := rows.Scan(&r.ts, &r.qtype, &r.qclass, &r.rcode, &r.aa, &r.tc, &r.rd, &r.ra, &r.ad, &r.cd, &r.do,
			&r.plugin, &r.upstream, &r.ede, &r.metadata, &r.answers, &r.flags, &r.time,
			&r.namespace, &r.pod, &r.cache); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCodecRoundTrip writes entries whose packed fields take every position of their bits and
// reads them back through the views.
func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	l := &testLabels
	up := l.id(labelUpstream, "192.0.2.53:53")
	const ms = 1700000000000
	mk := func(i int, f flags, qtype, qclass, rcode, ede uint16, plugin string, upstream uint16) entry {
		e := entryOf(l, queryRow{ts: ms + int64(i), server: "dns://:53", client: "192.0.2.1", qname: "x.example.", qtype: int64(qtype), qclass: int64(qclass), rcode: int64(rcode)})
		e.flags |= f
		e.ede = ede
		e.plugin = uint8(l.id(labelPlugin, plugin))
		e.upstream = upstream
		return e
	}
	var batch []entry
	var want []richRow
	add := func(e entry, w richRow) {
		batch = append(batch, e)
		w.ts = e.start / 1e6
		want = append(want, w)
	}
	for i, f := range []flags{flagAA, flagTC, flagRD, flagRA, flagAD, flagCD, flagDO} {
		bit := func(g flags) int64 {
			if f == g {
				return 1
			}
			return 0
		}
		names := []string{"aa", "tc", "rd", "ra", "ad", "cd", ""}
		add(mk(i, f, dns.TypeA, dns.ClassINET, 0, 0, "cache", 0), richRow{qtype: 1, qclass: 1,
			aa: bit(flagAA), tc: bit(flagTC), rd: bit(flagRD), ra: bit(flagRA), ad: bit(flagAD), cd: bit(flagCD), do: bit(flagDO),
			plugin: sql.NullString{String: "cache", Valid: true}, flags: sql.NullString{String: names[i], Valid: true}})
	}
	all := flagAA | flagTC | flagRD | flagRA | flagAD | flagCD | flagDO
	add(mk(10, all, math.MaxUint16, math.MaxUint16, 4095, math.MaxUint16, "forward", up), richRow{qtype: 65535, qclass: 65535, rcode: 4095,
		aa: 1, tc: 1, rd: 1, ra: 1, ad: 1, cd: 1, do: 1, plugin: sql.NullString{String: "forward", Valid: true},
		upstream: sql.NullString{String: "192.0.2.53:53", Valid: true}, ede: sql.NullInt64{Int64: 65534, Valid: true},
		flags: sql.NullString{String: "aa tc rd ra ad cd", Valid: true}})
	add(mk(11, 0, dns.TypeTXT, dns.ClassCHAOS, dns.RcodeBadCookie, 1+15, "", 0), richRow{qtype: 16, qclass: 3, rcode: 23,
		ede: sql.NullInt64{Int64: 15, Valid: true}, flags: sql.NullString{Valid: true}})
	add(mk(12, 0, dns.TypeA, 0, 0, 1+0, "", 0), richRow{qtype: 1, qclass: 0, ede: sql.NullInt64{Int64: 0, Valid: true}, flags: sql.NullString{Valid: true}})
	// Late entries: one that arrived before the others of its batch, one a day before.
	add(mk(-500, 0, dns.TypeA, dns.ClassINET, 0, 0, "", 0), richRow{qtype: 1, qclass: 1, flags: sql.NullString{Valid: true}})
	add(mk(-86_400_000, 0, dns.TypeA, dns.ClassINET, 0, 0, "", 0), richRow{qtype: 1, qclass: 1, flags: sql.NullString{Valid: true}})
	// A cache hit and a miss: the pod and cache columns are added with the first.
	hit, miss := mk(14, 0, dns.TypeA, dns.ClassINET, 0, 0, "cache", 0), mk(15, 0, dns.TypeA, dns.ClassINET, 0, 0, "kubernetes", 0)
	hit.cache, miss.cache = cacheHit, cacheMiss
	add(hit, richRow{qtype: 1, qclass: 1, plugin: sql.NullString{String: "cache", Valid: true}, flags: sql.NullString{Valid: true},
		cache: sql.NullString{String: "hit", Valid: true}})
	add(miss, richRow{qtype: 1, qclass: 1, plugin: sql.NullString{String: "kubernetes", Valid: true}, flags: sql.NullString{Valid: true},
		cache: sql.NullString{String: "miss", Valid: true}})
	// With the opt-in fields, which add their columns on first use; the namespace and pod have
	// their own columns, not the metadata column.
	x := mk(13, 0, dns.TypeA, dns.ClassINET, 0, 0, "template", 0)
	x.extra = &extra{metadataLabels: []string{"geoip/country/code", "unset/label"},
		metadata: []string{"DE", ""}, answers: "192.0.2.1 2001:db8::1 alias.example.", namespace: "default", pod: "web-1"}
	add(x, richRow{qtype: 1, qclass: 1, plugin: sql.NullString{String: "template", Valid: true}, flags: sql.NullString{Valid: true},
		metadata:  sql.NullString{String: `{"geoip/country/code":"DE"}`, Valid: true},
		answers:   sql.NullString{String: "192.0.2.1 2001:db8::1 alias.example.", Valid: true},
		namespace: sql.NullString{String: "default", Valid: true}, pod: sql.NullString{String: "web-1", Valid: true}})

	if err := s.write(batch[:len(batch)-1]); err != nil {
		t.Fatal(err)
	}
	if err := s.write(batch[len(batch)-1:]); err != nil {
		t.Fatal(err)
	}
	got := readRich(t, s.db)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		want[i].time = got[i].time // checked below
		if got[i] != want[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	var tm string
	if err := s.db.QueryRow(`SELECT time FROM queries_readable ORDER BY id LIMIT 1`).Scan(&tm); err != nil || tm != "2023-11-14T22:13:20.000Z" {
		t.Errorf("time %q (%v), want 2023-11-14T22:13:20.000Z", tm, err)
	}
	// Readers that decode rows in Go (the shipper, the querylog command) read what the views do.
	raw, err := s.db.Query(`SELECT id, late, a, b, c FROM log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for i := 0; raw.Next(); i++ {
		var id, late, a, b, c int64
		if err := raw.Scan(&id, &late, &a, &b, &c); err != nil {
			t.Fatal(err)
		}
		f, w := logrow.Decode(id, late, a, b, c), want[i]
		flags := w.aa*logrow.FlagAA | w.tc*logrow.FlagTC | w.rd*logrow.FlagRD | w.ra*logrow.FlagRA |
			w.ad*logrow.FlagAD | w.cd*logrow.FlagCD | w.do*logrow.FlagDO
		var ede sql.NullInt64
		if f.EDE >= 0 {
			ede = sql.NullInt64{Int64: f.EDE, Valid: true}
		}
		if f.TS != w.ts || f.Qtype != w.qtype || f.Qclass != w.qclass || f.Rcode != w.rcode || f.Flags != flags || ede != w.ede {
			t.Errorf("row %d decoded as %+v, want %+v", i, f, w)
		}
	}
	// Every id tells the earliest its row can have arrived (time windows rely on it).
	var early int
	if err := s.db.QueryRow(`SELECT count(*) FROM log WHERE late < 0`).Scan(&early); err != nil || early != 0 {
		t.Errorf("%d rows with an id before their arrival (%v)", early, err)
	}
}

// TestRowIDs checks the id scheme: ids grow, the first of a batch is the batch's newest arrival
// shifted by 8 unless that would not grow, and SQLite numbers the rest after it.
func TestRowIDs(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	at := func(ms ...int64) []entry {
		var out []entry
		for _, m := range ms {
			out = append(out, entryOf(&testLabels, queryRow{ts: m, qname: "a."}))
		}
		return out
	}
	for _, b := range [][]entry{at(1000, 1001, 999), at(5000), at(4000, 4500) /* the clock went back */, at(6000)} {
		if err := s.write(b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.db.Query(`SELECT id, ts FROM queries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, ts int64
		if err := rows.Scan(&id, &ts); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d+%d:%d", id>>8, id&255, ts))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := "[1001+0:1000 1001+1:1001 1001+2:999 5000+0:5000 5000+1:4000 5000+2:4500 6000+0:6000]"
	if fmt.Sprint(got) != want {
		t.Errorf("ids (ms+n:ts) %v, want %s", got, want)
	}
}

// TestBoxCache checks that the boxes handed out for columns a and b hold the value asked for,
// also when values share a slot or come back after another took it, and that a repeated value
// costs no allocation.
func TestBoxCache(t *testing.T) {
	var c boxCache
	vals := []int64{0, 1, 1 << 40, -1, 300, 1 << 40, 0, 300, math.MaxInt64, math.MinInt64}
	for i := range 5000 {
		vals = append(vals, int64(i)*7919<<20, int64(i%300)<<23)
	}
	for _, v := range vals {
		if got := c.box(v); got != any(v) {
			t.Fatalf("box(%d) = %v", v, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.box(1 << 40) }); n != 0 {
		t.Errorf("a repeated value allocates %v times, want 0", n)
	}
}
