package ship

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"

	"github.com/querylog/querylog/internal/chwire"
)

// The ClickHouse side of shipping: the table, the connection with failover, inserts, and the
// questions the shipper asks to resume without sending a row twice.

// columnDefs is the ClickHouse table, in Row's field order, with node first. The types work
// on ClickHouse 18.16, which has no DateTime64: ts keeps the milliseconds and time (seconds,
// UTC) serves partitioning and time windows. LowCardinality(T) is accepted where T is listed.
var columnDefs = []struct{ name, typ string }{
	{"node", "String"},
	{"seq", "UInt64"},
	{"n", "UInt64"},
	{"ts", "Int64"},
	{"time", "DateTime('UTC')"},
	{"server", "String"},
	{"client_ip", "String"},
	{"proto", "String"},
	{"qname", "String"},
	{"qtype", "String"},
	{"qclass", "String"},
	{"rcode", "String"},
	{"size", "UInt32"},
	{"answers", "UInt16"},
	{"duration_us", "Int64"},
	{"do", "UInt8"},
	{"plugin", "String"},
	{"aa", "UInt8"},
	{"tc", "UInt8"},
	{"rd", "UInt8"},
	{"ra", "UInt8"},
	{"ad", "UInt8"},
	{"cd", "UInt8"},
	{"ede", "Int32"},
	{"upstream", "String"},
	{"metadata", "String"},
	{"answer_data", "String"},
}

// tableDDL creates the table if it is missing; deploy/clickhouse/querylog.sql is this text
// for database dns, table querylog (TestShipDeployFiles). One partition per UTC day;
// sorted by node, then time, so that both a time window across the fleet and one node's rows
// read few granules. A plain MergeTree: the shipper itself never leaves a duplicate (see
// ship.go), so count() is exact without FINAL.
func tableDDL(database, table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s\n(\n", database, table)
	for i, c := range columnDefs {
		sep := ","
		if i == len(columnDefs)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    `%s` %s%s\n", c.name, c.typ, sep)
	}
	b.WriteString(")\nENGINE = MergeTree\nPARTITION BY toYYYYMMDD(time)\nORDER BY (node, time, seq)\n")
	return b.String()
}

// insertQuery names every column, so a table may have more (with defaults).
func insertQuery(o Options) string {
	names := make([]string, len(columnDefs))
	for i, c := range columnDefs {
		names[i] = "`" + c.name + "`"
	}
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", o.Database, o.Table, strings.Join(names, ", "))
}

// ensureTable creates the table if it does not exist and checks that it has every column
// querylog ships, with a compatible type. It creates only what is missing, so a user allowed to
// insert but not to create tables can ship to a table made for it.
func ensureTable(ctx context.Context, ch *clickHouse, o Options) error {
	have, err := tableColumns(ctx, ch, o)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		if err := ch.exec(ctx, tableDDL(o.Database, o.Table)); err != nil {
			return fmt.Errorf("creating table %s: %w", o.Target(), err)
		}
		if have, err = tableColumns(ctx, ch, o); err != nil {
			return err
		}
	}
	var problems, missing []string
	for _, c := range columnDefs {
		typ, ok := have[c.name]
		switch {
		case !ok:
			missing = append(missing, c.name)
		case !compatibleType(typ, c.typ):
			problems = append(problems, fmt.Sprintf("column %s is %s, want %s", c.name, chwire.Printable(typ), c.typ))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "no column "+strings.Join(missing, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("table %s does not have the columns querylog ships: %s (see deploy/clickhouse/querylog.sql)", o.Target(), strings.Join(problems, "; "))
	}
	return nil
}

// tableColumns returns the table's columns and their types; none if it does not exist.
func tableColumns(ctx context.Context, ch *clickHouse, o Options) (map[string]string, error) {
	cols, err := ch.query(ctx, fmt.Sprintf(`SELECT name, type FROM system.columns WHERE database = %s AND table = %s`,
		quote(o.Database), quote(o.Table)), "String", "String")
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", o.Target(), err)
	}
	have := map[string]string{}
	for i, name := range cols[0].Strings {
		have[name] = cols[1].Strings[i]
	}
	return have, nil
}

// compatibleType accepts the listed type, LowCardinality of it, and a DateTime of any zone.
func compatibleType(have, want string) bool {
	have = strings.TrimSuffix(strings.TrimPrefix(have, "LowCardinality("), ")")
	if strings.HasPrefix(want, "DateTime") {
		return have == "DateTime" || strings.HasPrefix(have, "DateTime(")
	}
	return have == want
}

// insertRows sends rows as one INSERT, with query id id, through the column buffers cols.
func insertRows(ctx context.Context, ch *clickHouse, o Options, id string, rows []Row, cols *columns) error {
	return ch.insert(ctx, insertQuery(o), id, cols.fill(o.Node, rows))
}

// columns holds a batch as one column per columnDefs entry, in its order. The shipper keeps
// one and reuses its buffers from batch to batch.
type columns struct {
	nodes, server, client, proto, qname, qtype, qclass, rcode, plugin, up, meta, data chproto.ColStr
	seq, n                                                                            chproto.ColUInt64
	ts, dur                                                                           chproto.ColInt64
	time                                                                              chproto.ColDateTime
	size                                                                              chproto.ColUInt32
	answers                                                                           chproto.ColUInt16
	do, aa, tc, rd, ra, ad, cd                                                        chproto.ColUInt8
	ede                                                                               chproto.ColInt32
}

func (c *columns) fill(node string, rows []Row) []chproto.InputColumn {
	data := []chproto.ColInput{&c.nodes, &c.seq, &c.n, &c.ts, &c.time, &c.server, &c.client, &c.proto, &c.qname, &c.qtype,
		&c.qclass, &c.rcode, &c.size, &c.answers, &c.dur, &c.do, &c.plugin, &c.aa, &c.tc, &c.rd, &c.ra, &c.ad, &c.cd,
		&c.ede, &c.up, &c.meta, &c.data}
	for _, d := range data {
		d.(chproto.Resettable).Reset()
	}
	c.time.Location = time.UTC
	for i := range rows {
		r := &rows[i]
		c.nodes.Append(node)
		c.seq.Append(uint64(r.Seq))
		c.n.Append(uint64(r.N))
		c.ts.Append(r.TS)
		c.time.AppendRaw(chproto.DateTime(r.TS / 1000))
		c.server.Append(r.Server)
		c.client.Append(r.ClientIP)
		c.proto.Append(r.Proto)
		c.qname.Append(r.Qname)
		c.qtype.Append(r.Qtype)
		c.qclass.Append(r.Qclass)
		c.rcode.Append(r.Rcode)
		c.size.Append(r.Size)
		c.answers.Append(r.Answers)
		c.dur.Append(r.DurationUS)
		c.do.Append(r.DO)
		c.plugin.Append(r.Plugin)
		c.aa.Append(r.AA)
		c.tc.Append(r.TC)
		c.rd.Append(r.RD)
		c.ra.Append(r.RA)
		c.ad.Append(r.AD)
		c.cd.Append(r.CD)
		c.ede.Append(r.EDE)
		c.up.Append(r.Upstream)
		c.meta.Append(r.Metadata)
		c.data.Append(r.AnswerData)
	}
	input := make([]chproto.InputColumn, len(columnDefs))
	for i, col := range columnDefs {
		input[i] = chproto.InputColumn{Name: col.name, Data: data[i]}
	}
	return input
}

// shippedSeqs returns which of rows ClickHouse already holds for node, sorted. It looks only at
// the rows' own time window, which the sort key (node, time, seq) makes a short read.
func shippedSeqs(ctx context.Context, ch *clickHouse, o Options, rows []Row) ([]uint64, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	lo, hi := rows[0].TS, rows[0].TS
	for _, r := range rows {
		lo, hi = min(lo, r.TS), max(hi, r.TS)
	}
	q := fmt.Sprintf(`SELECT seq FROM %s.%s WHERE node = %s AND time >= toDateTime(%d) AND time <= toDateTime(%d)
		AND seq >= %d AND seq <= %d ORDER BY seq`, o.Database, o.Table, quote(o.Node), lo/1000, hi/1000,
		uint64(rows[0].Seq), uint64(rows[len(rows)-1].Seq))
	cols, err := ch.query(ctx, q, "UInt64")
	if err != nil {
		return nil, err
	}
	if !slices.IsSorted(cols[0].Uints) {
		return nil, fmt.Errorf("the shipped seqs came unsorted")
	}
	return cols[0].Uints, nil
}

// insertsRunning counts the inserts of this node that ClickHouse is still executing, from any
// process: an insert whose reply was lost may still be committing.
func insertsRunning(ctx context.Context, ch *clickHouse, o Options) (uint64, error) {
	cols, err := ch.query(ctx, fmt.Sprintf(`SELECT count() FROM system.processes WHERE startsWith(query_id, %s)`,
		quote(queryIDPrefix(o.Node))), "UInt64")
	if err != nil {
		return 0, err
	}
	if len(cols[0].Uints) != 1 {
		return 0, fmt.Errorf("count() returned %d rows", len(cols[0].Uints))
	}
	return cols[0].Uints[0], nil
}

// queryIDPrefix starts the query id of every insert of node: "querylog:NODE:FIRST-LAST".
func queryIDPrefix(node string) string { return "querylog:" + node + ":" }

func queryID(node string, rows []Row) string {
	return fmt.Sprintf("%s%d-%d", queryIDPrefix(node), rows[0].Seq, rows[len(rows)-1].Seq)
}

// withoutShipped removes from rows those whose seq is in shipped (both sorted by seq).
func withoutShipped(rows []Row, shipped []uint64) []Row {
	if len(shipped) == 0 {
		return rows
	}
	return slices.DeleteFunc(rows, func(r Row) bool {
		_, found := slices.BinarySearch(shipped, uint64(r.Seq))
		return found
	})
}
