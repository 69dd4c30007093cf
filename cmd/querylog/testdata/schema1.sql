-- Schema 1 of querylog, copied from migrations[0] in plugin/querylog/schema.go (unexported),
-- for tests that read files of schema 1. Keep it as schema 1 shipped: it never changes.
CREATE TABLE queries (
	ts          INTEGER NOT NULL, -- Unix time in milliseconds when the query arrived
	server      TEXT    NOT NULL, -- listener, e.g. dns://:53
	client_ip   TEXT    NOT NULL,
	proto       TEXT    NOT NULL, -- udp, tcp, dot, doh, doh3, doq, grpc, unix
	qname       TEXT    NOT NULL, -- lower-cased, presentation format with \DDD escapes
	qtype       INTEGER NOT NULL,
	qclass      INTEGER NOT NULL,
	rcode       INTEGER NOT NULL,
	size        INTEGER NOT NULL, -- response bytes
	answers     INTEGER NOT NULL,
	duration_us INTEGER NOT NULL,
	"do"        INTEGER NOT NULL  -- DNSSEC OK bit of the query
);
-- ts only grows, so this index appends at its right edge and costs little on insert; it
-- serves every time-window question and retention. See README for measured alternatives.
CREATE INDEX queries_ts ON queries (ts);
CREATE TABLE qtype_names (code INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE rcode_names (code INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE VIEW queries_readable AS
SELECT q.ts, strftime('%Y-%m-%dT%H:%M:%fZ', q.ts / 1000.0, 'unixepoch') AS time,
       q.server, q.client_ip, q.proto, q.qname,
       coalesce(t.name, 'TYPE' || q.qtype) AS qtype,
       CASE q.qclass WHEN 1 THEN 'IN' WHEN 3 THEN 'CH' WHEN 4 THEN 'HS' WHEN 254 THEN 'NONE'
                     WHEN 255 THEN 'ANY' ELSE 'CLASS' || q.qclass END AS qclass,
       coalesce(r.name, 'RCODE' || q.rcode) AS rcode,
       q.size, q.answers, q.duration_us, q."do"
FROM queries q
LEFT JOIN qtype_names t ON t.code = q.qtype
LEFT JOIN rcode_names r ON r.code = q.rcode;
