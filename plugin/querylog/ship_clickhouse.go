package querylog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
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

const (
	shipDialTimeout = 5 * time.Second
	// shipQueryTimeout bounds one insert or question; a 100,000-row insert takes well under a
	// second on loopback.
	shipQueryTimeout = 60 * time.Second
	// shipConnLifetime is how long a connection is reused: after a failover, the first
	// address is tried again at the latest this much later.
	shipConnLifetime = 5 * time.Minute
)

// openClickHouse returns a connection pool over o's addresses, dialled lazily in the order
// given: the first that answers is used until it fails or shipConnLifetime has passed.
func openClickHouse(o shipOptions) (driver.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{
		Addr:             o.addrList(),
		Auth:             clickhouse.Auth{Database: o.database, Username: o.user, Password: o.password},
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		DialTimeout:      shipDialTimeout,
		ReadTimeout:      shipQueryTimeout,
		ConnMaxLifetime:  shipConnLifetime,
		MaxOpenConns:     2,
		MaxIdleConns:     1,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:       clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "coredns-querylog", Version: "1"}}},
	})
}

// ensureTable creates the table if it does not exist and checks that it has every column
// querylog ships, with a compatible type. It creates only what is missing, so a user allowed to
// insert but not to create tables can ship to a table made for it.
func ensureTable(ctx context.Context, conn driver.Conn, o shipOptions) error {
	have, err := tableColumns(ctx, conn, o)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		if err := conn.Exec(ctx, tableDDL(o.database, o.table)); err != nil {
			return fmt.Errorf("creating table %s: %w", o.target(), err)
		}
		if have, err = tableColumns(ctx, conn, o); err != nil {
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
			problems = append(problems, fmt.Sprintf("column %s is %s, want %s", c.name, typ, c.typ))
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
func tableColumns(ctx context.Context, conn driver.Conn, o shipOptions) (map[string]string, error) {
	rows, err := conn.Query(ctx, `SELECT name, type FROM system.columns WHERE database = ? AND table = ?`, o.database, o.table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", o.target(), err)
	}
	defer rows.Close()
	have := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		have[name] = typ
	}
	return have, rows.Err()
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
func insertRows(ctx context.Context, conn driver.Conn, o shipOptions, id string, rows []shipRow, cols *columns) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithQueryID(id))
	b, err := conn.PrepareBatch(ctx, insertQuery(o))
	if err != nil {
		return err
	}
	for i, col := range cols.fill(o.node, rows) {
		if err := b.Column(i).Append(col); err != nil {
			b.Abort()
			return fmt.Errorf("column %s: %w", shipColumns[i].name, err)
		}
	}
	return b.Send()
}

// columns holds a batch as one slice per column, in shipColumns order. The shipper keeps one
// and reuses its slices from batch to batch.
type columns struct {
	nodes                                              []string
	seq, n                                             []uint64
	ts, tsec, dur                                      []int64
	server, client, proto, qname, qtype, qclass, rcode []string
	size                                               []uint32
	answers                                            []uint16
	do, aa, tc, rd, ra, ad, cd                         []uint8
	plugin, up, meta, data                             []string
	ede                                                []int32
}

func (c *columns) fill(node string, rows []shipRow) []any {
	*c = columns{
		c.nodes[:0], c.seq[:0], c.n[:0], c.ts[:0], c.tsec[:0], c.dur[:0],
		c.server[:0], c.client[:0], c.proto[:0], c.qname[:0], c.qtype[:0], c.qclass[:0], c.rcode[:0],
		c.size[:0], c.answers[:0], c.do[:0], c.aa[:0], c.tc[:0], c.rd[:0], c.ra[:0], c.ad[:0], c.cd[:0],
		c.plugin[:0], c.up[:0], c.meta[:0], c.data[:0], c.ede[:0],
	}
	for i := range rows {
		r := &rows[i]
		c.nodes, c.seq, c.ts, c.tsec = append(c.nodes, node), append(c.seq, uint64(r.seq)), append(c.ts, r.ts), append(c.tsec, r.ts/1000)
		c.n = append(c.n, uint64(r.n))
		c.server, c.client, c.proto = append(c.server, r.server), append(c.client, r.clientIP), append(c.proto, r.proto)
		c.qname, c.qtype, c.qclass, c.rcode = append(c.qname, r.qname), append(c.qtype, r.qtype), append(c.qclass, r.qclass), append(c.rcode, r.rcode)
		c.size, c.answers, c.dur, c.do = append(c.size, r.size), append(c.answers, r.answers), append(c.dur, r.durationUS), append(c.do, r.doBit)
		c.plugin, c.aa, c.tc, c.rd = append(c.plugin, r.plugin), append(c.aa, r.aa), append(c.tc, r.tc), append(c.rd, r.rd)
		c.ra, c.ad, c.cd, c.ede = append(c.ra, r.ra), append(c.ad, r.ad), append(c.cd, r.cd), append(c.ede, r.ede)
		c.up, c.meta, c.data = append(c.up, r.upstream), append(c.meta, r.metadata), append(c.data, r.answerData)
	}
	return []any{c.nodes, c.seq, c.n, c.ts, c.tsec, c.server, c.client, c.proto, c.qname, c.qtype, c.qclass, c.rcode,
		c.size, c.answers, c.dur, c.do, c.plugin, c.aa, c.tc, c.rd, c.ra, c.ad, c.cd, c.ede, c.up, c.meta, c.data}
}

// clear drops the strings the buffers point to, so that a batch's names are not kept alive
// until the next one.
func (c *columns) clear() {
	for _, s := range [][]string{c.nodes, c.server, c.client, c.proto, c.qname, c.qtype, c.qclass, c.rcode, c.plugin, c.up, c.meta, c.data} {
		clear(s)
	}
}

// shippedSeqs returns which of rows ClickHouse already holds for node, sorted. It looks only at
// the rows' own time window, which the sort key (node, time, seq) makes a short read.
func shippedSeqs(ctx context.Context, conn driver.Conn, o shipOptions, rows []shipRow) ([]uint64, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	lo, hi := rows[0].ts, rows[0].ts
	for _, r := range rows {
		lo, hi = min(lo, r.ts), max(hi, r.ts)
	}
	q := fmt.Sprintf(`SELECT seq FROM %s.%s WHERE node = ? AND time >= toDateTime(?) AND time <= toDateTime(?)
		AND seq >= ? AND seq <= ? ORDER BY seq`, o.database, o.table)
	res, err := conn.Query(ctx, q, o.node, lo/1000, hi/1000, uint64(rows[0].seq), uint64(rows[len(rows)-1].seq))
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var seqs []uint64
	for res.Next() {
		var s uint64
		if err := res.Scan(&s); err != nil {
			return nil, err
		}
		seqs = append(seqs, s)
	}
	return seqs, res.Err()
}

// insertsRunning counts the inserts of this node that ClickHouse is still executing, from any
// process: an insert whose reply was lost may still be committing.
func insertsRunning(ctx context.Context, conn driver.Conn, o shipOptions) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, `SELECT count() FROM system.processes WHERE startsWith(query_id, ?)`, queryIDPrefix(o.node)).Scan(&n)
	return n, err
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
