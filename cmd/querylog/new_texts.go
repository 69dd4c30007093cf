package main

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"maps"
	"math"
	"slices"

	"github.com/querylog/querylog/internal/logrow"
)

// new over a file of schema 4 or later (plugin/querylog/schema.go), without --namespace, reads
// only what can be new. The writer stores a name's text in a row the first time it sees the
// name in a dictionary epoch, and gives it a number at a later sighting; so a name whose first
// row in the window holds a number had its first sighting before the window, and the names
// that can be new are those of the window's rows holding a text. The file lists those rows
// (log_texts: an index in schema 4, a table of their ids since 5), says in the names
// dictionary where each number was first used (names.first) and counts the rows holding it
// (names.n, up to its epoch's dict_epochs.names_counted): new reads the texts by that list and
// takes their numbers' rows from those counts, instead of reading every row of the window (an
// hour of 10 million rows took 16-18 s; now 5.5-7.3 s).

// valueInfo is what the window's rows say of one value of the name column (a text or a
// number): the id of its first row, and the rows that count and the arrival of the first.
type valueInfo struct {
	firstRow       int64
	queries, first int64
}

// windowTextsQuery reads the rows holding a name as text from id ?1 to ?2 that arrived from
// Unix ms ?3 on, by the list of them: schema 5's table log_texts, each id looked up in the
// log; schema 4's index (windowTextsIndexQuery). An id whose row retention deleted, before
// the writer's tidy deleted it, finds no row.
const (
	windowTextsQuery = `SELECT l.id, l.name, l.late FROM log_texts t CROSS JOIN log l ON l.id = t.id
	WHERE t.id >= ?1 AND t.id < ?2 AND typeof(l.name) = 'text' AND (l.id >> 8) - l.late >= ?3`
	windowTextsIndexQuery = `SELECT l.id, l.name, l.late FROM log l INDEXED BY log_texts
	WHERE l.id >= ?1 AND l.id < ?2 AND typeof(l.name) = 'text' AND (l.id >> 8) - l.late >= ?3`
)

// windowTexts adds to texts the window's rows holding a name as text (from its first id w0 to
// the last, those that arrived from Unix second from on), by the list of those rows.
func (d *database) windowTexts(ctx context.Context, from, w0, last int64, texts map[string]*valueInfo) (map[string]*valueInfo, error) {
	query := windowTextsIndexQuery
	if d.textTable {
		query = windowTextsQuery
	}
	err := chunks(ctx, w0, last+1, chunkIDs, false, func(a, b int64) error {
		return d.each(ctx, query, []any{a, b, from * 1000}, func(v []driver.Value) error {
			id := logrow.Int(v[0])
			t, _ := logrow.Text(v[1])
			info := texts[t]
			if info == nil {
				info = &valueInfo{firstRow: id, first: math.MaxInt64}
				texts[t] = info
			}
			info.queries++
			info.first = min(info.first, id>>8-logrow.Int(v[2]))
			return nil
		})
	})
	return texts, err
}

// firstUse is when a name number was first used, as far as the file says: names.first, or
// for a number given before schema 4 (first NULL) before the window if it is one of the old
// numbers (lo to hi), else at the window's start w0 (some time in it).
func firstUse(id int64, first any, w0, lo, hi int64, haveOld bool) int64 {
	switch {
	case first != nil:
		return logrow.Int(first)
	case haveOld && id >= lo && id <= hi:
		return 0
	}
	return w0
}

// dictScanRatio decides how textNumbers reads the names dictionary: whole, in order, when it
// holds fewer than this many entries per name of the window; else name by name, by its index.
// A seek by name costs about as much as reading this many entries in order (modernc.org/sqlite,
// bench/results/2026-12-06-commands-bench30-schema4-2cpu.txt).
const dictScanRatio = 7

// textFacts is what the names dictionary says of the window's text names (textNumbers).
type textFacts struct {
	before []string // names with a number first used before their first text row: seen before the window
	whole  bool     // the dictionary was read whole, and domFirst filled
	// By registered domain of the window: the earliest first use of a number of a name at or
	// under it; 0 for a name no text row of the window holds (its first sighting in the epoch
	// of its number, a text row, came before the window).
	domFirst map[string]int64
	read     int64 // numbered rows of the window after the dictionary's counts, read
}

// textNumbers looks up the numbers the dictionary gave each name of s (all from the window's
// text rows). A name with a number first used before its first text row in the window was seen
// before the window. The others' numbered rows are added to their queries: names.n, and the
// rows after their epoch's names_counted, read first and counted by number.
func (d *database) textNumbers(ctx context.Context, s *newState, epochs []epoch, w0, last, lo, hi int64, haveOld bool) (textFacts, error) {
	var f textFacts
	if len(s.names) == 0 {
		return f, nil
	}
	// The numbered rows after the counts, of each epoch the window reaches (a number is used in
	// its epoch's rows only).
	counts, err := d.uncountedRows(ctx, epochs, w0, last)
	if err != nil {
		return f, err
	}
	f.read = counts.read
	// Each entry of the window's names: its first use, and its rows (names.n and those after).
	numbered := map[*newName]int64{}
	before := map[string]bool{}
	entry := func(v []driver.Value) error {
		t, _ := logrow.Text(v[0])
		id := logrow.Int(v[1])
		first := firstUse(id, v[2], w0, lo, hi, haveOld)
		nm := s.names[t]
		if f.whole {
			if dom := underAny(t, f.domFirst); dom != "" {
				use := first
				if nm == nil { // no text row of the window holds it: seen before the window
					use = 0
				}
				f.domFirst[dom] = min(f.domFirst[dom], use)
			}
		}
		if nm == nil {
			return nil
		}
		if first < nm.firstRow {
			before[t] = true
		}
		numbered[nm] += logrow.Int(v[3]) + counts.after[id]
		return nil
	}
	var entries int64
	if err := d.row(ctx, `SELECT coalesce(max(id) - min(id) + 1, 0) FROM names`, nil, &entries); err != nil {
		return f, err
	}
	if f.whole = entries < int64(len(s.names))*dictScanRatio; f.whole {
		f.domFirst = map[string]int64{}
		for _, nm := range s.names {
			if nm.domain != "" {
				f.domFirst[nm.domain] = math.MaxInt64
			}
		}
		if err := d.each(ctx, `SELECT name, id, first, n FROM names`, nil, entry); err != nil {
			return f, err
		}
	} else {
		// A few thousand names a query: a flood's window can hold millions.
		for names := range slices.Chunk(slices.Sorted(maps.Keys(s.names)), 5000) {
			list, _ := json.Marshal(names)
			if err := d.each(ctx, `SELECT name, id, first, n FROM names WHERE name IN (SELECT value FROM json_each(?))`, []any{string(list)}, entry); err != nil {
				return f, err
			}
		}
	}
	// A name seen before the window may have rows before it among names.n: it keeps its text
	// rows' count (it is old, and not shown).
	for nm, n := range numbered {
		if !before[nm.text] {
			nm.queries += n
		}
	}
	f.before = slices.Sorted(maps.Keys(before))
	return f, nil
}

// domainsUsedBefore marks old each open domain that the whole dictionary (f.domFirst) shows
// with a name at or under it numbered before the domain's first text row in the window.
func (s *newState) domainsUsedBefore(domFirst map[string]int64) {
	firstRow := map[string]int64{}
	for _, nm := range s.names {
		if f, ok := firstRow[nm.domain]; !ok || nm.firstRow < f {
			firstRow[nm.domain] = nm.firstRow
		}
	}
	for dom := range s.openDoms {
		if f, ok := domFirst[dom]; ok && f < firstRow[dom] {
			s.domains[dom].old = true
			delete(s.openDoms, dom)
		}
	}
}

// domainsNumberedBefore marks old each open domain with a name at or under it that the
// dictionary numbered before the domain's first text row in the window, or in the window
// though no text row of the window holds it (its first sighting came before the window).
func (s *newState) domainsNumberedBefore(ctx context.Context, d *database, w0, lo, hi int64, haveOld bool) error {
	if !haveOld {
		lo, hi = 1, 0
	}
	firstRow, names := map[string]int64{}, map[string][]string{}
	for t, nm := range s.names {
		if _, open := s.openDoms[nm.domain]; open {
			if f, ok := firstRow[nm.domain]; !ok || nm.firstRow < f {
				firstRow[nm.domain] = nm.firstRow
			}
			names[nm.domain] = append(names[nm.domain], t)
		}
	}
	for _, dom := range slices.Sorted(maps.Keys(s.openDoms)) {
		list, _ := json.Marshal(names[dom])
		cond, args := nameCond("name", dom)
		var found bool
		err := d.row(ctx, `SELECT EXISTS (SELECT 1 FROM names WHERE `+cond+` AND (first < ? OR (first IS NULL AND id BETWEEN ? AND ?)
			OR (coalesce(first, ?) >= ? AND name NOT IN (SELECT value FROM json_each(?)))))`,
			append(args, firstRow[dom], lo, hi, w0, w0, string(list)), &found)
		if err != nil {
			return err
		}
		if found {
			s.domains[dom].old = true
			delete(s.openDoms, dom)
		}
	}
	return nil
}
