package querylog

// A dictionary stores a text that rows repeat (a query name, a client address) once, in its
// own table, and rows refer to it by number. Two things keep it cheap under any traffic:
//
//   - A text goes into the dictionary the second time the writer sees it; the first time, the
//     row holds the text itself. Real traffic repeats most names, so most rows hold a number;
//     a random-subdomain flood, where every name is new, writes one row per query and nothing
//     else, instead of a dictionary row that is never used again (the cliff of a plain
//     dictionary: BenchmarkStoreWrite, mix unique).
//   - Dictionary rows are only ever appended, with numbers the writer chooses, so there is no
//     unique index to maintain. The writer finds numbers in memory, in a cache of at most
//     dictLimit texts per dictionary (two generations: when the newer is full it becomes the
//     older and the oldest is dropped, so what is used stays). A query name that fell out of
//     the cache and comes back is looked up in the names table, by its index of names, among
//     the numbers of the epoch (find): it keeps its number, so that a name has one entry per
//     epoch however often it leaves the cache (querylog new reads a name's entries). A client
//     address that comes back is added again under a new number; rows do not care which.
//   - Texts seen once are remembered by a 64-bit hash in a table of fixed size (seenSet), not
//     in a map of the texts: under a flood every row misses the cache, and one cache line read
//     there costs less than the lookups and inserts of maps of strings. Forgetting a text only
//     stores it inline once more; taking a text for one seen (two hashes equal) only adds it a
//     sighting early. Rows read the same either way.
//
// Dictionary rows are pruned with the rows that use them: the writer starts a new epoch (an
// empty cache, so every text gets a new number) at every open and every dictEpoch, and records
// where each began (table dict_epochs), so that once retention has removed every row written
// before an epoch, the dictionary rows numbered before it can go too (store.tidy).

import (
	"hash/maphash"
	"time"
)

const (
	// dictLimit bounds each dictionary's cache, in texts.
	dictLimit = 50_000
	// seenBuckets is the size of each dictionary's seenSet: buckets of two hashes, 512 KiB. A
	// text seen once is still there after 25,000 new texts with a chance of 0.82, and after
	// 50,000 of 0.55.
	seenBuckets = 1 << 15
	// dictEpoch is how long numbers are reused before every text is numbered afresh.
	dictEpoch = 24 * time.Hour
)

// dict is one dictionary's cache. K is what the writer looks texts up by (a query name, or a
// client address with its hash key), so that a hit needs no formatting.
type dict[K comparable] struct {
	ids, older          map[K]*dictEntry // texts in the dictionary, newer generation first
	seen                seenSet          // texts seen once, not yet in the dictionary
	next                int64            // the next number to give
	firsts              bool             // its rows say the first log row that holds their number (names)
	pending             []any            // rows to add with this batch: number, text[, first], number, text...
	hits, added, inline uint64           // lookups by outcome, for coredns_querylog_dictionary_lookups_total
	found               uint64           // and texts seen again whose number find gave
	turn                uint64           // counts resets and generation changes: an entry looked up since the last is in ids
	// find returns the number the file already holds for a text seen twice that the cache
	// does not have, if any (names: writeState.findName); nil looks for none.
	find func(text string) (int64, bool)
}

// dictEntry is a text in the dictionary: its number, as a row stores it (boxed once, not at
// every row), the text, where the rollups count it this minute, and (names) the rows that hold
// the number not yet added to names.n (namecounts.go).
type dictEntry struct {
	id           any // int64
	text         string
	tally        minuteTally
	rows, before int64  // rows counted; of them, before the batch counted last
	batch        uint64 // the batch counted last (nameCounts.batch)
}

func newDict[K comparable](next int64) *dict[K] {
	d := &dict[K]{next: next}
	d.reset()
	return d
}

// reset starts an epoch: every text is new again.
func (d *dict[K]) reset() {
	d.turn++
	d.ids, d.older = make(map[K]*dictEntry), make(map[K]*dictEntry)
	d.seen.reset()
}

// ref returns what the log row of id row stores for k: its number, or (the first time it is
// seen) its text, which text makes only then; the text; and its entry, nil while it is not in
// the dictionary.
func (d *dict[K]) ref(k K, text func() string, row int64) (any, string, *dictEntry) {
	if e := d.lookup(k); e != nil {
		return e.id, e.text, e
	}
	t := text()
	if !d.seen.sighted(maphash.Comparable(d.seen.seed, k)) {
		d.inline++
		return t, t, nil
	}
	if d.find != nil { // seen before: it may have left the cache, its number in the table
		if id, ok := d.find(t); ok {
			d.found++
			e := &dictEntry{id: id, text: t}
			d.remember(k, e)
			return e.id, t, e
		}
	}
	d.added++
	e := &dictEntry{id: d.next, text: t}
	d.next++
	d.remember(k, e)
	d.pending = append(d.pending, e.id, t)
	if d.firsts {
		d.pending = append(d.pending, row)
	}
	return e.id, t, e
}

// number returns k's number, adding it at once if it is new, with the values row makes of its
// number and text for the table's columns. For a dictionary of few texts that every row of
// them repeats (pods), where storing a text inline first would only cost.
func (d *dict[K]) number(k K, text func() string, row func(id any, text string) []any) (any, string, *dictEntry) {
	if e := d.lookup(k); e != nil {
		return e.id, e.text, e
	}
	d.added++
	t := text()
	e := &dictEntry{id: d.next, text: t}
	d.next++
	d.remember(k, e)
	d.pending = append(d.pending, row(e.id, t)...)
	return e.id, t, e
}

// lookup returns k's entry if it is in the cache, counting a hit.
func (d *dict[K]) lookup(k K) *dictEntry {
	e, ok := d.ids[k]
	if !ok {
		if e, ok = d.older[k]; ok {
			d.remember(k, e)
		}
	}
	if ok {
		d.hits++
	}
	return e
}

func (d *dict[K]) remember(k K, e *dictEntry) {
	if len(d.ids) >= dictLimit/2 {
		d.turn++
		d.older, d.ids = d.ids, make(map[K]*dictEntry, dictLimit/2)
	}
	d.ids[k] = e
}

// seenSet remembers texts by hash, in buckets of two: a hash new to its bucket takes the place
// of the one there longer.
type seenSet struct {
	seed    maphash.Seed
	buckets *[seenBuckets][2]uint64
}

// reset forgets every text; the first reset allocates the table.
func (s *seenSet) reset() {
	if s.buckets == nil {
		s.seed, s.buckets = maphash.MakeSeed(), new([seenBuckets][2]uint64)
		return
	}
	clear(s.buckets[:])
}

// sighted reports whether a text with hash h was seen before, and remembers it if not.
func (s *seenSet) sighted(h uint64) bool {
	b := &s.buckets[h%seenBuckets]
	if b[0] == h || b[1] == h {
		return true
	}
	b[1], b[0] = b[0], h
	return false
}

// tallyOf is the entry's tally; nil (a text stored inline) has none.
func (e *dictEntry) tallyOf() *minuteTally {
	if e == nil {
		return nil
	}
	return &e.tally
}
