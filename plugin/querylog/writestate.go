package querylog

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unsafe"

	"github.com/querylog/querylog/internal/logrow"
)

// rowsPerInsert is the number of rows bound by one multi-row INSERT: a few hundred parameters,
// far below SQLite's limit of 32766.
const rowsPerInsert = 64

// writeState is what a store keeps from batch to batch to write: it turns entries into log
// rows, adding what the dictionaries and labels need, and writes them in one transaction
// through the driver's own statements (database/sql's argument checks cost a tenth of a row's
// time; BenchmarkStoreWrite).
//
// Row ids carry the time (codec.go): the first row of a batch gets the id
// max(last id + 1, newest arrival ms << 8) and SQLite numbers the others after it, which is as
// cheap as letting it number them all (giving every row its id makes SQLite look each one up
// first: 0.4 µs a row). So id >> 8 is never before a row's arrival, and late says by how much
// it is after.
type writeState struct {
	names   *dict[string]
	clients *dict[clientKey]
	pods    *dict[podKey]
	podRefs *[podSlots]podRef // the pods dictionary's entries by the extra that names them
	retries *retransmits
	labels  *labels                // the writer's: numbers entries carry
	keys    *keyring               // the writer's anonymize hash keys
	dbLabel [numLabelKinds][]int64 // the database's number of each label, by the process's

	counts nameCounts     // the rows that hold each number of the names dictionary (namecounts.go)
	firsts firstSightings // the rows holding a name the file did not know (firsts.go)

	rollups     *rollups  // counts for the rollup tables
	lastID      int64     // the largest id in the log table
	written     int64     // rows written to the file, ever (batches)
	newest      int64     // the newest arrival written (Unix ms)
	epochStart  time.Time // when the dictionaries' current epoch began
	newEpoch    bool      // the next batch records where the epoch began
	epochName   int64     // the epoch's first number of the names dictionary
	findNames   bool      // names_name is there: a name that left the cache is looked up (findName)
	extraCols   bool      // the log table has the metadata and answer_data columns
	clusterCols bool      // the log table has the pod and cache columns (cluster.go)

	stmtConn driver.Conn             // the connection the statements belong to
	stmts    map[stmtKey]driver.Stmt // prepared INSERTs
	findStmt driver.Stmt             // findName's query, prepared on first use
	findErr  error                   // the first error of findName in the batch, which fails it
	vals     []any                   // the current batch's row values
	texts    []any                   // the ids of its rows that hold a name as text (log_texts)
	args     []driver.NamedValue
	boxA     boxCache // columns a and b, boxed once per value
	boxB     boxCache
}

// boxCache hands out a boxed int64 for a value that repeats from row to row, so that a row
// does not allocate it again: columns a and b take a few hundred values in real traffic, and
// boxing them at every row cost about 4% of a row's time (BenchmarkStoreWrite). It keeps the
// last value seen in each of 256 slots, chosen by hash.
type boxCache [256]struct {
	v   int64
	box any
}

func (c *boxCache) box(v int64) any {
	s := &c[uint64(v)*0x9E3779B97F4A7C15>>56]
	if s.box == nil || s.v != v {
		s.v, s.box = v, v
	}
	return s.box
}

type stmtKey struct {
	table string
	rows  int
	id    bool // log: the first column is the id
	extra bool // log: with the metadata and answer_data columns
	// log: with the pod and cache columns
	cluster bool
}

// columns lists the columns an INSERT binds.
func (k stmtKey) columns() []string {
	switch k.table {
	case "names":
		return []string{"id", "name", "first"}
	case "clients":
		return []string{"id", "addr"}
	case "pods":
		return []string{"id", "namespace", "name"}
	case "dict_epochs":
		return []string{"log_id", "name_id", "client_id", "pod_id"}
	case "retries":
		return []string{"id", "first_id"}
	case "log_texts":
		return []string{"id"}
	case "name_firsts":
		return []string{"id", "name", "late", "named"}
	case "name_firsts_gaps":
		return []string{"minute", "domains"}
	case "domains_seen":
		return []string{"domain", "first", "last"}
	case "batches":
		return []string{"first_id", "n", "rows"}
	}
	cols := []string{"name", "client", "late", "a", "b", "c"}
	if k.id {
		cols = append([]string{"id"}, cols...)
	}
	if k.extra {
		cols = append(cols, "metadata", "answer_data")
	}
	if k.cluster {
		cols = append(cols, "pod", "cache")
	}
	return cols
}

// conflict is what k's INSERT does with a row whose key the table holds: a gap a process
// before this one listed too; a domain seen before.
func (k stmtKey) conflict() string {
	switch k.table {
	case "name_firsts_gaps":
		return ` ON CONFLICT (minute) DO UPDATE SET domains = max(domains, excluded.domains)`
	case "domains_seen":
		return ` ON CONFLICT (domain) DO UPDATE SET first = min(first, excluded.first), last = max(last, excluded.last)`
	}
	return ""
}

func newWriteState(l *labels, keys *keyring, lastID, written, nextName, nextClient, nextPod int64) writeState {
	names := newDict[string](nextName)
	names.firsts = true
	return writeState{names: names, clients: newDict[clientKey](nextClient), pods: newDict[podKey](nextPod), podRefs: new([podSlots]podRef),
		retries: newRetransmits(), labels: l, keys: keys,
		rollups: newRollups(defaultRollupLimit), counts: newNameCounts(), firsts: firstSightings{perMinute: firstsPerMinute, listedPerMinute: firstsListedPerMinute, domainsPerMinute: domainsPerMinute}, lastID: lastID, written: written, epochStart: time.Now(), newEpoch: true}
}

// startEpoch makes every text new to the dictionaries; the next batch records it.
func (ws *writeState) startEpoch() {
	ws.names.reset()
	ws.clients.reset()
	ws.pods.reset()
	ws.epochStart, ws.newEpoch = time.Now(), true
}

// forget undoes what a failed transaction took for granted: dictionary rows it would have
// added are not there, so the numbers given to them must not be used, and its rows are not
// there to count. Numbers are given again only to texts the file holds them for in the epoch
// (findName), so rows written later still only use numbers at or after their epoch's start.
func (ws *writeState) forget() {
	ws.counts.undo()
	for _, d := range []interface{ reset() }{ws.names, ws.clients, ws.pods} {
		d.reset()
	}
	ws.names.pending, ws.clients.pending, ws.pods.pending = ws.names.pending[:0], ws.clients.pending[:0], ws.pods.pending[:0]
	ws.retries.forget()
	ws.firsts.forget()
}

// podKey is how the pods dictionary looks a client's pod up.
type podKey struct{ namespace, pod string }

// clientKey is how the clients dictionary looks an address up: the address and, when it is
// stored as a keyed hash, which key.
type clientKey struct {
	addr [16]byte
	info uint8 // v4 | key index << 1
}

func keyOf(e *entry) clientKey {
	k := clientKey{addr: e.client, info: uint8(e.keyIndex()) << 1}
	if e.flags&flagV4 != 0 {
		k.info |= 1
	}
	return k
}

// clientText is the client as stored: the address, or with a hash key "anon-" and 16 hex
// digits of HMAC-SHA256(key, address), the same for the same client under the same key.
func clientText(e *entry, keys *keyring) string {
	a := e.addr()
	if !a.IsValid() {
		return "" // the transport gave no address
	}
	key := keys.get(e.keyIndex())
	if key == nil {
		return a.String()
	}
	m := hmac.New(sha256.New, key[:])
	b, _ := a.MarshalBinary()
	m.Write(b)
	return "anon-" + hex.EncodeToString(m.Sum(nil)[:8])
}

// insertRows inserts the batch's n rows (ws.vals), the first with the id first, and what they
// need: the dictionary rows they refer to, the batch's record and, at a new epoch, where it
// begins (epoch).
func (ws *writeState) insertRows(ctx context.Context, dc driver.Conn, first int64, n int, epoch []any, k stmtKey) error {
	if ws.newEpoch {
		if err := ws.exec(ctx, dc, stmtKey{table: "dict_epochs", rows: 1}, epoch); err != nil {
			return err
		}
	}
	if err := ws.exec(ctx, dc, stmtKey{table: "batches", rows: 1}, []any{first, ws.written, int64(n)}); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "names"}, ws.names.pending); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "clients"}, ws.clients.pending); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "pods"}, ws.pods.pending); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "retries"}, ws.retries.pending); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "log_texts"}, ws.texts); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "name_firsts"}, ws.firsts.pending); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "name_firsts_gaps"}, ws.firsts.gaps); err != nil {
		return err
	}
	if _, err := ws.insertAll(ctx, dc, stmtKey{table: "domains_seen"}, ws.firsts.seen); err != nil {
		return err
	}
	// The first row with its id, the others numbered by SQLite after it.
	k.table = "log"
	cols := len(k.columns())
	first1 := k
	first1.rows, first1.id = 1, true
	if err := ws.exec(ctx, dc, first1, append([]any{first}, ws.vals[:cols]...)); err != nil {
		return err
	}
	last, err := ws.insertAll(ctx, dc, k, ws.vals[cols:])
	if err != nil {
		return err
	}
	if n > 1 && last != first+int64(n)-1 {
		// SQLite numbers a row one above the largest id, so this cannot happen; the ordinals
		// (batches) and the lateness of the rows rely on it.
		return fmt.Errorf("rows numbered up to %d, want %d", last, first+int64(n)-1)
	}
	return nil
}

// use prepares statements on dc from now on, forgetting those of an earlier connection.
func (ws *writeState) use(dc driver.Conn) {
	if ws.stmtConn != dc {
		ws.stmtConn, ws.stmts, ws.findStmt = dc, map[stmtKey]driver.Stmt{}, nil
		ws.firsts.use()
		if ws.findNames {
			ws.names.find = ws.findName
		}
	}
}

// findNameQuery is the number the names table holds for a name (?1) in the epoch whose first
// number is ?2, if any: by names_name, a seek.
const findNameQuery = `SELECT max(id) FROM names WHERE name = ?1 AND id >= ?2`

// findName returns the number the names table holds for name in the current epoch, if any.
// The names dictionary asks it for a name seen twice that its cache does not have (dict.ref):
// one that left the cache keeps its number when it comes back, instead of a new entry at every
// return (a long tail of names, which the cache cannot hold, had 2.7 entries per name an
// epoch). It runs in the batch's transaction (writeRows), where the names of the batches
// before are committed; a name numbered earlier in this batch is not there yet, and gets a
// second number, as before. An error is kept in findErr, and fails the batch.
func (ws *writeState) findName(name string) (int64, bool) {
	if ws.findErr != nil {
		return 0, false
	}
	v, found, err := queryValue(ws.stmtConn, &ws.findStmt, findNameQuery, name, ws.epochName)
	if err == nil && !found {
		err = errors.New("no row") // max() always returns a row
	}
	ws.findErr = err
	id, ok := v.(int64)
	return id, ok
}

// queryValue runs *st (query, prepared on dc at first use; closed by closeStmts) with args,
// and returns the first column of its row, if it gives one.
func queryValue(dc driver.Conn, st *driver.Stmt, query string, args ...any) (driver.Value, bool, error) {
	ctx := context.Background()
	if *st == nil {
		prepared, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, query)
		if err != nil {
			return nil, false, err
		}
		*st = prepared
	}
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	rows, err := (*st).(driver.StmtQueryContext).QueryContext(ctx, named)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	row := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(row); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return row[0], true, nil
}

// appendRow adds the values of one log row, in the order of k's columns.
func (ws *writeState) appendRow(e *entry, id int64, k stmtKey) {
	ts := e.start / 1e6
	name, _, nameEntry := ws.names.ref(e.qname, func() string { return e.qname }, id)
	if nameEntry != nil { // the row holds the number
		ws.counts.count(nameEntry)
	} else {
		ws.texts = append(ws.texts, id)
		ws.firsts.judge(ws.stmtConn, e.qname, id, (id>>8)-ts, ws.rollups.catchingUp && !ws.rollups.off)
	}
	client, clientText, clientEntry := ws.clients.ref(keyOf(e), func() string { return clientText(e, ws.keys) }, id)
	var pod any
	namespace, podName := "", ""
	if x := e.extra; x != nil && (x.namespace != "" || x.pod != "") {
		pod, namespace, podName = ws.podNumber(x), x.namespace, x.pod
	}
	retry := ws.retries.check(e, id)
	if ws.rollups.live() {
		ws.rollups.count(ts, keyed{e.qname, nameEntry.tallyOf()}, keyed{clientText, clientEntry.tallyOf()},
			int64(e.rcode&0xfff), e.qtype, e.proto(), e.plugin, int64(e.duration), clusterFacts{namespace, podName, e.cache, retry, e.answers > 0})
		ws.rollups.countUpstream(ts, e.upstream, int64(e.rcode&0xfff), int64(e.duration))
	}
	ws.vals = append(ws.vals, name, client, (id>>8)-ts, ws.boxA.box(packA(e)),
		ws.boxB.box(packB(e, ws.dbNumber(labelPlugin, uint16(e.plugin)), ws.dbNumber(labelServer, uint16(e.server)), ws.dbNumber(labelUpstream, e.upstream))),
		packC(e))
	if k.extra {
		var meta, answers any
		if x := e.extra; x != nil {
			if m := metadataJSON(x.metadataLabels, x.metadata); m != "" {
				meta = m
			}
			if x.answers != "" {
				answers = x.answers
			}
		}
		ws.vals = append(ws.vals, meta, answers)
	}
	if k.cluster {
		ws.vals = append(ws.vals, pod, cacheValue[e.cache])
	}
}

// podRef remembers the pods dictionary's entry of the pod an extra names. The entries of a
// pod's queries share one extra (podExtras), so a comparison of pointers finds the pod's number
// instead of a map lookup of its two texts. An extra is never changed, and a ref is used only
// while its entry is still where the lookup left it (in the dictionary's newer generation, the
// same turn), so the number is the one the lookup would give.
type podRef struct {
	x    *extra
	e    *dictEntry
	turn uint64
}

// podNumber is the number of x's pod in the pods dictionary, which it adds if it is new.
func (ws *writeState) podNumber(x *extra) any {
	r := &ws.podRefs[uint64(uintptr(unsafe.Pointer(x)))*0x9E3779B97F4A7C15>>(64-podSlotBits)]
	if r.x == x && r.turn == ws.pods.turn {
		ws.pods.hits++ // as the lookup would have counted it
		return r.e.id
	}
	id, _, e := ws.pods.number(podKey{x.namespace, x.pod}, func() string { return x.namespace },
		func(id any, _ string) []any { return []any{id, x.namespace, x.pod} })
	*r = podRef{x: x, e: e, turn: ws.pods.turn}
	return id
}

// cacheValue is the cache column of each cacheStatus, boxed once.
var cacheValue = [...]any{cacheNone: nil, cacheHit: int64(logrow.CacheHit), cacheMiss: int64(logrow.CacheMiss)}

// dbNumber is the database's number of a label (resolveLabels found them all), 0 for none.
func (ws *writeState) dbNumber(kind labelKind, id uint16) int64 {
	if int(id) >= len(ws.dbLabel[kind]) {
		return 0
	}
	return ws.dbLabel[kind][id]
}

// metadataJSON is the metadata column: a JSON object of the labels that have a value.
func metadataJSON(labels, values []string) string {
	m := map[string]string{}
	for i, v := range values {
		if v != "" && i < len(labels) {
			m[labels[i]] = v
		}
	}
	if len(m) == 0 {
		return ""
	}
	out, _ := json.Marshal(m) // keys sorted: the same metadata is the same text
	return string(out)
}

// insertAll inserts vals (whole rows of k's columns) rowsPerInsert rows at a time, and returns
// the rowid of the last row inserted (0 for none).
func (ws *writeState) insertAll(ctx context.Context, dc driver.Conn, k stmtKey, vals []any) (int64, error) {
	cols := len(k.columns())
	var last int64
	for len(vals) > 0 {
		k.rows = min(len(vals)/cols, rowsPerInsert)
		res, err := ws.execResult(ctx, dc, k, vals[:k.rows*cols])
		if err != nil {
			return 0, err
		}
		if last, err = res.LastInsertId(); err != nil {
			return 0, err
		}
		vals = vals[k.rows*cols:]
	}
	return last, nil
}

// exec runs k's INSERT with vals, preparing it on first use.
func (ws *writeState) exec(ctx context.Context, dc driver.Conn, k stmtKey, vals []any) error {
	_, err := ws.execResult(ctx, dc, k, vals)
	return err
}

func (ws *writeState) execResult(ctx context.Context, dc driver.Conn, k stmtKey, vals []any) (driver.Result, error) {
	st, ok := ws.stmts[k]
	if !ok {
		cols := k.columns()
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
		query := fmt.Sprintf("INSERT INTO %s (%s) VALUES %s%s", k.table, strings.Join(cols, ", "),
			strings.TrimSuffix(strings.Repeat(row+",", k.rows), ","), k.conflict())
		var err error
		if st, err = dc.(driver.ConnPrepareContext).PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		ws.stmts[k] = st
	}
	// The arguments keep their ordinals from statement to statement: only the values change.
	for i := len(ws.args); i < len(vals); i++ {
		ws.args = append(ws.args, driver.NamedValue{Ordinal: i + 1})
	}
	args := ws.args[:len(vals)]
	for i, v := range vals {
		args[i].Value = v
	}
	res, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
	for i := range args {
		args[i].Value = nil // no reference to the batch's texts until the next
	}
	return res, err
}

// dictionaryNames name the dictionaries in the order of lookups, for
// coredns_querylog_dictionary_lookups_total.
var dictionaryNames = [...]string{"names", "clients", "pods"}

// lookups returns the dictionaries' lookup counts: names, clients, pods; hit, added, inline,
// found.
func (ws *writeState) lookups() [3][4]uint64 {
	return [3][4]uint64{{ws.names.hits, ws.names.added, ws.names.inline, ws.names.found}, {ws.clients.hits, ws.clients.added, ws.clients.inline, ws.clients.found},
		{ws.pods.hits, ws.pods.added, ws.pods.inline, ws.pods.found}}
}

// closeStmts closes the prepared statements.
func (ws *writeState) closeStmts() {
	for _, st := range ws.stmts {
		st.Close()
	}
	if ws.findStmt != nil {
		ws.findStmt.Close()
	}
	ws.firsts.close()
	ws.stmts, ws.findStmt = nil, nil
}
