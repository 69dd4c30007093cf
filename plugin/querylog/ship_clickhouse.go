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
// for database querylog, table querylog (TestShipDDLMatchesDeploy). One partition per UTC day;
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
// querylog ships, with a compatible type.
func ensureTable(ctx context.Context, conn driver.Conn, o shipOptions) error {
	if err := conn.Exec(ctx, tableDDL(o.database, o.table)); err != nil {
		return fmt.Errorf("creating table %s: %w", o.target(), err)
	}
	rows, err := conn.Query(ctx, `SELECT name, type FROM system.columns WHERE database = ? AND table = ?`, o.database, o.table)
	if err != nil {
		return fmt.Errorf("reading the columns of %s: %w", o.target(), err)
	}
	defer rows.Close()
	have := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return err
		}
		have[name] = typ
	}
	if err := rows.Err(); err != nil {
		return err
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

// compatibleType accepts the listed type, LowCardinality of it, and a DateTime of any zone.
func compatibleType(have, want string) bool {
	have = strings.TrimSuffix(strings.TrimPrefix(have, "LowCardinality("), ")")
	if strings.HasPrefix(want, "DateTime") {
		return have == "DateTime" || strings.HasPrefix(have, "DateTime(")
	}
	return have == want
}

// insertRows sends rows as one INSERT, with query id id.
func insertRows(ctx context.Context, conn driver.Conn, o shipOptions, id string, rows []shipRow) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithQueryID(id))
	b, err := conn.PrepareBatch(ctx, insertQuery(o))
	if err != nil {
		return err
	}
	cols := shipBlock(o.node, rows)
	for i, col := range cols {
		if err := b.Column(i).Append(col); err != nil {
			b.Abort()
			return fmt.Errorf("column %s: %w", shipColumns[i].name, err)
		}
	}
	return b.Send()
}

// shipBlock turns rows into one slice per column, in shipColumns order.
func shipBlock(node string, rows []shipRow) []any {
	n := len(rows)
	var (
		nodes                       = make([]string, n)
		seq                         = make([]uint64, n)
		ts, tsec, dur               = make([]int64, n), make([]int64, n), make([]int64, n)
		server, client, proto       = make([]string, n), make([]string, n), make([]string, n)
		qname, qtype, qclass, rcode = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		size                        = make([]uint32, n)
		answers                     = make([]uint16, n)
		do, aa, tc, rd              = make([]uint8, n), make([]uint8, n), make([]uint8, n), make([]uint8, n)
		ra, ad, cd                  = make([]uint8, n), make([]uint8, n), make([]uint8, n)
		plugin, up, meta, data      = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ede                         = make([]int32, n)
	)
	for i := range rows {
		r := &rows[i]
		nodes[i], seq[i], ts[i], tsec[i] = node, uint64(r.seq), r.ts, r.ts/1000
		server[i], client[i], proto[i], qname[i] = r.server, r.clientIP, r.proto, r.qname
		qtype[i], qclass[i], rcode[i] = r.qtype, r.qclass, r.rcode
		size[i], answers[i], dur[i], do[i] = r.size, r.answers, r.durationUS, r.doBit
		plugin[i], aa[i], tc[i], rd[i], ra[i], ad[i], cd[i] = r.plugin, r.aa, r.tc, r.rd, r.ra, r.ad, r.cd
		ede[i], up[i], meta[i], data[i] = r.ede, r.upstream, r.metadata, r.answerData
	}
	return []any{nodes, seq, ts, tsec, server, client, proto, qname, qtype, qclass, rcode, size, answers,
		dur, do, plugin, aa, tc, rd, ra, ad, cd, ede, up, meta, data}
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
