-- The querylog table for current ClickHouse releases (not 18.16, which has no TTL or codecs):
-- the columns of querylog.sql, with LowCardinality for the columns of few values, compression
-- codecs, and rows deleted 30 days after they were answered. ttl_only_drop_parts drops a day's
-- partition as a whole once all of it has expired, instead of rewriting parts.
-- The shipper accepts this table as it is: create it before the first `ship` starts, since the
-- shipper only creates the 18.16 table when none exists.
--
--   clickhouse-client --multiquery < deploy/clickhouse/querylog-ttl.sql

CREATE DATABASE IF NOT EXISTS dns;

CREATE TABLE IF NOT EXISTS dns.querylog
(
    `node` LowCardinality(String),
    `seq` UInt64 CODEC(Delta, ZSTD(1)),
    `n` UInt64 CODEC(Delta, ZSTD(1)),
    `ts` Int64 CODEC(Delta, ZSTD(1)),
    `time` DateTime('UTC') CODEC(Delta, ZSTD(1)),
    `server` LowCardinality(String),
    `client_ip` String CODEC(ZSTD(1)),
    `proto` LowCardinality(String),
    `qname` String CODEC(ZSTD(1)),
    `qtype` LowCardinality(String),
    `qclass` LowCardinality(String),
    `rcode` LowCardinality(String),
    `size` UInt32 CODEC(ZSTD(1)),
    `answers` UInt16 CODEC(ZSTD(1)),
    `duration_us` Int64 CODEC(ZSTD(1)),
    `do` UInt8,
    `plugin` LowCardinality(String),
    `aa` UInt8,
    `tc` UInt8,
    `rd` UInt8,
    `ra` UInt8,
    `ad` UInt8,
    `cd` UInt8,
    `ede` Int32,
    `upstream` LowCardinality(String),
    `metadata` String CODEC(ZSTD(1)),
    `answer_data` String CODEC(ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (node, time, seq)
TTL time + INTERVAL 30 DAY DELETE
SETTINGS ttl_only_drop_parts = 1;
