package querylog

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

// shipColumns is the ClickHouse table, in shipRow's field order, with node first. The types work
// on ClickHouse 18.16, which has no DateTime64: ts keeps the milliseconds and time (seconds,
// UTC) serves partitioning and time windows. LowCardinality(T) is accepted where T is listed.
var shipColumns = []struct{ name, typ string }{
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
	for i, c := range shipColumns {
		sep := ","
		if i == len(shipColumns)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    `%s` %s%s\n", c.name, c.typ, sep)
	}
	b.WriteString(")\nENGINE = MergeTree\nPARTITION BY toYYYYMMDD(time)\nORDER BY (node, time, seq)\n")
	return b.String()
}

// insertQuery names every column, so a table may have more (with defaults).
func insertQuery(o shipOptions) string {
	names := make([]string, len(shipColumns))
	for i, c := range shipColumns {
		names[i] = "`" + c.name + "`"
	}
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", o.database, o.table, strings.Join(names, ", "))
}

// ensureTable creates the table if it does not exist and checks that it has every column
// querylog ships, with a compatible type. It creates only what is missing, so a user allowed to
// insert but not to create tables can ship to a table made for it.
func ensureTable(ctx context.Context, ch *clickHouse, o shipOptions) error {
	have, err := tableColumns(ctx, ch, o)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		if err := ch.exec(ctx, tableDDL(o.database, o.table)); err != nil {
			return fmt.Errorf("creating table %s: %w", o.target(), err)
		}
		if have, err = tableColumns(ctx, ch, o); err != nil {
			return err
		}
	}
	var problems, missing []string
	for _, c := range shipColumns {
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
		return fmt.Errorf("table %s does not have the columns querylog ships: %s (see deploy/clickhouse/querylog.sql)", o.target(), strings.Join(problems, "; "))
	}
	return nil
}

// tableColumns returns the table's columns and their types; none if it does not exist.
func tableColumns(ctx context.Context, ch *clickHouse, o shipOptions) (map[string]string, error) {
	cols, err := ch.query(ctx, fmt.Sprintf(`SELECT name, type FROM system.columns WHERE database = %s AND table = %s`,
		quote(o.database), quote(o.table)), "String", "String")
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", o.target(), err)
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
func insertRows(ctx context.Context, ch *clickHouse, o shipOptions, id string, rows []shipRow, cols *columns) error {
	return ch.insert(ctx, insertQuery(o), id, cols.fill(o.node, rows))
}

// columns holds a batch as one column per shipColumns entry, in its order. The shipper keeps
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

func (c *columns) fill(node string, rows []shipRow) []chproto.InputColumn {
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
		c.seq.Append(uint64(r.seq))
		c.n.Append(uint64(r.n))
		c.ts.Append(r.ts)
		c.time.AppendRaw(chproto.DateTime(r.ts / 1000))
		c.server.Append(r.server)
		c.client.Append(r.clientIP)
		c.proto.Append(r.proto)
		c.qname.Append(r.qname)
		c.qtype.Append(r.qtype)
		c.qclass.Append(r.qclass)
		c.rcode.Append(r.rcode)
		c.size.Append(r.size)
		c.answers.Append(r.answers)
		c.dur.Append(r.durationUS)
		c.do.Append(r.doBit)
		c.plugin.Append(r.plugin)
		c.aa.Append(r.aa)
		c.tc.Append(r.tc)
		c.rd.Append(r.rd)
		c.ra.Append(r.ra)
		c.ad.Append(r.ad)
		c.cd.Append(r.cd)
		c.ede.Append(r.ede)
		c.up.Append(r.upstream)
		c.meta.Append(r.metadata)
		c.data.Append(r.answerData)
	}
	input := make([]chproto.InputColumn, len(shipColumns))
	for i, col := range shipColumns {
		input[i] = chproto.InputColumn{Name: col.name, Data: data[i]}
	}
	return input
}

// shippedSeqs returns which of rows ClickHouse already holds for node, sorted. It looks only at
// the rows' own time window, which the sort key (node, time, seq) makes a short read.
func shippedSeqs(ctx context.Context, ch *clickHouse, o shipOptions, rows []shipRow) ([]uint64, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	lo, hi := rows[0].ts, rows[0].ts
	for _, r := range rows {
		lo, hi = min(lo, r.ts), max(hi, r.ts)
	}
	q := fmt.Sprintf(`SELECT seq FROM %s.%s WHERE node = %s AND time >= toDateTime(%d) AND time <= toDateTime(%d)
		AND seq >= %d AND seq <= %d ORDER BY seq`, o.database, o.table, quote(o.node), lo/1000, hi/1000,
		uint64(rows[0].seq), uint64(rows[len(rows)-1].seq))
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
func insertsRunning(ctx context.Context, ch *clickHouse, o shipOptions) (uint64, error) {
	cols, err := ch.query(ctx, fmt.Sprintf(`SELECT count() FROM system.processes WHERE startsWith(query_id, %s)`,
		quote(queryIDPrefix(o.node))), "UInt64")
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

func queryID(node string, rows []shipRow) string {
	return fmt.Sprintf("%s%d-%d", queryIDPrefix(node), rows[0].seq, rows[len(rows)-1].seq)
}

// withoutShipped removes from rows those whose seq is in shipped (both sorted by seq).
func withoutShipped(rows []shipRow, shipped []uint64) []shipRow {
	if len(shipped) == 0 {
		return rows
	}
	return slices.DeleteFunc(rows, func(r shipRow) bool {
		_, found := slices.BinarySearch(shipped, uint64(r.seq))
		return found
	})
}
