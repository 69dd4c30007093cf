package querylog

import (
	"context"
	"database/sql/driver"
	"slices"
	"strings"

	"github.com/querylog/querylog/internal/logrow"
	"github.com/querylog/querylog/internal/rawsql"
)

// logReader reads rows of the log table as stored, decodes them here (logrow.Decode) and names
// their dictionary and label numbers from caches, for the two readers that go through every
// row: the shipper and the rollups' catch-up. Through the queries view each row cost a lookup
// in names, clients and labels (three): 5.7 µs of CPU a row shipping (BenchmarkShip), 3 µs
// counting for the rollups (BenchmarkRollupCatchUp). Dictionary numbers are never given twice,
// so a cached text stays right; a cache is emptied when it would grow past logCacheLimit. One
// goroutine at a time uses a logReader.
type logReader struct {
	names, clients map[int64]string    // dictionary texts by number
	labels         map[[2]int64]string // label texts by kind and number
}

// logCacheLimit bounds each dictionary cache, in texts (about 100 bytes each).
const logCacheLimit = 200_000

// logRow is a row of the log table, decoded, with its texts.
type logRow struct {
	id int64
	logrow.Fields
	qname, clientIP          string
	server, plugin, upstream string // the texts of Fields.Server, Plugin and Upstream; "" for none
	metadata, answerData     string // "" unless asked for and there
}

func newLogReader() *logReader {
	return &logReader{names: map[int64]string{}, clients: map[int64]string{}, labels: map[[2]int64]string{}}
}

// read appends to dst up to limit rows of the log table with an id above after, in id order,
// read on dc; the caller holds a read transaction, so that rows, dictionaries and labels agree.
// meta and answers say whether to read those columns (the table has them).
func (r *logReader) read(ctx context.Context, dc driver.Conn, after int64, limit int, meta, answers bool, dst []logRow) ([]logRow, error) {
	optional := func(has bool, col string) string {
		if has {
			return col
		}
		return "NULL"
	}
	// Names and clients that are dictionary numbers are named once all rows are read.
	var nameIDs, clientIDs []int64
	var nameAt, clientAt []int // the rows (in dst) that wait for them
	labelsRead := false
	label := func(kind, n int64) (string, error) {
		if n == 0 {
			return "", nil
		}
		t, ok := r.labels[[2]int64{kind, n}]
		if !ok && !labelsRead {
			labelsRead = true // a label added since the cache was filled
			if err := rawsql.Each(ctx, dc, `SELECT kind, n, text FROM labels`, nil, func(v []driver.Value) error {
				r.labels[[2]int64{asInt(v[0]), asInt(v[1])}] = asText(v[2])
				return nil
			}); err != nil {
				return "", err
			}
			t = r.labels[[2]int64{kind, n}]
		}
		return t, nil
	}
	first := len(dst)
	err := rawsql.Each(ctx, dc, `SELECT id, name, client, late, a, b, c, `+optional(meta, "metadata")+`, `+optional(answers, "answer_data")+`
		FROM log WHERE id > ? ORDER BY id LIMIT ?`, []any{after, limit}, func(v []driver.Value) error {
		id := asInt(v[0])
		row := logRow{id: id, Fields: logrow.Decode(id, asInt(v[3]), asInt(v[4]), asInt(v[5]), asInt(v[6])),
			metadata: asText(v[7]), answerData: asText(v[8])}
		var err error
		if row.server, err = label(logrow.LabelServer, row.Server); err != nil {
			return err
		}
		if row.plugin, err = label(logrow.LabelPlugin, row.Plugin); err != nil {
			return err
		}
		if row.upstream, err = label(logrow.LabelUpstream, row.Upstream); err != nil {
			return err
		}
		if n, ok := v[1].(int64); ok {
			if row.qname, ok = r.names[n]; !ok {
				nameIDs, nameAt = append(nameIDs, n), append(nameAt, len(dst))
			}
		} else {
			row.qname = asText(v[1])
		}
		if n, ok := v[2].(int64); ok {
			if row.clientIP, ok = r.clients[n]; !ok {
				clientIDs, clientAt = append(clientIDs, n), append(clientAt, len(dst))
			}
		} else {
			row.clientIP = asText(v[2])
		}
		dst = append(dst, row)
		return nil
	})
	if err != nil || len(dst) == first {
		return dst, err
	}
	if err := lookUp(ctx, dc, "names", "name", r.names, nameIDs); err != nil {
		return dst, err
	}
	for i, at := range nameAt {
		dst[at].qname = r.names[nameIDs[i]]
	}
	if err := lookUp(ctx, dc, "clients", "addr", r.clients, clientIDs); err != nil {
		return dst, err
	}
	for i, at := range clientAt {
		dst[at].clientIP = r.clients[clientIDs[i]]
	}
	return dst, nil
}

// lookUp adds to cache the texts of the dictionary table's numbers ids, a few hundred a query;
// it empties the cache first if they would grow it past logCacheLimit.
func lookUp(ctx context.Context, dc driver.Conn, table, col string, cache map[int64]string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if len(cache)+len(ids) > logCacheLimit {
		clear(cache)
	}
	ids = slices.Clone(ids) // the caller's order pairs them with rows
	slices.Sort(ids)
	ids = slices.Compact(ids)
	const chunk = 500
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		query := `SELECT id, ` + col + ` FROM ` + table + ` WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `)`
		if err := rawsql.Each(ctx, dc, query, args, func(v []driver.Value) error {
			cache[asInt(v[0])] = asText(v[1])
			return nil
		}); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// asInt and asText take a column's value as the driver returns it for INTEGER and TEXT.
func asInt(v driver.Value) int64 {
	n, _ := v.(int64)
	return n
}

func asText(v driver.Value) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}
