package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/querylog/querylog/internal/dnsname"
	"github.com/querylog/querylog/internal/logrow"
)

// row is one logged reply, with the columns of the queries_readable view (plugin/querylog/
// schema.go) before names are given to codes.
type row struct {
	id     int64 // the log's id; for a row of schema 1, its rowid
	v1     bool  // a row of schema 1: no flags but do, no plugin, EDE or upstream
	ts     int64 // arrival, Unix ms
	server string
	proto  string
	flags  int64 // bits aa tc rd ra ad cd do, as the log stores them

	client, qname, plugin, upstream, metadata, answerData sql.NullString
	namespace, pod, cache                                 sql.NullString // NULL: not known (cache: not probed)

	qtype, qclass, rcode, size, answers, durationUS int64
	ede                                             sql.NullInt64
}

// decode fills r from the values v of a log row (logrow.Columns), naming its labels; the
// caller has named its name and client. The tests compare what is decoded here with the views
// on files the plugin wrote.
func (d *database) decode(r *row, v []driver.Value) {
	id, f := logrow.DecodeValues(v)
	r.id, r.ts = id, f.TS
	r.qtype, r.flags, r.rcode, r.qclass = f.Qtype, f.Flags, f.Rcode, f.Qclass
	r.server, _ = d.reader.Labels.Text(logrow.LabelServer, f.Server)
	r.plugin = d.label(logrow.LabelPlugin, f.Plugin)
	r.proto = logrow.Proto(f.Proto)
	r.upstream = d.label(logrow.LabelUpstream, f.Upstream)
	r.answers = f.Answers
	r.ede = sql.NullInt64{Int64: f.EDE, Valid: f.EDE >= 0}
	r.size, r.durationUS = f.Size, f.DurationUS
	r.metadata.String, r.metadata.Valid = logrow.Text(v[7])
	r.answerData.String, r.answerData.Valid = logrow.Text(v[8])
	r.cache = sql.NullString{}
	switch logrow.CacheOf(v[10]) {
	case logrow.CacheHit:
		r.cache = sql.NullString{String: "hit", Valid: true}
	case logrow.CacheMiss:
		r.cache = sql.NullString{String: "miss", Valid: true}
	}
}

// pod names the namespace and pod of a log row's pod column value v.
func (d *database) pod(ctx context.Context, r *row, v driver.Value) error {
	r.namespace, r.pod = sql.NullString{}, sql.NullString{}
	n, ok := v.(int64)
	if !ok {
		return nil
	}
	text, ok, err := d.reader.Pods.Text(ctx, d.dc, n)
	if err != nil || !ok {
		return err
	}
	ns, pod := logrow.SplitPod(text)
	r.namespace, r.pod = sql.NullString{String: ns, Valid: true}, sql.NullString{String: pod, Valid: true}
	return nil
}

func (d *database) label(kind, n int64) sql.NullString {
	t, ok := d.reader.Labels.Text(kind, n)
	return sql.NullString{String: t, Valid: ok}
}

// rowQuery selects rows of the log with ids in [lo, hi), or of schema 1, matching conds,
// newest first or oldest first, at most limit of them (0: all).
type rowQuery struct {
	lo, hi  int64
	conds   []string
	args    []any
	newest  bool // newest first
	limit   int
	byRowid bool      // schema 1: in rowid order (the order written) rather than by ts
	name    string    // log rows: this name or one under it, matched as rows are read
	client  *client   // log rows: this client, matched as rows are read
	pods    *podMatch // log rows: of these pods (by SQL)
}

// errEnough stops reading rows once a query has what it needs.
var errEnough = errors.New("enough rows")

// matchScan is how many rows a search by name or client reads, matching them as it goes, before
// it finds the dictionary's matching numbers (one pass over the dictionary's numbers that the
// rows' epochs use) to let SQLite skip the rest: enough for the first page of a common name,
// a small part of a scan for a rare one. Rows cost about 1 µs each to read into Go, a quarter
// of that to skip in SQLite. (A variable for the tests.)
var matchScan = 20_000

// logRows calls f with each row of the log that q selects, in id order.
func (d *database) logRows(ctx context.Context, q rowQuery, f func(*row) error) error {
	// The ids there are, so that chunks of a scan are not spent on ids no row has.
	b, err := d.logBounds(ctx, false)
	if err != nil || !b.first.Valid {
		return err
	}
	q.lo, q.hi = max(q.lo, b.first.Int64), min(q.hi, b.last.Int64+1)
	s := &logScan{d: d, q: q, f: f}
	if q.name == "" && q.client == nil {
		return s.read(ctx, nil, nil, 0)
	}
	// The newest (or oldest) rows first, matched as they are read; then, if the scan goes on,
	// the rest with SQLite matching the dictionaries' numbers.
	if err := s.read(ctx, nil, nil, matchScan); !errors.Is(err, errScanned) {
		return err
	}
	conds, args, err := d.matchConds(ctx, s.q)
	if err != nil {
		return err
	}
	return s.read(ctx, conds, args, 0)
}

// logBounds are the first and last ids of the log, and with oldest its oldest arrival (Unix
// ms); NULL when it has no rows.
type logBounds struct{ first, last, oldest sql.NullInt64 }

// logBounds finds the bounds of the log. A row is written late by seconds at most, so the
// oldest arrival is among the rows of the first minute of ids (as stats finds it).
func (d *database) logBounds(ctx context.Context, oldest bool) (logBounds, error) {
	var b logBounds
	err := d.row(ctx, `SELECT (SELECT min(id) FROM log), (SELECT max(id) FROM log)`, nil, &b.first, &b.last)
	if err == nil && oldest {
		err = d.oldestArrival(ctx, &b)
	}
	return b, err
}

// oldestArrival sets b.oldest: a scan of the first minute of ids (at 10,000 QPS, 600,000 rows).
func (d *database) oldestArrival(ctx context.Context, b *logBounds) error {
	if !b.first.Valid {
		return nil
	}
	return d.row(ctx, `SELECT min((id >> 8) - late) FROM log WHERE id < ? + (60000 << 8)`, []any{b.first.Int64}, &b.oldest)
}

// errScanned stops reading rows once a query has read as many as it meant to.
var errScanned = errors.New("rows scanned")

// logScan reads the rows of a rowQuery of the log, in one or more passes.
type logScan struct {
	d         *database
	q         rowQuery // lo and hi narrow as rows are read
	f         func(*row) error
	r         row
	got, seen int // rows passed to f, and read
}

// read reads the rows of s.q that conds also select, until scan rows have been read (0: no
// limit) or q.limit passed to f, a chunk of ids at a time (see chunks).
func (s *logScan) read(ctx context.Context, conds []string, args []any, scan int) error {
	d, q := s.d, &s.q
	cols := logrow.Columns(logrow.Layout{Meta: d.extra, Answers: d.extra, Cluster: d.cluster})
	all := append(slices.Clip(conds), q.conds...)
	args = append(slices.Clip(args), q.args...)
	if q.pods != nil {
		cond, podArgs := q.pods.cond(d)
		all, args = append(all, cond), append(args, podArgs...)
	}
	where := conj(all)
	each := func(v []driver.Value) error {
		id := logrow.Int(v[0])
		if q.newest {
			q.hi = id
		} else {
			q.lo = id + 1
		}
		s.seen++
		r := &s.r
		var err error
		if r.qname, err = d.ref(ctx, d.reader.Names, v[1]); err != nil {
			return err
		}
		if r.client, err = d.ref(ctx, d.reader.Clients, v[2]); err != nil {
			return err
		}
		if (q.name == "" || (r.qname.Valid && dnsname.InZone(r.qname.String, q.name))) && (q.client == nil || (r.client.Valid && q.client.match(r.client.String))) {
			d.decode(r, v)
			if err := d.pod(ctx, r, v[9]); err != nil {
				return err
			}
			if err := s.f(r); err != nil {
				return err
			}
			if s.got++; s.got == q.limit {
				return errEnough
			}
		}
		if s.seen == scan {
			return errScanned
		}
		return nil
	}
	err := chunks(ctx, q.lo, q.hi, chunkIDs, q.newest, func(from, to int64) error {
		sqlLimit := 0 // SQLite stops at the limit when it does all the matching
		if q.limit > 0 && ((q.name == "" && q.client == nil) || len(conds) > 0) {
			sqlLimit = q.limit - s.got
		}
		query := `SELECT ` + cols + ` FROM log l WHERE l.id >= ? AND l.id < ? AND ` + where + ` ORDER BY l.id` + order(q.newest) + limit(sqlLimit)
		if err := d.each(ctx, query, append([]any{from, to}, args...), each); err != nil {
			return err
		}
		if q.newest {
			q.hi = from
		} else {
			q.lo = to
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

// The first chunk of a scan (see chunks): of the log, the ids of 10 s; of rows of schema 1,
// 10 s. (Variables for the tests.)
var (
	chunkIDs int64 = 10_000 << 8
	chunkMS  int64 = 10_000
)

// chunkTime is about how long one chunk of a scan should take.
const chunkTime = 100 * time.Millisecond

// chunks calls read with consecutive ranges [from, to) that make up [lo, hi), the highest first
// if newest, starting with size and growing or shrinking them so that each takes about
// chunkTime, until read returns an error. SQLite cannot be stopped while it looks for the next
// matching row (modernc.org/sqlite interrupts a query on its context only while the query
// starts), so a long scan is made of short ones, and the time budget is checked between them.
func chunks(ctx context.Context, lo, hi, size int64, newest bool, read func(from, to int64) error) error {
	first := size
	for lo < hi {
		if err := ctx.Err(); err != nil {
			return err
		}
		from, to := lo, hi
		if newest {
			from = max(lo, hi-min(size, hi-lo))
		} else {
			to = min(hi, lo+min(size, hi-lo))
		}
		start := time.Now()
		if err := read(from, to); err != nil {
			return err
		}
		if newest {
			hi = from
		} else {
			lo = to
		}
		switch took := time.Since(start); {
		case took < chunkTime/4 && size < math.MaxInt64/4:
			size *= 4
		case took > chunkTime && size > first/64:
			size /= 2
		}
	}
	return nil
}

// matchConds are SQL conditions on log rows l with ids from q.lo, matching q's name and
// client, in text or by a number of the dictionary. The numbers are found first, once, among
// those of the epochs the rows can use (plugin/querylog/dict.go: a row uses numbers from its
// epoch's start), and given to each chunk's query as a JSON list.
func (d *database) matchConds(ctx context.Context, q rowQuery) (conds []string, args []any, err error) {
	var nameFrom, clientFrom int64
	err = d.row(ctx, `SELECT coalesce((SELECT name_id FROM dict_epochs WHERE log_id <= ?1 ORDER BY log_id DESC LIMIT 1), 0),
		coalesce((SELECT client_id FROM dict_epochs WHERE log_id <= ?1 ORDER BY log_id DESC LIMIT 1), 0)`, []any{q.lo}, &nameFrom, &clientFrom)
	if err != nil {
		return nil, nil, err
	}
	// numbers returns the numbers from from in table whose text matches cond.
	numbers := func(table, cond string, from int64, cargs ...any) (string, error) {
		ids := []int64{}
		err := d.each(ctx, `SELECT id FROM `+table+` WHERE id >= ? AND `+cond, append([]any{from}, cargs...), func(v []driver.Value) error {
			ids = append(ids, logrow.Int(v[0]))
			return nil
		})
		list, _ := json.Marshal(ids)
		return string(list), err
	}
	if q.name != "" {
		cond, nameArgs := nameCond("name", q.name)
		list, err := numbers("names", cond, nameFrom, nameArgs...)
		if err != nil {
			return nil, nil, err
		}
		cond, _ = nameCond("l.name", q.name)
		conds = append(conds, `(l.name IN (SELECT value FROM json_each(?)) OR (typeof(l.name) = 'text' AND `+cond+`))`)
		args = append(append(args, list), nameArgs...)
	}
	if c := q.client; c != nil {
		match := func(col string) (string, any) {
			if c.exact != "" {
				return col + ` = ?`, c.exact
			}
			return `querylog_in_prefix(` + col + `, ?)`, c.prefix.String()
		}
		cond, arg := match("addr")
		list, err := numbers("clients", cond, clientFrom, arg)
		if err != nil {
			return nil, nil, err
		}
		cond, _ = match("l.client")
		conds = append(conds, `(l.client IN (SELECT value FROM json_each(?)) OR (typeof(l.client) = 'text' AND `+cond+`))`)
		args = append(args, list, arg)
	}
	return conds, args, nil
}

// ref is a name or client of a log row: the text itself, or its number in a dictionary.
func (d *database) ref(ctx context.Context, c *logrow.Dict, v driver.Value) (sql.NullString, error) {
	var s sql.NullString
	var err error
	s.String, s.Valid, err = c.Ref(ctx, d.dc, v)
	return s, err
}

// v1Rows calls f with each row of schema 1 that q selects, in (ts, rowid) order, the order of
// its index on ts, a chunk of time at a time (see chunks); or with q.byRowid in rowid order.
func (d *database) v1Rows(ctx context.Context, q rowQuery, f func(*row) error) error {
	o := order(q.newest)
	cols := `q.rowid, q.ts, q.server, q.client_ip, q.proto, q.qname, q.qtype, q.qclass, q.rcode, q.size, q.answers, q.duration_us, q."do"`
	r := row{v1: true}
	got := 0
	each := func(v []driver.Value) error {
		r.id, r.ts = logrow.Int(v[0]), logrow.Int(v[1])
		r.server, _ = logrow.Text(v[2])
		r.client.String, r.client.Valid = logrow.Text(v[3])
		r.proto, _ = logrow.Text(v[4])
		r.qname.String, r.qname.Valid = logrow.Text(v[5])
		r.qtype, r.qclass, r.rcode = logrow.Int(v[6]), logrow.Int(v[7]), logrow.Int(v[8])
		r.size, r.answers, r.durationUS = logrow.Int(v[9]), logrow.Int(v[10]), logrow.Int(v[11])
		r.flags = 0
		if logrow.Int(v[12]) != 0 {
			r.flags = logrow.FlagDO
		}
		got++
		return f(&r)
	}
	if q.byRowid {
		return d.each(ctx, `SELECT `+cols+` FROM `+d.v1+` q WHERE `+conj(q.conds)+` ORDER BY q.rowid`+o+limit(q.limit), q.args, each)
	}
	var first, last sql.NullInt64
	if err := d.row(ctx, `SELECT (SELECT min(ts) FROM `+d.v1+`), (SELECT max(ts) FROM `+d.v1+`)`, nil, &first, &last); err != nil || !first.Valid {
		return err
	}
	query := `SELECT ` + cols + ` FROM ` + d.v1 + ` q WHERE q.ts >= ? AND q.ts < ? AND ` + conj(q.conds) + ` ORDER BY q.ts` + o + `, q.rowid` + o
	err := chunks(ctx, first.Int64, last.Int64+1, chunkMS, q.newest, func(from, to int64) error {
		if q.limit > 0 {
			if got >= q.limit {
				return errEnough
			}
			return d.each(ctx, query+limit(q.limit-got), append([]any{from, to}, q.args...), each)
		}
		return d.each(ctx, query, append([]any{from, to}, q.args...), each)
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

func order(newest bool) string {
	if newest {
		return " DESC"
	}
	return ""
}

func limit(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + strconv.Itoa(n)
}

// cursor is where a page of search ended: a log id, or for rows of schema 1 (which come after
// every log row, newest first) their ts and rowid.
type cursor struct {
	id     int64
	v1     bool
	ts     int64
	rowid  int64
	isNull bool
}

func cursorOf(r *row) string {
	if r.v1 {
		return fmt.Sprintf("v1:%d:%d", r.ts, r.id)
	}
	return strconv.FormatInt(r.id, 10)
}

func parseCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{isNull: true}, nil
	}
	var c cursor
	if _, err := fmt.Sscanf(s, "v1:%d:%d", &c.ts, &c.rowid); err == nil {
		c.v1 = true
		return c, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return c, usageError("--after %q is not a cursor that search printed", s)
	}
	c.id = id
	return c, nil
}
