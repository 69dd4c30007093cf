-- Fleet questions over the table of querylog.sql: database dns, table querylog, as the docs'
-- `ship clickhouse://HOST:9000/dns` creates it (use the names of your URL). They run
-- on ClickHouse 18.16 and later (TestShipDeployFiles runs them):
--
--   clickhouse-client --multiquery < deploy/clickhouse/queries.sql
--
-- Always bound `time`: it selects partitions and the sort key (node, time, seq).

-- Gap and duplicate check, per node: duplicates = rows - distinct seqs, missing = ordinals n
-- in [first, last] that are not there. Both are 0 when every row of every node arrived once.
-- Rows that max_size deleted before they were shipped are missing on purpose; they are counted
-- in coredns_querylog_ship_dropped_total. Restricted to a time window, a few rows near its
-- edges may show as missing: n follows the order rows were written, time their arrival.
SELECT
    node,
    count() AS n_rows,
    uniqExact(seq) AS distinct_seqs,
    n_rows - distinct_seqs AS duplicates,
    max(n) - min(n) + 1 - uniqExact(n) AS missing,
    min(n) AS first_n,
    max(n) AS last_n
FROM dns.querylog
GROUP BY node
ORDER BY node;

-- Top domains across the fleet, last hour, with how many nodes saw each.
SELECT qname, count() AS queries, uniqExact(node) AS nodes
FROM dns.querylog
WHERE time >= now() - INTERVAL 1 HOUR
GROUP BY qname
ORDER BY queries DESC
LIMIT 20;

-- Per-node rate per minute, last hour: queries/s, NXDOMAIN and SERVFAIL shares, p99 duration.
SELECT
    toStartOfMinute(time) AS minute,
    node,
    round(count() / 60, 1) AS qps,
    round(100 * countIf(rcode = 'NXDOMAIN') / count(), 2) AS nxdomain_pct,
    round(100 * countIf(rcode = 'SERVFAIL') / count(), 2) AS servfail_pct,
    quantile(0.99)(duration_us) AS p99_us
FROM dns.querylog
WHERE time >= now() - INTERVAL 1 HOUR
GROUP BY minute, node
ORDER BY minute, node;

-- Nodes that have not sent anything for 5 minutes (a stalled shipper, or a node that is down),
-- among those seen in the last day.
SELECT node, max(time) AS last_row, now() - max(time) AS seconds_ago
FROM dns.querylog
WHERE time >= now() - INTERVAL 1 DAY
GROUP BY node
HAVING seconds_ago > 300
ORDER BY node;

-- Top clients across the fleet, last hour, with the nodes they used.
SELECT client_ip, count() AS queries, groupUniqArray(node) AS nodes
FROM dns.querylog
WHERE time >= now() - INTERVAL 1 HOUR
GROUP BY client_ip
ORDER BY queries DESC
LIMIT 20;
