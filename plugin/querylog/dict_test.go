package querylog

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/querylog/querylog/internal/testutil"
)

// A text is stored in its row the first time, added to the dictionary the second (with that
// row's id, in the names dictionary), and found there afterwards; the cache never holds more
// than dictLimit texts.
func TestDictRefs(t *testing.T) {
	t.Parallel()
	d := newDict[string](1)
	d.firsts = true
	text := func(s string) func() string { return func() string { return s } }
	for i, want := range []any{"a.", int64(1), int64(1)} {
		if got, txt, _ := d.ref("a.", text("a."), int64(100+i)); got != want || txt != "a." {
			t.Errorf("sighting %d stored as %v (text %q), want %v (a.)", i+1, got, txt, want)
		}
	}
	if fmt.Sprint(d.pending) != "[1 a. 101]" || d.hits != 1 || d.added != 1 || d.inline != 1 {
		t.Errorf("pending %v, hits %d, added %d, inline %d; want [1 a. 101], 1, 1, 1", d.pending, d.hits, d.added, d.inline)
	}
	for i := range 3 * dictLimit {
		name := fmt.Sprintf("n%d.", i)
		d.ref(name, text(name), 0)
		d.ref(name, text(name), 0)
		if n := len(d.ids) + len(d.older); n > dictLimit {
			t.Fatalf("the cache holds %d numbers, more than %d", n, dictLimit)
		}
	}
}

// The set of texts seen once keeps two per bucket, and a third takes the older one's place.
func TestSeenSetBuckets(t *testing.T) {
	t.Parallel()
	var s seenSet
	s.reset()
	a, b, c := uint64(7), uint64(7+seenBuckets), uint64(7+2*seenBuckets) // one bucket
	for _, h := range []uint64{a, b} {
		if s.sighted(h) {
			t.Fatalf("hash %d sighted before it was seen", h)
		}
	}
	if !s.sighted(a) || !s.sighted(b) {
		t.Fatal("a bucket forgot one of its two hashes")
	}
	if s.sighted(c) || s.sighted(a) {
		t.Error("a third hash did not take the place of the older one")
	}
	if !s.sighted(c) {
		t.Error("the third hash was not remembered")
	}
	s.reset()
	if s.sighted(c) {
		t.Error("reset kept a hash")
	}
}

// Names repeat across batches and the cache is emptied in between (as after a failed batch, or
// at a new epoch): every row still reads back its own name.
func TestDictAcrossBatches(t *testing.T) {
	s := testStore(t, tempDB(t))
	lookups := func(result string) float64 {
		return promtest.ToFloat64(dictionaryLookups.WithLabelValues(s.path, "names", result))
	}
	var want []string
	for round := range 4 {
		var batch []entry
		for i := range 300 {
			name := fmt.Sprintf("n%d.example.", i%100)
			batch = append(batch, entryOf(&testLabels, queryRow{ts: int64(round*1000 + i), qname: name, client: "192.0.2.1"}))
			want = append(want, name)
		}
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
		if round == 1 {
			s.state.forget()
		}
		if round == 2 {
			s.state.startEpoch()
		}
	}
	rows, err := s.db.Query(`SELECT qname FROM queries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var name string
		rows.Scan(&name)
		if i < len(want) && name != want[i] {
			t.Fatalf("row %d is %q, want %q", i, name, want[i])
		}
	}
	if i != len(want) {
		t.Errorf("%d rows, want %d", i, len(want))
	}
	// Each round after an empty cache stores 100 names inline, then numbers them: rounds 0 and
	// 3 (a new epoch) add them, round 2 finds the numbers round 0 gave in the names table. The
	// others are hits.
	if in, add, found, hit := lookups("inline"), lookups("added"), lookups("found"), lookups("hit"); in != 300 || add != 200 || found != 100 || hit != 600 {
		t.Errorf("lookups: inline %v, added %v, found %v, hit %v; want 300, 200, 100, 600", in, add, found, hit)
	}
}

// A name that left the writer's cache keeps its number when it comes back, within the epoch:
// the names table has one entry per name and epoch, however often the cache forgets it. A file
// whose index of names was dropped is not searched (each lookup would read the whole table):
// the name is numbered again, as before the writer looked, and the writer says why at open.
func TestNameKeepsItsNumber(t *testing.T) {
	for _, indexed := range []bool{true, false} {
		t.Run(fmt.Sprintf("names_name=%v", indexed), func(t *testing.T) {
			path := tempDB(t)
			s := testStore(t, path)
			var logs *testutil.LogBuffer
			if !indexed {
				if _, err := s.db.Exec(`DROP INDEX names_name`); err != nil {
					t.Fatal(err)
				}
				s.close()
				logs = testutil.CaptureLog(t)
				s = testStore(t, path)
			}
			ms := time.Now().UnixMilli()
			write := func(names ...string) {
				var batch []entry
				for _, n := range names {
					batch = append(batch, entryOf(&testLabels, queryRow{ts: ms, qname: n, client: "192.0.2.1"}))
				}
				if err := s.write(batch); err != nil {
					t.Fatal(err)
				}
			}
			forgetCache := func() { // as when enough other names pass through it: the set of names seen once remembers
				d := s.state.names
				d.ids, d.older = map[string]*dictEntry{}, map[string]*dictEntry{}
				d.turn++
			}
			numbers := func() []int64 {
				return testutil.Column[int64](t, s.db, `SELECT name FROM log WHERE typeof(name) = 'integer' ORDER BY id`)
			}
			write("x.example.", "x.example.", "y.example.") // x: its text, then a number; y: its text
			forgetCache()
			write("x.example.", "y.example.") // x: its number from the table; y: numbered now
			forgetCache()
			write("x.example.", "y.example.")
			got := numbers()
			kept := len(got) == 5 && got[1] == got[0] && got[3] == got[0] && got[4] == got[2] && got[2] != got[0]
			distinct := len(got) == 5 && len(slices.Compact(slices.Sorted(slices.Values(got)))) == 5
			switch {
			case indexed && !kept:
				t.Errorf("numbers of the rows x, x, y, x, y: %v; want x's three the same, y's two the same and another", got)
			case !indexed && !distinct:
				t.Errorf("numbers of the rows x, x, y, x, y without names_name: %v; want five numbers, one per numbering", got)
			}
			s.state.startEpoch()
			write("x.example.", "x.example.")
			if got := numbers(); len(got) != 6 || slices.Max(got[:5]) >= got[5] {
				t.Errorf("numbers %v: x in the new epoch should have a new number, above every one before", got)
			}
			wantNames := map[bool]int64{true: 3, false: 6}[indexed] // x and y, x again in the new epoch; or each numbering
			if names, _ := checkNameRows(t, path, 0); names != wantNames {
				t.Errorf("%d names rows, want %d", names, wantNames)
			}
			qnames := testutil.Column[string](t, s.db, `SELECT qname FROM queries ORDER BY id`)
			if want := "x.example. x.example. y.example. x.example. y.example. x.example. y.example. x.example. x.example."; strings.Join(qnames, " ") != want {
				t.Errorf("rows read back %q, want %q", strings.Join(qnames, " "), want)
			}
			if indexed {
				if plan, want := testutil.QueryPlan(t, s.db, findNameQuery, "x.example.", 1), "SEARCH names USING COVERING INDEX names_name (name=? AND rowid>?);"; plan != want {
					t.Errorf("the writer looks a name up by %q, want %q: a seek", plan, want)
				}
			} else if !strings.Contains(logs.String(), "has no index of the names table by name") {
				t.Errorf("no warning at open of a file without names_name; the log:\n%s", logs.String())
			}
		})
	}
}

// Once retention has removed every row of an epoch, its dictionary rows (names, pods) go too,
// and the retransmission marks of its rows; rows of later epochs keep theirs.
func TestDictPrunedWithRows(t *testing.T) {
	t.Parallel()
	s := testStore(t, tempDB(t))
	write := func(ms int64, names ...string) {
		var batch []entry
		for _, n := range names {
			e := entryOf(&testLabels, queryRow{ts: ms, qname: n, client: "192.0.2.9"})
			e.port, e.id = 5353, 7 // each name twice: the second a retransmission of the first
			e.extra = &extra{namespace: "team-a", pod: "pod-" + n}
			batch = append(batch, e)
		}
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
	}
	count := func(table string) (n int) {
		s.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n)
		return n
	}
	old := time.Now().Add(-48 * time.Hour).UnixMilli()
	write(old, "a.", "a.", "b.", "b.")
	s.state.startEpoch()
	now := time.Now().UnixMilli()
	write(now, "a.", "a.", "c.", "c.")
	if n, p, r := count("names"), count("pods"), count("retries"); n != 4 || p != 4 || r != 4 {
		t.Fatalf("%d dictionary names, %d pods, %d retransmissions; want 4, 4 (a. and b., then a. and c. in the new epoch), 4", n, p, r)
	}
	if more, err := s.tidy(1000); err != nil || more {
		t.Fatalf("tidy: %v, %v", more, err)
	}
	if n := count("names"); n != 4 {
		t.Errorf("tidy removed names that rows use: %d left, want 4", n)
	}
	if n, err := s.pruneOlder(now-1000, 1000, shipBound{}); err != nil || n != 4 {
		t.Fatalf("pruned %d (%v), want the 4 old rows", n, err)
	}
	if _, err := s.tidy(1000); err != nil {
		t.Fatal(err)
	}
	if n, p, r, e := count("names"), count("pods"), count("retries"), count("dict_epochs"); n != 2 || p != 2 || r != 2 || e != 1 {
		t.Errorf("%d names, %d pods, %d retransmissions and %d epochs left, want the new epoch's 2, 2, 2 and 1", n, p, r, e)
	}
	var names string
	s.db.QueryRow(`SELECT group_concat(qname || ' ' || pod || ' ' || (retry_of IS NOT NULL), ' ' ORDER BY id) FROM queries`).Scan(&names)
	if names != "a. pod-a. 0 a. pod-a. 1 c. pod-c. 0 c. pod-c. 1" {
		t.Errorf("rows read %q after pruning, want a. and c. twice, in their pods, the second a retransmission", names)
	}
}

// Labels past a kind's limit are stored as "(other)".
func TestLabelLimit(t *testing.T) {
	t.Parallel()
	var l labels
	for i := range labelLimit[labelServer] + 10 {
		id := l.id(labelServer, fmt.Sprintf("dns://:%d", i))
		if want := min(i+1, labelLimit[labelServer]); int(id) != want {
			t.Fatalf("label %d got number %d, want %d", i, id, want)
		}
	}
	if got := l.text(labelServer, uint16(labelLimit[labelServer])); got != otherLabel {
		t.Errorf("the last number reads %q, want %q", got, otherLabel)
	}
	s := testStore(t, tempDB(t))
	for i := range labelLimit[labelPlugin] + 2 {
		n, err := s.labelNumber(labelPlugin, fmt.Sprintf("p%d", i))
		if want := min(i+1, labelLimit[labelPlugin]); err != nil || n != int64(want) {
			t.Fatalf("plugin %d: number %d (%v), want %d", i, n, err, want)
		}
	}
}

// A handler's labelMemo gives the numbers its table gives, for more texts than it keeps and
// for two tables, and a text it keeps costs no allocation.
func TestLabelMemo(t *testing.T) {
	var a, b labels
	b.id(labelPlugin, "offset") // so that b numbers the same texts differently from a
	var m labelMemo
	texts := []string{"cache", "forward", "template", "file", "hosts", "whoami"} // more than memoSlots
	for range 3 {
		for _, text := range texts {
			for _, l := range []*labels{&a, &b} {
				if got, want := m.id(l, labelPlugin, text), l.id(labelPlugin, text); got != want {
					t.Fatalf("%q: memo says %d, the table %d", text, got, want)
				}
			}
		}
	}
	if m.id(&a, labelPlugin, "") != 0 {
		t.Error("the empty text has a number")
	}
	m.id(&a, labelPlugin, "cache")
	if n := testing.AllocsPerRun(100, func() { m.id(&a, labelPlugin, "cache") }); n != 0 {
		t.Errorf("a remembered text costs %v allocations", n)
	}
}

// TestPodNumber: a pod's number found by the extra that names it (podNumber) is the one the
// pods dictionary's lookup gives, and is counted as that lookup would be, with extras shared
// and not, across a generation change and a new epoch.
func TestPodNumber(t *testing.T) {
	t.Parallel()
	ws := newWriteState(&labels{}, &keyring{}, 0, 0, 1, 1, 1)
	plain := newDict[podKey](1) // looked up by the texts, as before podNumber
	shared := make([]*extra, 100)
	for i := range shared {
		shared[i] = &extra{namespace: fmt.Sprintf("ns-%d", i%7), pod: fmt.Sprintf("web-%d", i)}
	}
	step := 0
	check := func(x *extra) {
		t.Helper()
		step++
		got := ws.podNumber(x)
		want, _, _ := plain.number(podKey{x.namespace, x.pod}, func() string { return x.namespace }, func(id any, _ string) []any { return []any{id} })
		if got != want || ws.pods.hits != plain.hits || ws.pods.added != plain.added {
			t.Fatalf("step %d, %s/%s: number %v, hits %d, added %d; the lookup: %v, %d, %d",
				step, x.namespace, x.pod, got, ws.pods.hits, ws.pods.added, want, plain.hits, plain.added)
		}
	}
	round := func() {
		for i := range 3 * len(shared) {
			x := shared[(i*7)%len(shared)]
			check(x)
			if i%10 == 0 {
				check(&extra{namespace: x.namespace, pod: x.pod}) // a pod's own extra, not shared
			}
		}
	}
	round()
	// Enough new pods for the first ones to leave the dictionary, in slots of their own: as if
	// their extras took none of the refs of the first ones.
	for i := range dictLimit + 10 {
		k := podKey{"flood", fmt.Sprint(i)}
		for _, d := range []*dict[podKey]{ws.pods, plain} {
			d.number(k, func() string { return k.namespace }, func(id any, _ string) []any { return []any{id} })
		}
	}
	round()
	ws.startEpoch()
	plain.reset()
	round()
}

// checkNameRows checks what the names and dict_epochs tables say of the log at path: each
// number's first is the first row that holds it (NULL up to old, the numbers given before
// schema 4), and its n counts the rows that hold it up to its epoch's names_counted (the
// epoch with the highest log_id among those that began at or before the number). It returns
// the number of names rows, and the sum of their n.
func checkNameRows(t *testing.T, path string, old int64) (names, counted int64) {
	t.Helper()
	var wrongFirst, wrongN int64
	err := testutil.OpenRO(t, path).QueryRow(`SELECT count(*), coalesce(sum(n), 0),
		count(*) FILTER (WHERE first IS NOT iif(id <= ?, NULL, (SELECT min(id) FROM log WHERE name = names.id))),
		count(*) FILTER (WHERE n <> (SELECT count(*) FROM log WHERE name = names.id AND id <= (SELECT names_counted FROM dict_epochs
			WHERE name_id <= names.id ORDER BY log_id DESC LIMIT 1)))
		FROM names`, old).Scan(&names, &counted, &wrongFirst, &wrongN)
	if err != nil {
		t.Fatal(err)
	}
	if wrongFirst != 0 || wrongN != 0 {
		t.Errorf("of %d names rows, %d have a first that is not their first log row, %d an n that is not their rows up to names_counted\n%s",
			names, wrongFirst, wrongN, testutil.SQLite3(t, path, `SELECT id, name, first, n, (SELECT min(id) FROM log WHERE name = names.id),
				(SELECT count(*) FROM log WHERE name = names.id) FROM names LIMIT 20; SELECT * FROM dict_epochs`))
	}
	return names, counted
}

// checkTextRows fails t unless log_texts lists exactly the log rows that hold a name as text.
func checkTextRows(t *testing.T, path string) {
	t.Helper()
	if msg := textRowsMismatch(t, path); msg != "" {
		t.Error(msg)
	}
}

// textRowsMismatch says how log_texts differs from the log rows that hold a name as text,
// or "" if it lists exactly those.
func textRowsMismatch(t *testing.T, path string) string {
	t.Helper()
	var texts, listed, missing, extra int64
	err := testutil.OpenRO(t, path).QueryRow(`SELECT (SELECT count(*) FROM log WHERE typeof(name) = 'text'), (SELECT count(*) FROM log_texts),
		(SELECT count(*) FROM log WHERE typeof(name) = 'text' AND id NOT IN (SELECT id FROM log_texts)),
		(SELECT count(*) FROM log_texts WHERE id NOT IN (SELECT id FROM log WHERE typeof(name) = 'text'))`).Scan(&texts, &listed, &missing, &extra)
	if err != nil {
		t.Fatal(err)
	}
	if missing != 0 || extra != 0 {
		return fmt.Sprintf("log_texts lists %d ids for %d rows holding a text: %d rows missing, %d ids of no such row", listed, texts, missing, extra)
	}
	return ""
}

// TestDictFirstRows: a names row says the first log row that holds its number, across
// batches, a failed batch (whose new numbers are given again; the others are found in the
// table), and a new epoch; log_texts lists the rows that hold a text, none of the failed
// batch's.
func TestDictFirstRows(t *testing.T) {
	t.Parallel()
	path := tempDB(t)
	s := testStore(t, path)
	failRowsNamed(t, s, "bad.")
	ms := time.Now().UnixMilli()
	for round := range 4 {
		var batch []entry
		for i := range 200 {
			batch = append(batch, entryOf(&testLabels, queryRow{ts: ms, qname: fmt.Sprintf("n%d.example.", (i*7+round)%60), client: "192.0.2.1"}))
		}
		switch round {
		case 1:
			// A name numbered only in the failed batch is numbered again: the table never had it.
			fresh := entryOf(&testLabels, queryRow{ts: ms, qname: "fresh.example.", client: "192.0.2.1"})
			batch = append(batch, fresh, fresh)
			batch = append(batch, entryOf(&testLabels, queryRow{ts: ms, qname: "bad.", client: "192.0.2.1"}))
			if err := s.write(batch); err == nil {
				t.Fatal("a batch with a failing row was written")
			}
			batch = batch[:len(batch)-1]
		case 3:
			s.state.startEpoch()
		}
		if err := s.write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if names, _ := checkNameRows(t, path, 0); names != 2*60+1 {
		t.Errorf("%d names rows, want 121 (60 names, found again after the failed batch and numbered again in the new epoch; fresh.example. once)", names)
	}
	checkTextRows(t, path)
}
