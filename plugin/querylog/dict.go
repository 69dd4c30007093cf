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
//     older and the oldest is dropped, so what is used stays). A text that fell out of the
//     cache and comes back is added again under a new number; rows do not care which.
//
// Dictionary rows are pruned with the rows that use them: the writer starts a new epoch (an
// empty cache, so every text gets a new number) at every open and every dictEpoch, and records
// where each began (table dict_epochs), so that once retention has removed every row written
// before an epoch, the dictionary rows numbered before it can go too (store.pruneDictionaries).

import "time"

const (
	// dictLimit bounds each dictionary's cache and its set of texts seen once, in entries.
	dictLimit = 50_000
	// dictEpoch is how long numbers are reused before every text is numbered afresh.
	dictEpoch = 24 * time.Hour
)

// dict is one dictionary's cache. K is what the writer looks texts up by (a query name, or a
// client address with its hash key), so that a hit needs no formatting.
type dict[K comparable] struct {
	ids, older          map[K]dictEntry // texts in the dictionary, newer generation first
	seen, before        map[K]struct{}  // texts seen once, not yet in the dictionary
	next                int64           // the next number to give
	pending             []any           // rows to add with this batch: number, text, number, text...
	hits, added, inline uint64          // lookups by outcome, for coredns_querylog_dictionary_lookups_total
}

// dictEntry is a text in the dictionary and its number.
type dictEntry struct {
	id   int64
	text string
}

func newDict[K comparable](next int64) *dict[K] {
	d := &dict[K]{next: next}
	d.reset()
	return d
}

// reset starts an epoch: every text is new again.
func (d *dict[K]) reset() {
	d.ids, d.older = make(map[K]dictEntry), make(map[K]dictEntry)
	d.seen, d.before = make(map[K]struct{}), make(map[K]struct{})
}

// ref returns what a row stores for k: its number, or (the first time it is seen) its text,
// which text makes only then; and the text.
func (d *dict[K]) ref(k K, text func() string) (any, string) {
	if e, ok := d.ids[k]; ok {
		d.hits++
		return e.id, e.text
	}
	if e, ok := d.older[k]; ok {
		d.hits++
		d.remember(k, e)
		return e.id, e.text
	}
	t := text()
	if _, ok := d.seen[k]; !ok {
		if _, ok = d.before[k]; !ok {
			d.inline++
			if len(d.seen) >= dictLimit/2 {
				d.before, d.seen = d.seen, make(map[K]struct{}, dictLimit/2)
			}
			d.seen[k] = struct{}{}
			return t, t
		}
	}
	d.added++
	e := dictEntry{d.next, t}
	d.next++
	d.remember(k, e)
	d.pending = append(d.pending, e.id, t)
	return e.id, t
}

func (d *dict[K]) remember(k K, e dictEntry) {
	if len(d.ids) >= dictLimit/2 {
		d.older, d.ids = d.ids, make(map[K]dictEntry, dictLimit/2)
	}
	d.ids[k] = e
}
