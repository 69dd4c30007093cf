package logrow

import (
	"context"
	"database/sql/driver"

	"github.com/querylog/querylog/internal/rawsql"
)

// Reader reads rows of the log table as stored, decodes them (Decode) and names their
// dictionary and label numbers from caches. The plugin's shipper and its rollups' catch-up
// read rows in id order with Read; the querylog command reads its own selections of rows
// (Columns) and names them with Names, Clients and Labels. Reading the table rather than the
// queries view saves a lookup in names, clients and labels (three) a row: 5.7 µs of CPU a row
// shipping (BenchmarkShip), 3 µs counting for the rollups (BenchmarkRollupCatchUp). One
// goroutine at a time uses a Reader.
type Reader struct {
	Names, Clients, Pods *Dict
	Labels               Labels
}

// NewReader returns a Reader whose dictionary caches hold about maxTexts texts each.
func NewReader(maxTexts int) *Reader {
	return &Reader{Names: NewDict(NamesTable, maxTexts), Clients: NewDict(ClientsTable, maxTexts), Pods: NewDict(PodsTable, maxTexts)}
}

// Row is a row of the log table, decoded, with its texts.
type Row struct {
	ID int64
	Fields
	QName, ClientIP                         string // "" if the dictionary no longer has the number
	ServerLabel, PluginLabel, UpstreamLabel string // the texts of Fields.Server, Plugin and Upstream; "" for none
	Metadata, AnswerData                    string // "" unless asked for and there
	Namespace, Pod                          string // the client's, "" unless asked for and known
	Cache                                   int64  // CacheHit, CacheMiss or CacheNone
}

// The cache column's values, and CacheNone for NULL: no cache took part, or it was not probed.
const (
	CacheMiss = 0
	CacheHit  = 1
	CacheNone = -1
)

// Layout says which optional columns a log table has: metadata, answer_data, and the pod and
// cache columns (added together).
type Layout struct {
	Meta, Answers, Cluster bool
}

// Columns is the select list of a log row l that Read decodes: id, name, client, late, a, b,
// c, metadata, answer_data, pod and cache, the last four NULL where lay says the table has
// not got them.
func Columns(lay Layout) string {
	optional := func(has bool, col string) string {
		if has {
			return "l." + col
		}
		return "NULL"
	}
	return `l.id, l.name, l.client, l.late, l.a, l.b, l.c, ` + optional(lay.Meta, "metadata") + `, ` + optional(lay.Answers, "answer_data") +
		`, ` + optional(lay.Cluster, "pod") + `, ` + optional(lay.Cluster, "cache")
}

// CacheOf is the cache column's value v as Row.Cache has it.
func CacheOf(v driver.Value) int64 {
	if v == nil {
		return CacheNone
	}
	return Int(v)
}

// DecodeValues decodes the values of a row read with Columns.
func DecodeValues(v []driver.Value) (id int64, f Fields) {
	id = Int(v[0])
	return id, Decode(id, Int(v[3]), Int(v[4]), Int(v[5]), Int(v[6]))
}

// Read appends to dst up to limit rows of the log table with an id above after, in id order,
// read on dc; the caller holds a read transaction, so that rows, dictionaries and labels agree.
// lay says which optional columns to read (the table has them). A label the cache does not
// know makes it read the labels again, once a call.
func (r *Reader) Read(ctx context.Context, dc driver.Conn, after int64, limit int, lay Layout, dst []Row) ([]Row, error) {
	labelsRead := false
	label := func(kind, n int64) (string, error) {
		if n == 0 {
			return "", nil
		}
		t, ok := r.Labels.Text(kind, n)
		if !ok && !labelsRead {
			labelsRead = true // a label added since the cache was filled
			if err := r.Labels.Load(ctx, dc); err != nil {
				return "", err
			}
			t, _ = r.Labels.Text(kind, n)
		}
		return t, nil
	}
	err := rawsql.Each(ctx, dc, `SELECT `+Columns(lay)+` FROM log l WHERE l.id > ? ORDER BY l.id LIMIT ?`, []any{after, limit}, func(v []driver.Value) error {
		var row Row
		row.ID, row.Fields = DecodeValues(v)
		row.Metadata, _ = Text(v[7])
		row.AnswerData, _ = Text(v[8])
		row.Cache = CacheOf(v[10])
		var err error
		if row.ServerLabel, err = label(LabelServer, row.Server); err != nil {
			return err
		}
		if row.PluginLabel, err = label(LabelPlugin, row.Plugin); err != nil {
			return err
		}
		if row.UpstreamLabel, err = label(LabelUpstream, row.Upstream); err != nil {
			return err
		}
		if row.QName, _, err = r.Names.Ref(ctx, dc, v[1]); err != nil {
			return err
		}
		if row.ClientIP, _, err = r.Clients.Ref(ctx, dc, v[2]); err != nil {
			return err
		}
		if n, ok := v[9].(int64); ok {
			pod, _, err := r.Pods.Text(ctx, dc, n)
			if err != nil {
				return err
			}
			row.Namespace, row.Pod = SplitPod(pod)
		}
		dst = append(dst, row)
		return nil
	})
	return dst, err
}
