package querylog

// First sightings (schema 6). querylog new lists the names of a window that the file never saw
// before it. The writer stores a name's text in a row the first time it sees the name in a
// dictionary epoch (dict.go), so a window's candidates are its rows holding a text; reading
// them all through the log takes seconds for an hour of a busy server. So the writer judges
// each such row as it writes it, and lists in name_firsts the rows whose name the file did not
// know firstsHorizon before the row: no names entry first used by then, no rollup period
// ended by then (a seek in names_name, and one in rollup_names_name). A name first seen in a
// window of up to firstsHorizon then has every text row of the window listed, wherever the
// dictionary's epochs begin; new reads the list, and the names dictionary for their numbers'
// counts (bench/README, "Schema 6: new from the writer's list of first sightings").
//
// Each listed row says whether the names table held the name when it was written (named):
// a name with an entry first used before its first text row of the window was seen before.
// What the rollups knew of the name in the horizon before the row, new reads itself.
//
// A flood of new names would cost two seeks and a listed row a row: past firstsPerMinute text
// rows judged a minute, or firstsListedPerMinute listed, the rest of the minute is not judged,
// and the minute goes into name_firsts_gaps, where new reads the rows as before. So does a
// minute written while the rollups catch up (their periods are not yet counted there).
//
// A registered domain is new in a window if no name at or under it was seen before, and no
// index finds the names under a domain. So the writer also records in domains_seen the
// registered domain (dnsname.RegisteredDomain) of the name of every row holding a text (a name
// has one in each epoch it is asked in), with the first and the last such row: an upsert the
// first time a minute sees the domain. The upgrade to schema 6 fills it from the names table
// and the rollups' names (backfillSeenDomains). Past domainsPerMinute domains a minute, the
// minute is a gap for domains (name_firsts_gaps.domains), and new finds domains as before
// while retention keeps it.

import (
	"database/sql/driver"

	"github.com/querylog/querylog/internal/dnsname"
	"github.com/querylog/querylog/internal/logrow"
)

const (
	// firstsHorizon is how long before a row the file must have known its name for the row
	// not to be listed: the longest window new reads from the list.
	firstsHorizon = logrow.FirstsHorizon
	// firstsPerMinute bounds the text rows judged a minute: two seeks each, about 15 µs, at
	// most 2.5% of a core. (The benchmark file's first minute at 10,000 QPS, in a fresh epoch,
	// holds 63,000 text rows; a flood of new names stops at firstsListedPerMinute first.)
	firstsPerMinute = 100_000
	// firstsListedPerMinute bounds the rows listed a minute: about 60 B each, 1.2 MB a minute
	// of a flood of new names, where every row judged is listed.
	firstsListedPerMinute = 20_000
	// domainsPerMinute bounds the domains recorded a minute.
	domainsPerMinute = 6_000
)

// Queries of the judgment: the first use of the name's oldest names entry (0 for one given
// before schema 4, which has none); whether a rollup period that ended by ?2 (Unix s) counted
// the name, by rollup_names_name (start, then span: a period ends after it starts).
const (
	firstsNamedQuery  = `SELECT coalesce(first, 0) FROM names WHERE name = ?1 ORDER BY id LIMIT 1`
	firstsRollupQuery = `SELECT EXISTS (SELECT 1 FROM rollup_names WHERE name = ?1 AND start <= ?2 AND start + span <= ?2)`
)

// firstSightings is the writer's judgment of the rows holding a name as text.
type firstSightings struct {
	minute           int64               // the minute of row ids being judged (ms / 60000)
	judged           int                 // text rows of it judged
	listed           int                 // and listed
	listedPerMinute  int                 // rows listed a minute at most (firstsListedPerMinute)
	perMinute        int                 // text rows judged a minute at most (firstsPerMinute; tests set less)
	domains          map[string]struct{} // the domains recorded this minute
	domainsPerMinute int                 // domains recorded a minute at most (domainsPerMinute)
	gap              [2]int64            // the last minute listed as a gap of names, and of domains, + 1 (0: none)
	pending          []any               // name_firsts rows of the batch: id, name, late, named
	seen             []any               // domains_seen rows of the batch: domain, first, last
	gaps             []any               // name_firsts_gaps rows of the batch: minute, domains

	named, rollup driver.Stmt // the queries, prepared on first use on the writer's connection
	err           error       // the first error of the batch, which fails it
}

// judge lists the row of id (holding name as text, arrived late ms before its id says) if the
// file did not know name firstsHorizon before it. catchingUp: the rollups are behind the rows.
func (f *firstSightings) judge(conn driver.Conn, name string, id, late int64, catchingUp bool) {
	if f.err != nil {
		return
	}
	ms := id >> 8
	if m := ms / 60_000; m != f.minute {
		f.minute, f.judged, f.listed = m, 0, 0
		clear(f.domains)
	}
	f.recordDomain(name, id)
	if f.judged >= f.perMinute || f.listed >= f.listedPerMinute || catchingUp {
		f.markGap(0)
		return
	}
	f.judged++
	before := ms - firstsHorizon.Milliseconds()
	first, found, err := queryValue(conn, &f.named, firstsNamedQuery, name)
	if err != nil {
		f.err = err
		return
	}
	if at, ok := first.(int64); found && (!ok || at < before<<8) {
		return // numbered before the horizon (or a tampered first use: not a time to go by)
	}
	seen, _, err := queryValue(conn, &f.rollup, firstsRollupQuery, name, before/1000)
	if err != nil {
		f.err = err
		return
	}
	if seen == int64(1) {
		return // counted by a period that ended before the horizon
	}
	f.listed++
	f.pending = append(f.pending, id, name, late, b2i(found))
}

// recordDomain adds the row of id to what domains_seen says of the registered domain of name,
// the first time the minute sees it.
func (f *firstSightings) recordDomain(name string, id int64) {
	d := dnsname.RegisteredDomain(name)
	if d == "" {
		return
	}
	if _, ok := f.domains[d]; ok {
		return
	}
	if len(f.domains) >= f.domainsPerMinute {
		f.markGap(1)
		return
	}
	if f.domains == nil {
		f.domains = map[string]struct{}{}
	}
	f.domains[d] = struct{}{}
	f.seen = append(f.seen, d, id, id)
}

// markGap lists the minute being judged as a gap of names (kind 0) or domains (1), once.
func (f *firstSightings) markGap(kind int) {
	if f.gap[kind] != f.minute+1 {
		f.gap[kind] = f.minute + 1
		f.gaps = append(f.gaps, f.minute, int64(kind))
	}
}

// use forgets the statements of an earlier connection (closed with it: closeStmts).
func (f *firstSightings) use() { f.named, f.rollup = nil, nil }

// close closes the statements: a connection closed with a statement open stays open, and
// holds the file (SQLite's sqlite3_close_v2).
func (f *firstSightings) close() {
	for _, st := range []*driver.Stmt{&f.named, &f.rollup} {
		if *st != nil {
			(*st).Close()
			*st = nil
		}
	}
}

// start begins a batch.
func (f *firstSightings) start() {
	f.pending, f.seen, f.gaps, f.err = f.pending[:0], f.seen[:0], f.gaps[:0], nil
}

// forget undoes a failed batch: the domains and gaps it would have recorded are recorded again.
func (f *firstSightings) forget() {
	f.gap = [2]int64{}
	clear(f.domains)
}
