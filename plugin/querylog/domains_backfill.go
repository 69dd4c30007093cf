package querylog

import (
	"database/sql"

	"github.com/querylog/querylog/internal/dnsname"
)

// backfillChunk is how many names backfillSeenDomains reads a query: the domains of a chunk
// are kept in memory until they are written. (A variable for TestMigrateFromV5.)
var backfillChunk = 10_000

// backfillSeenDomains fills domains_seen at the upgrade to schema 6 with what the file knew of
// registered domains before it (firsts.go): those of the names table, from each entry's first
// use (0 for an entry of before schema 4, which has none), and those of the names the rollups
// counted, from their oldest period to their newest (as a log id: ms << 8). It reads a chunk of
// names at a time, in order, so that its memory is bounded whatever the file holds.
func backfillSeenDomains(tx *sql.Tx) error {
	upsert, err := tx.Prepare(`INSERT INTO domains_seen (domain, first, last) VALUES (?1, ?2, ?3)
		ON CONFLICT (domain) DO UPDATE SET first = min(first, excluded.first), last = max(last, excluded.last)`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for _, src := range []struct{ query, start string }{
		// name, first, last; after the name or number ?1
		{`SELECT id, name, coalesce(first, 0), coalesce(first, 0) FROM names WHERE id > ?1 ORDER BY id LIMIT ?2`, "0"},
		{`SELECT name, name, min(start) * 1000 << 8, max(start) * 1000 << 8 FROM rollup_names WHERE name > ?1 AND name <> '` + otherKey + `'
			GROUP BY name ORDER BY name LIMIT ?2`, ""},
	} {
		var after any = src.start
		for {
			domains := map[string][2]int64{}
			n := 0
			rows, err := tx.Query(src.query, after, backfillChunk)
			if err != nil {
				return err
			}
			for rows.Next() {
				var name string
				var at [2]int64
				if err := rows.Scan(&after, &name, &at[0], &at[1]); err != nil {
					rows.Close()
					return err
				}
				n++
				d := dnsname.RegisteredDomain(name)
				if d == "" {
					continue
				}
				if have, ok := domains[d]; ok {
					at = [2]int64{min(at[0], have[0]), max(at[1], have[1])}
				}
				domains[d] = at
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for d, at := range domains {
				if _, err := upsert.Exec(d, at[0], at[1]); err != nil {
					return err
				}
			}
			if n < backfillChunk {
				break
			}
		}
	}
	return nil
}
