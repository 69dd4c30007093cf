package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"math"
	"slices"
	"time"

	"github.com/querylog/querylog/internal/dnsname"
	"github.com/querylog/querylog/internal/logrow"
)

// new over a file of schema 6, without --namespace, reads the writer's list of first sightings
// (plugin/querylog/firsts.go) instead of every row of the window that holds a text. The writer
// lists each row holding a name as text unless the file knew the name logrow.FirstsHorizon
// before the row (a names entry first used by then, a rollup period ended by then), and says
// whether the names table held the name then. So in a window no longer than the horizon:
//
//   - every text row of a name first seen in the window is listed, and its queries are those
//     rows and the rows holding its numbers (names.n, and the rows after the counts), all given
//     in the window;
//   - a name whose first listed row of the window found it in the names table was seen before
//     that row: numbered at an earlier sighting, before the window or at a numbered row of the
//     window before its first text row, which the rows say is old too;
//   - a name a rollup period counted that ended before the horizon of its first row was never
//     listed there; the periods that ended between then and the window are read here (at most
//     rollup_limit names a period);
//   - a registered domain is new if the first row the writer saw a name under it as text
//     (domains_seen.first, filled at the upgrade from the names table and the rollups) arrived
//     in the window, and no name of the window under it is old.
//
// A window the list does not cover is read as before (new_texts.go): one that begins before the
// list does or longer than the horizon, one with a minute whose rows the writer did not all
// judge (a flood past its cap), and any window while the file holds a minute whose domains it
// did not all record.

// useFirsts lets new read from the list; TestNewFirstsAsRows turns it off to compare.
var useFirsts = true

// firstsCover reports whether the list covers the window from Unix second from (its first id
// w0) to the row last.
func (d *database) firstsCover(ctx context.Context, from, w0, last int64) (bool, error) {
	if (last>>8)-logrow.FirstsHorizon.Milliseconds() > from*1000 {
		return false, nil
	}
	var listFrom sql.NullInt64
	var gaps bool
	err := d.row(ctx, `SELECT (SELECT value FROM state WHERE key = 'name_firsts_from'),
		EXISTS (SELECT 1 FROM name_firsts_gaps WHERE (minute >= ?1 AND domains = 0) OR domains = 1)`, []any{from / 60}, &listFrom, &gaps)
	return err == nil && listFrom.Valid && listFrom.Int64 <= w0 && !gaps, err
}

// newFromFirsts fills s with the names and domains of the window from Unix second from (its
// first id w0) to the row last, from the list: whether each is new, and the queries of the new
// ones. hi: the highest name number given before the window (haveOld).
func (d *database) newFromFirsts(ctx context.Context, s *newState, res *newResult, epochs []epoch, from, w0, last, hi int64, haveOld bool) error {
	res.firsts, res.textIndex = true, false
	// The rows after the counts, read on a second connection while this one reads the list.
	uncounted := beside(ctx, d, func(other *database) (uncountedCounts, error) {
		return other.uncountedRows(ctx, epochs, w0, last)
	})
	defer uncounted()
	// The list, in id order: each name's rows, its first arrival, and whether the names table
	// held it at its first row (then it is old).
	err := chunks(ctx, w0, last+1, chunkIDs, false, func(a, b int64) error {
		return d.each(ctx, `SELECT name, (id >> 8) - late, named FROM name_firsts WHERE id >= ? AND id < ? AND (id >> 8) - late >= ?`,
			[]any{a, b, from * 1000}, func(v []driver.Value) error {
				t, _ := logrow.Text(v[0])
				nm := s.names[t]
				if nm == nil {
					nm = &newName{text: t, first: math.MaxInt64, old: logrow.Int(v[2]) == 1}
					s.names[t] = nm
				}
				nm.queries++
				nm.first = min(nm.first, logrow.Int(v[1]))
				return nil
			})
	})
	if err != nil {
		return err
	}
	if err := d.recentRollupNames(ctx, s, from); err != nil {
		return err
	}
	// The new names' numbers, all given after their first row: from the numbers given before the
	// window on, names.n and the rows after the counts.
	counts, err := uncounted()
	if err != nil {
		return err
	}
	res.uncounted = counts.read
	if !haveOld {
		hi = 0
	}
	err = d.each(ctx, `SELECT name, id, n FROM names WHERE id > ?`, []any{hi}, func(v []driver.Value) error {
		t, _ := logrow.Text(v[0])
		if nm := s.names[t]; nm != nil && !nm.old {
			nm.queries += logrow.Int(v[2]) + counts.after[logrow.Int(v[1])]
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Domains: old with an old name of the window under them, else as domains_seen says.
	for t, nm := range s.names {
		if nm.domain = dnsname.RegisteredDomain(t); nm.domain == "" {
			continue
		}
		dom := s.domains[nm.domain]
		if dom == nil {
			dom = &newDomain{domain: nm.domain, first: math.MaxInt64}
			s.domains[nm.domain] = dom
		}
		dom.old = dom.old || nm.old
		if !nm.old {
			dom.queries += nm.queries
			dom.names++
			dom.first = min(dom.first, nm.first)
		}
	}
	var open []string
	for name, dom := range s.domains {
		if !dom.old {
			open = append(open, name)
		}
	}
	for list := range slices.Chunk(slices.Sorted(slices.Values(open)), 5000) {
		text, _ := json.Marshal(list)
		err := d.each(ctx, `SELECT d.domain, d.first, (SELECT (l.id >> 8) - l.late FROM log l WHERE l.id = d.first)
			FROM domains_seen d WHERE d.domain IN (SELECT value FROM json_each(?))`, []any{string(text)}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			first, arrived := logrow.Int(v[1]), v[2]
			if first < w0 || (arrived != nil && logrow.Int(arrived) < from*1000) {
				s.domains[t].old = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	res.winNames, res.winDoms = len(s.names), len(s.domains)
	res.queries, err = d.windowQueries(ctx, window{from: from, to: openEnd, now: time.Now().Unix()})
	return err
}

// recentRollupNames marks old the names of s that a rollup period counted that ended in the
// horizon (and a minute) before the window, which begins at Unix second from: the writer's
// judgment of a row looked at the periods ended before the row's horizon only.
func (d *database) recentRollupNames(ctx context.Context, s *newState, from int64) error {
	lo := from - int64(logrow.FirstsHorizon/time.Second) - 60
	for _, span := range []int64{60, 3600, 86400} {
		err := d.each(ctx, `SELECT name FROM rollup_names WHERE span = ?1 AND start > ?2 - ?1 AND start <= ?3 - ?1`, []any{span, lo, from}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			if nm := s.names[t]; nm != nil {
				nm.old = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// uncountedCounts are the rows holding a name number that the names dictionary's counts
// (names.n) leave out, those after their epoch's names_counted: how many hold each number, and
// how many were read.
type uncountedCounts struct {
	after map[int64]int64
	read  int64
}

// uncountedRows counts the rows from the window's first id w0 to last that the dictionary's
// counts leave out. They are log rows up to an id of the caller's snapshot: it may read them
// on a second connection (beside).
func (d *database) uncountedRows(ctx context.Context, epochs []epoch, w0, last int64) (uncountedCounts, error) {
	c := uncountedCounts{after: map[int64]int64{}}
	query := `SELECT name FROM log WHERE id >= ? AND id < ? AND typeof(name) = 'integer'`
	for i, e := range epochs {
		from, to := max(w0, e.logID, e.counted+1), last+1
		if i+1 < len(epochs) {
			to = min(to, epochs[i+1].logID)
		}
		err := chunks(ctx, from, to, chunkIDs, false, func(a, b int64) error {
			return d.each(ctx, query, []any{a, b}, func(v []driver.Value) error {
				c.after[logrow.Int(v[0])]++
				c.read++
				return nil
			})
		})
		if err != nil {
			return uncountedCounts{}, err
		}
	}
	return c, nil
}
