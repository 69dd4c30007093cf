-- The table querylog ships to, for ClickHouse 18.16 and later. The shipper runs this same
-- statement (with the database and table of its `ship` URL) when the table is missing, so an
-- empty database is enough; run it yourself to create the table ahead, or to see what it is.
--
--   clickhouse-client --multiquery < deploy/clickhouse/querylog.sql
--
-- One row per logged reply. (node, seq) identifies a row across the fleet: node is the
-- querylog `node` option (the host name by default), seq the row's id in that node's SQLite
-- file (its arrival time in ms x 256 plus a counter), so within a node seq only grows and a
-- duplicate shows in queries.sql's check; n counts the rows the node has written, 1, 2, 3...,
-- so a gap shows there too. The other columns mirror the SQLite view queries_readable:
--   ts           Unix time in milliseconds when the query arrived (18.16 has no DateTime64)
--   time         the same in whole seconds, UTC: partitions and time windows
--   qtype, qclass, rcode   names (A, IN, NXDOMAIN), as queries_readable shows them
--   duration_us  time to answer; do: the DNSSEC OK bit (0/1)
--   plugin, aa, tc, rd, ra, ad, cd, ede, upstream, metadata, answer_data: empty, 0, and ede -1
--   (-1 means no Extended DNS Error) for rows written before the upgrade to schema 2.
-- Partitioned by UTC day; sorted by (node, time, seq), which serves both a time window
-- across the fleet and one node's rows. A plain MergeTree: the shipper checks what ClickHouse
-- already holds before it sends anything again, so count() is exact without FINAL.
-- The shipper needs every column with these types (LowCardinality of a type is accepted, and
-- more columns with defaults are fine). For current ClickHouse, see querylog-ttl.sql.

CREATE DATABASE IF NOT EXISTS dns;

CREATE TABLE IF NOT EXISTS dns.querylog
(
    `node` String,
    `seq` UInt64,
    `n` UInt64,
    `ts` Int64,
    `time` DateTime('UTC'),
    `server` String,
    `client_ip` String,
    `proto` String,
    `qname` String,
    `qtype` String,
    `qclass` String,
    `rcode` String,
    `size` UInt32,
    `answers` UInt16,
    `duration_us` Int64,
    `do` UInt8,
    `plugin` String,
    `aa` UInt8,
    `tc` UInt8,
    `rd` UInt8,
    `ra` UInt8,
    `ad` UInt8,
    `cd` UInt8,
    `ede` Int32,
    `upstream` String,
    `metadata` String,
    `answer_data` String
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (node, time, seq)
;
