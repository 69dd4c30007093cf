package querylog

import (
	"context"
	"database/sql/driver"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
	"github.com/querylog/querylog/internal/searchfold"
)

// Each hour, once summed, has its namespace names (rollup_namespace_names) folded back into the
// names the programs asked for through their search lists (internal/searchfold), as `querylog
// searchpath` folds a window: rollup_searchpath keeps, per namespace, each name asked with the
// lookups, queries, NXDOMAINs and what-if queries of its fold, and rollup_searchpath_suffixes
// the weights the namespace's search list was learned from (the names that taught them under
// searchfold.TaughtKey), so that the command orders a window's summed weights as the fold does.
// A late row makes its hour be summed again, and the hour is folded again whole. A day's rows
// are the sums of its hours' rows: folds add up, as the command adds up a window's periods.
//
// The minutes of the hour not summed yet are folded too (span 60), so that the command folds
// one minute of names at most: each time the writer writes its counts, the minutes whose
// namespace names it wrote that are before the minute of the newest row are finished, late
// rows aside, and are folded (foldMinutes), in the same transaction. A late row of an older
// minute makes it be folded again: replaced, never added to. A minute's fold, when it has one,
// is always the fold of its names as they stand; a minute without one (the current minute, or
// one whose fold a crash lost) the command folds from its names. When the hour is summed its
// fold is made from its names, as before, and its minutes' folds are deleted.

// searchpathLimit is how many names asked a namespace keeps rows of per period; the others are
// summed under otherKey, so totals stay whole. The command shows the 20 names with the most
// queries by default: 100 a namespace keep those right over a long window while a period holds
// a tenth of its rollup_namespace_names rows (rollup_limit 1000), which is what makes a month
// fast to read.
const searchpathLimit = 100

// searchpathMinuteLimit is searchpathLimit for a finished minute of the hour not summed yet:
// the command reads up to 59 of them with every long window, and they live only until their
// hour is summed (its fold, made from its names, keeps searchpathLimit). 20 names a namespace,
// the command's default -n, make a minute a fifth of an hour's rows.
const searchpathMinuteLimit = 20

// foldSearchpath replaces the rows of rollup_searchpath and rollup_searchpath_suffixes of the
// period of span seconds from start with the fold of its rollup_namespace_names rows.
func foldSearchpath(ctx context.Context, dc driver.Conn, span, start int64) error {
	byNS := map[string]map[string]*searchfold.Counts{}
	err := rawsql.Each(ctx, dc, `SELECT namespace, name, rcode, a, aaaa, answered FROM rollup_namespace_names
		WHERE span = ? AND start = ? AND a + aaaa > 0 AND name <> '(other)'`, []any{span, start}, func(v []driver.Value) error {
		ns := asText(v[0])
		names := byNS[ns]
		if names == nil {
			names = map[string]*searchfold.Counts{}
			byNS[ns] = names
		}
		name := strings.ToLower(asText(v[1]))
		c := names[name]
		if c == nil {
			c = &searchfold.Counts{}
			names[name] = c
		}
		c.AddRollup(logrow.Int(v[2]), logrow.Int(v[3]), logrow.Int(v[4]), logrow.Int(v[5]))
		return nil
	})
	if err != nil {
		return err
	}
	if err := deleteSearchpathFolds(ctx, dc, span, start, start+1); err != nil {
		return err
	}
	var statRows, suffixRows []any
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		limit := searchpathLimit
		if span == 60 {
			limit = searchpathMinuteLimit
		}
		asked, weights := searchfold.Period(byNS[ns], limit, otherKey)
		for _, a := range asked {
			statRows = append(statRows, start, ns, a.Name, a.Lookups, a.Queries, a.NXDomain)
			for _, w := range a.WhatIf {
				statRows = append(statRows, w)
			}
		}
		for _, s := range slices.Sorted(maps.Keys(weights)) {
			suffixRows = append(suffixRows, start, ns, s, weights[s])
		}
	}
	if err := insertRows(ctx, dc, "rollup_searchpath (span, start, namespace, name, lookups, queries, nxdomain, ndots1, ndots2, ndots3, ndots4, ndots5)",
		span, 11, statRows); err != nil {
		return err
	}
	return insertRows(ctx, dc, "rollup_searchpath_suffixes (span, start, namespace, suffix, weight)", span, 4, suffixRows)
}

// foldMinutes folds the minutes whose namespace names were written since their fold and that
// are before the minute of newest (Unix ms); a minute not finished yet loses the fold it may
// have, which its names no longer match.
func (r *rollups) foldMinutes(ctx context.Context, dc driver.Conn, newest int64) error {
	current := floorDiv(newest, 60_000) * 60
	r.folded = r.folded[:0]
	for _, start := range slices.Sorted(maps.Keys(r.unfolded)) {
		if start >= current {
			if err := deleteSearchpathFolds(ctx, dc, 60, start, start+60); err != nil {
				return err
			}
			continue
		}
		if err := foldSearchpath(ctx, dc, 60, start); err != nil {
			return fmt.Errorf("folding the search paths of the minute from %d: %w", start, err)
		}
		delete(r.unfolded, start)
		r.folded = append(r.folded, start)
	}
	return nil
}

// deleteSearchpathFolds deletes the folds of span from from to to.
func deleteSearchpathFolds(ctx context.Context, dc driver.Conn, span, from, to int64) error {
	for _, table := range []string{"rollup_searchpath", "rollup_searchpath_suffixes"} {
		if err := rawsql.Exec(ctx, dc, `DELETE FROM `+table+` WHERE span = ? AND start >= ? AND start < ?`, span, from, to); err != nil {
			return err
		}
	}
	return nil
}

// insertRows inserts rows of cols values each (after span) into into, 100 rows a statement:
// one statement a row costs several times as much.
func insertRows(ctx context.Context, dc driver.Conn, into string, span int64, cols int, vals []any) error {
	row := "(" + strconv.FormatInt(span, 10) + strings.Repeat(", ?", cols) + ")"
	for len(vals) > 0 {
		n := min(len(vals)/cols, 100)
		q := "INSERT INTO " + into + " VALUES " + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
		if err := rawsql.Exec(ctx, dc, q, vals[:n*cols]...); err != nil {
			return err
		}
		vals = vals[n*cols:]
	}
	return nil
}

// sumSearchpathDay are sumPeriod's statements for the folds of the day from ?2: the sums of its
// hours' rows, each namespace keeping the searchpathLimit names asked with the most queries.
var sumSearchpathDay = []string{
	`DELETE FROM rollup_searchpath WHERE span = ?1 AND start = ?2`,
	`WITH parts AS (SELECT namespace, name, sum(lookups) AS lookups, sum(queries) AS queries, sum(nxdomain) AS nxdomain,
	                       sum(ndots1) AS ndots1, sum(ndots2) AS ndots2, sum(ndots3) AS ndots3, sum(ndots4) AS ndots4, sum(ndots5) AS ndots5
	                FROM rollup_searchpath WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, name),
	      ranked AS (SELECT namespace, name, row_number() OVER (PARTITION BY namespace ORDER BY queries DESC, name) AS r
	                 FROM parts WHERE name <> '(other)'),
	      keep AS (SELECT namespace, name FROM ranked WHERE r <= ` + strconv.Itoa(searchpathLimit) + `)
	INSERT INTO rollup_searchpath (span, start, namespace, name, lookups, queries, nxdomain, ndots1, ndots2, ndots3, ndots4, ndots5)
	SELECT ?1, ?2, p.namespace, iif(k.name IS NULL, '(other)', p.name) AS folded, sum(p.lookups), sum(p.queries), sum(p.nxdomain),
	       sum(p.ndots1), sum(p.ndots2), sum(p.ndots3), sum(p.ndots4), sum(p.ndots5)
	FROM parts p LEFT JOIN keep k ON k.namespace = p.namespace AND k.name = p.name GROUP BY p.namespace, folded`,
	`DELETE FROM rollup_searchpath_suffixes WHERE span = ?1 AND start = ?2`,
	`INSERT INTO rollup_searchpath_suffixes (span, start, namespace, suffix, weight)
	SELECT ?1, ?2, namespace, suffix, sum(weight) FROM rollup_searchpath_suffixes
	WHERE span = ?3 AND start >= ?2 AND start < ?2 + ?1 GROUP BY namespace, suffix`,
}
