package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"

	"github.com/querylog/querylog/internal/logrow"
)

// new --namespace NS lists what NS never asked before the window, whoever else did: a workload
// that starts asking for a name is news even when the name is old to the cluster. What the
// file knows of a namespace's past:
//
//   - its rollups (rollup_namespace_names, schema 3): per minute, hour and day, the names the
//     namespace's clients asked, at most rollup_limit per namespace and period, the rest under
//     (other). Every period that ended by the window is read (the writer deletes a namespace's
//     minutes once it has summed them into their hour, so no period is read twice); with
//     --exact, those before the oldest row;
//   - with --exact, its rows before the window (the pod column, or the metadata's label in
//     rows of older schemas).
//
// The names the namespace asked before are left out; the file-wide steps of newNames then say
// which of the rest the file had seen from other clients (newName.old: "known" to the file).

// nsPast is what new read of a namespace's past.
type nsPast struct {
	known     int             // names of the window the namespace asked before it
	none      bool            // it asked no name in the window: nothing to look for
	rowsRead  int64           // its rows before the window read (--exact)
	scanned   bool            // every one of those rows was read
	rollups   bool            // its rollups were read
	rollupsTo int64           // periods that begin before this were read (Unix seconds)
	folded    map[int64]int64 // by span: queries of its periods read counted under (other)
}

// namespacePast removes from s the names and registered domains namespace ns asked before the
// window that begins at from (Unix seconds); last is the log's last id.
func (d *database) namespacePast(ctx context.Context, s *newState, res *newResult, from int64, last sql.NullInt64, ns string, exact bool) error {
	past := &nsPast{folded: map[int64]int64{}}
	res.nsPast = past
	// A state of its own over the same names: seen marks them old, and they are dropped below.
	ss := &newState{names: s.names, domains: s.domains, openNames: maps.Clone(s.openNames), openDoms: maps.Clone(s.openDoms)}
	past.none = ss.done()
	if exact && last.Valid && !ss.done() {
		if err := d.namespaceRows(ctx, ss, past, from, last.Int64, ns); err != nil {
			return err
		}
	}
	if d.pods && !ss.done() {
		before := from
		if exact && res.oldest.Valid && res.oldest.Int64 < from*1000 {
			before = (res.oldest.Int64 + 999) / 1000 // where rows are kept, they said it
		}
		past.rollups, past.rollupsTo = true, before
		for _, span := range []int64{86400, 3600, 60} {
			if ss.done() {
				break
			}
			starts, err := d.periods(ctx, span, 0, from)
			if err != nil {
				return err
			}
			starts = slices.DeleteFunc(starts, func(start int64) bool { return start >= before })
			if len(starts) == 0 {
				continue
			}
			list, _ := json.Marshal(starts)
			// By the primary key (span, start, namespace): the namespace's rows of each period.
			cond, args := ss.textConds("name")
			err = d.each(ctx, `SELECT name, n FROM rollup_namespace_names WHERE span = ? AND start IN (SELECT value FROM json_each(?))
				AND namespace = ? AND (name = ? OR `+cond+`)`, append([]any{span, string(list), ns, otherKey}, args...), func(v []driver.Value) error {
				t, _ := logrow.Text(v[0])
				if t == otherKey {
					past.folded[span] += logrow.Int(v[1])
				} else {
					ss.seen(t)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	for t, nm := range s.names {
		if nm.old {
			delete(s.names, t)
			delete(s.openNames, t)
			past.known++
		}
	}
	for dom, dm := range s.domains {
		if dm.old {
			delete(s.domains, dom)
			delete(s.openDoms, dom)
		}
	}
	return nil
}

// namespaceRows reads the rows of namespace ns before the window, newest first, until every
// name and domain of ss is known to be old: names held as text directly, numbers through the
// names dictionary, a chunk at a time.
func (d *database) namespaceRows(ctx context.Context, ss *newState, past *nsPast, from, last int64, ns string) error {
	w0 := from * 1000 << 8
	past.scanned = true
	query := `SELECT l.name FROM log l WHERE l.id >= ?1 AND l.id < ?2 AND l.name IS NOT NULL AND ` + d.namespaceCond("?3")
	err := chunks(ctx, 0, min(w0+lateMargin.Milliseconds()<<8, last+1), chunkIDs, true, func(lo, hi int64) error {
		if ss.done() {
			past.scanned = false
			return errEnough
		}
		q := query
		if hi > w0 {
			q += ` AND (l.id >> 8) - l.late < ` + strconv.FormatInt(from*1000, 10)
		}
		nums := map[int64]bool{}
		err := d.each(ctx, q, []any{lo, hi, ns}, func(v []driver.Value) error {
			past.rowsRead++
			if num, ok := v[0].(int64); ok {
				nums[num] = true
			} else {
				t, _ := logrow.Text(v[0])
				ss.seen(t)
			}
			return nil
		})
		if err != nil || len(nums) == 0 {
			return err
		}
		list, _ := json.Marshal(slices.Collect(maps.Keys(nums)))
		return d.each(ctx, `SELECT name FROM names WHERE id IN (SELECT value FROM json_each(?))`, []any{string(list)}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			ss.seen(t)
			return nil
		})
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	return nil
}
