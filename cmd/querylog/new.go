package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/querylog/querylog/internal/dnsname"
	"github.com/querylog/querylog/internal/logrow"
)

// new: the names, and registered domains, asked in a window that the file never saw before it.
//
// What the file knows of the time before the window, and what each part can tell:
//
//   - The rows before the window, as long as retention keeps them: every name asked, with its
//     time. A row holds a name's text the first time the writer sees it in a dictionary epoch
//     (24 hours, or from a start) and a number of the names dictionary from the second time on.
//   - The names dictionary says a name was asked twice in an epoch, not when; but its numbers
//     are given in time order within an epoch, and dict_epochs says where each epoch began.
//     So a number of an epoch that ended before the window was given before the window. Within
//     the epoch the window begins in, a row uses only numbers given by then: a number no
//     higher than one a row just before the window uses was given before the window. (Newer
//     numbers say nothing by themselves.)
//   - The writer numbers a name when it sees it the second time in an epoch, and the first
//     time stores its text. So when the first row of the window that holds a name holds a
//     number of an epoch begun before the window, the writer had seen the name before the
//     window: its first sighting, a row holding the text, is not in the window. (But for two
//     names with the same 64-bit hash in the writer's set of names seen once.)
//   - The rollups keep, per minute, hour and day, the names counted (at most rollup_limit per
//     period; the rest under (other)). They are read for the periods before the oldest row,
//     where they are all that is left: where rows are kept, a period's names are among them.
//     A name counted under (other) there is not known by name: it is shown as new, and the
//     sources line says how many queries of such periods were folded.
//
// A name is new if none of these shows it before the window; a registered domain (the label
// left of the public suffix, golang.org/x/net/publicsuffix) is new if no name at or under it
// was seen before the window. Proving a name new takes reading every row before the window
// that holds a text (there is no index of names): the command reads the window and the
// dictionary first, then those rows, then the rollups, and stops as soon as every name and
// domain of the window is known to be old. A window longer than an hour has its names counted
// from the rollups instead of its rows (new_rollups.go).

// newName is a name of the window: its counts among the rows --namespace selects, and what is
// known of it before the window.
type newName struct {
	text     string
	queries  int64 // rows of the window (of --namespace) holding it
	first    int64 // the first of them, Unix ms
	domain   string
	firstRow int64 // the id of the first row of the window holding it, of any namespace
	numbered bool  // that row holds a number of an epoch begun before the window
	old      bool  // seen before the window (with --namespace: from other clients)
}

type newDomain struct {
	domain  string
	queries int64
	names   int
	first   int64
	old     bool
}

type newResult struct {
	from        int64 // the window, Unix seconds (whole minutes)
	namespace   string
	names       []*newName   // new names, most asked first
	domains     []*newDomain // new domains, most asked first
	newNames    int          // how many names are new (names may be cut to -n)
	newDoms     int
	winNames    int   // names of the window
	winDoms     int   // domains of the window
	queries     int64 // queries of the window (of --namespace)
	oldest      sql.NullInt64
	olderRows   int64 // rows before the window read (texts), 0 if not needed
	scanned     bool  // every row before the window was read
	rollupsTo   int64 // rollup periods that begin before this were read (Unix seconds); 0: none
	minutesFrom int64 // by default, the minutes read begin here (after the last hour or day before the window)
	exact       bool
	indexed     bool            // the open names were looked for in every rollup period by the names index (schema 3)
	folded      map[int64]int64 // by span: queries of the rollup periods read counted under (other)
	v1          bool
	skipOld     bool          // the window's rows holding a number given before it were not read (their names are old)
	textIndex   bool          // only the window's rows holding a text were read, by the writer's list of them (log_texts)
	firsts      bool          // only the window's first sightings were read, by the writer's list of them (name_firsts)
	uncounted   int64         // with textIndex: rows read for the numbers' counts, after the dictionary's
	dictWhole   bool          // with textIndex: the names dictionary was read whole, not name by name
	nsPast      *nsPast       // with --namespace: what was read of its past
	rollupWin   *rollupWindow // the window's names were counted from the rollups (new_rollups.go)
	newToFile   [2]int        // with --namespace: names and domains of the new ones the file never saw
}

func runNew(ctx context.Context, args []string, out, _ io.Writer) error {
	var c common
	var since timeFlag
	fs := newFlags("new", "[--since 1h] [--namespace NS] [--exact] [-n 20]", out, &c, defaultTimeout)
	fs.Var(&since, "since", "the window starts at `T`: a duration ago (30m, 1h, 30d) or an RFC 3339 time (default 1h)")
	ns := fs.String("namespace", "", "only names asked by clients of Kubernetes namespace `NS`")
	exact := fs.Bool("exact", false, "also read every row before the window that holds a name as text (slower: it finds the names seen only once in a period whose rollup folded them under (other))")
	n := fs.Int("n", 20, "how many names and domains to list (1 to 10000)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return usageError("-n %d: must be from 1 to 10000", *n)
	}
	if !since.set() {
		since.Set("1h")
	}
	return answer(ctx, c, out, func(ctx context.Context, d *database) (*newResult, error) {
		if err := d.namespaceKnown("--namespace", *ns); err != nil {
			return nil, err
		}
		// Rollups count whole minutes: the window is rounded down to them, as top does. --since
		// 1h (the flag's "now" a moment ago) is an hour of rows: a minute's slack.
		from := since.t.Unix() / 60 * 60
		long := time.Since(since.t) > newRowsWindow*time.Second+time.Minute
		// A namespace's rows are found by reading every row of the window: a busy hour comes
		// from its rollups too.
		var busy int64
		if *ns != "" && !long && !*exact && d.rollups && d.pods {
			q, err := d.windowQueries(ctx, window{from: from, to: openEnd, now: time.Now().Unix()})
			if err != nil {
				return nil, err
			}
			if q > newNamespaceRowsMax {
				busy = q
			}
		}
		res, err := d.newNames(ctx, from, *ns, *exact, long || busy > 0, *n)
		if err == nil && res.rollupWin != nil {
			res.rollupWin.busy = busy
		}
		return res, err
	})
}

// underAny returns the domain of domains that name is or is under, on label boundaries (an
// escaped dot is none), or "".
func underAny[V any](name string, domains map[string]V) string {
	for s := name; s != "" && s != "."; s = dnsname.Parent(s) {
		if _, ok := domains[s]; ok {
			return s
		}
	}
	return ""
}

// newState is what newNames keeps while it looks: the window's names and domains, and those
// still not known to be old.
type newState struct {
	names     map[string]*newName
	domains   map[string]*newDomain
	openNames map[string]*newName // not known to be old
	openDoms  map[string]*newDomain
	conds     map[string]textCond // textConds' conditions, by column
	condsOpen int                 // how many names and domains were open when they were made
}

// seen marks a text seen before the window: the name if it is one of the window, and the
// domain it is at or under.
func (s *newState) seen(text string) {
	if nm, ok := s.openNames[text]; ok {
		nm.old = true
		delete(s.openNames, text)
	}
	if len(s.openDoms) > 0 {
		if dom := underAny(text, s.openDoms); dom != "" {
			s.domains[dom].old = true
			delete(s.openDoms, dom)
		}
	}
}

func (s *newState) done() bool { return len(s.openNames) == 0 && len(s.openDoms) == 0 }

// textConds is an SQL condition that col holds a text still open: one of the names, or a name
// at or under one of the domains, when they are few; otherwise any text, matched in Go. A scan
// asks at every chunk: the condition is made anew once an eighth of what it names is known to
// be old (the rest only selects rows that change nothing).
func (s *newState) textConds(col string) (string, []any) {
	if len(s.openDoms) > 16 {
		return "1", nil
	}
	if open := len(s.openNames) + len(s.openDoms); s.conds == nil || open <= s.condsOpen-s.condsOpen/8-1 {
		s.conds, s.condsOpen = map[string]textCond{}, open
	}
	if c, ok := s.conds[col]; ok {
		return c.cond, c.args
	}
	list, _ := json.Marshal(slices.Collect(maps.Keys(s.openNames)))
	dc, da := s.domainConds(col)
	c := textCond{"(" + col + ` IN (SELECT value FROM json_each(?)) OR ` + dc + ")", append([]any{string(list)}, da...)}
	s.conds[col] = c
	return c.cond, c.args
}

// domainConds is an SQL condition that col holds a name at or under one of the open domains,
// when they are few (at most 16); otherwise any text, matched in Go.
func (s *newState) domainConds(col string) (string, []any) {
	if len(s.openDoms) > 16 {
		return "1", nil
	}
	conds, args := []string{"0"}, []any{}
	for dom := range s.openDoms {
		c, a := nameCond(col, dom)
		conds, args = append(conds, c), append(args, a...)
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

type textCond struct {
	cond string
	args []any
}

// rollupSeekNames is how many names new looks for in each rollup period by the primary key,
// at most; with more, reading every name row of the periods (about rollup_limit each) costs less.
const rollupSeekNames = 100

// epoch is a dictionary epoch: where it began in the log, its first name number and, in a file
// of schema 4, the last row whose numbers of it names.n counts (0: none).
type epoch struct{ logID, nameID, counted int64 }

// newNames finds the new names of the window that begins at from (Unix seconds, a whole
// minute); long: a window longer than an hour, counted from the rollups unless exact.
func (d *database) newNames(ctx context.Context, from int64, ns string, exact, long bool, n int) (*newResult, error) {
	res := &newResult{from: from, namespace: ns, v1: d.v1 != "", folded: map[int64]int64{}, exact: exact}
	s := &newState{names: map[string]*newName{}, domains: map[string]*newDomain{}}
	fromRollups := long && !exact && d.rollups && (ns == "" || d.pods)
	rw := window{from: from, to: openEnd, now: time.Now().Unix()}
	var p *plan
	if fromRollups && ns != "" {
		// A namespace's minutes are gone once summed into their hour: whole hours, as top.
		var err error
		if rw, err = d.byHours(ctx, rw); err != nil {
			return nil, err
		}
	}
	if fromRollups {
		var err error
		if p, err = d.plan(ctx, rw); err != nil {
			return nil, err
		}
		// Rollups never counted (rollup_limit 0): the rows, by the ways below.
		if fromRollups = p.rollupID > 0; fromRollups {
			from, res.from = rw.from, rw.from
		}
	}
	w0 := from * 1000 << 8 // the first id a row of the window can have
	// A file of schema 6 may have the window in its list of first sightings (new_firsts.go).
	mayList := d.firsts && ns == "" && !exact && d.log && !fromRollups && d.v1 == "" && useFirsts
	var bounds logBounds
	var epochs []epoch
	var last sql.NullInt64
	if d.log {
		// The oldest row's arrival (a scan of its first minute) says what the rows before the
		// window can tell; a window counted from the rollups reads no row before it.
		// (Read from the list of first sightings, the window needs no oldest row: found below,
		// where the list does not cover it.)
		b, err := d.logBounds(ctx, !fromRollups && !mayList)
		if err != nil {
			return nil, err
		}
		bounds, last, res.oldest = b, b.last, b.oldest
		counted := `0`
		if d.textIndex || d.firsts { // schema 4 on: names.n counts up to names_counted
			counted = `coalesce(names_counted, 0)`
		}
		err = d.each(ctx, `SELECT log_id, name_id, `+counted+` FROM dict_epochs ORDER BY log_id`, nil, func(v []driver.Value) error {
			epochs = append(epochs, epoch{logrow.Int(v[0]), logrow.Int(v[1]), logrow.Int(v[2])})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// The epoch a name number belongs to.
	epochOf := func(num int64) (epoch, int) {
		i := epochIndex(epochs, num)
		if i < 0 {
			return epoch{}, -1
		}
		return epochs[i], i
	}

	// The numbers the dictionary gave before the window (step 3): their names are old.
	var lo, hi int64
	var haveOld bool
	if d.log {
		var recent sql.NullInt64
		err := d.row(ctx, `SELECT max(name) FROM log WHERE id >= ? AND id < ? AND typeof(name) = 'integer'`,
			[]any{(from*1000 - 60_000) << 8, w0}, &recent)
		if err != nil {
			return nil, err
		}
		lo, hi, haveOld = oldNumbers(epochs, w0, recent)
	}
	// A row of the window holding one of those numbers says nothing new: its name is old
	// (SQLite orders every number before every text, so "name > hi" keeps the texts). Only the
	// namespace's rows are all read, for its counts; with no namespace, the window's queries
	// are counted as top counts them, from the rollups (skipping the old numbers' rows in
	// SQL, and not reading them one by one, is what lets new read a busy hour in seconds).
	res.skipOld = haveOld && (ns != "" || (d.rollups && d.v1 == ""))
	// A file of schema 4 or 5 lists the rows holding a text, which are all a name new to the
	// window can have as its first row there (new_texts.go): without a namespace to count,
	// only they are read.
	res.textIndex = d.textIndex && ns == "" && d.log && !fromRollups
	if res.textIndex || fromRollups {
		res.skipOld = false
	}
	// A file of schema 6 lists the first sightings of names (new_firsts.go): a window without a
	// namespace that the list covers is read from it.
	if mayList && last.Valid {
		covered, err := d.firstsCover(ctx, from, w0, last.Int64)
		if err == nil && !covered {
			err = d.oldestArrival(ctx, &bounds)
			res.oldest = bounds.oldest
		}
		if err != nil {
			return nil, err
		}
		if covered {
			if err := d.newFromFirsts(ctx, s, res, epochs, from, w0, last.Int64, hi, haveOld); err != nil {
				return nil, err
			}
			res.finish(s, n)
			return res, nil
		}
	}

	// 1. The window's rows, oldest first: every name's first row (of any namespace), and the
	// counts of the namespace's.
	nums, texts := map[int64]*valueInfo{}, map[string]*valueInfo{}
	note := func(info *valueInfo, ts int64, match bool) {
		if match {
			info.queries++
			info.first = min(info.first, ts)
			res.queries++
		}
	}
	newInfo := func(id int64) *valueInfo { return &valueInfo{firstRow: id, first: math.MaxInt64} }
	if d.v1 != "" && !fromRollups {
		// Rows of schema 1 came before every log row; they have no namespace.
		err := d.each(ctx, `SELECT qname, ts FROM `+d.v1+` WHERE ts >= ? ORDER BY ts`, []any{from * 1000}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			info := texts[t]
			if info == nil {
				info = newInfo(-1)
				texts[t] = info
			}
			note(info, logrow.Int(v[1]), ns == "")
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	switch {
	case fromRollups:
		var err error
		if res.rollupWin, res.queries, err = d.rollupWindowNames(ctx, rw, p, ns, texts); err != nil {
			return nil, err
		}
	case res.textIndex && last.Valid:
		var err error
		if texts, err = d.windowTexts(ctx, from, w0, last.Int64, texts); err != nil {
			return nil, err
		}
	case d.log && last.Valid:
		// The window has no end: ids from its start on, then arrivals (see timeCond).
		match, args, skip := "", []any{nil, nil, from * 1000}, ""
		if ns != "" {
			match = `, ` + d.namespaceCond("?4")
			args = append(args, ns)
		}
		switch {
		case res.skipOld && ns != "":
			skip = ` AND (l.name > ?5 OR ` + d.namespaceCond("?4") + `)`
			args = append(args, hi)
		case res.skipOld:
			skip = ` AND l.name > ?5`
			args = append(args, nil, hi)
		}
		query := `SELECT l.id, l.name, l.late` + match + ` FROM log l
			WHERE l.id >= ?1 AND l.id < ?2 AND (l.id >> 8) - l.late >= ?3` + skip + ` ORDER BY l.id`
		err := chunks(ctx, w0, last.Int64+1, chunkIDs, false, func(a, b int64) error {
			args[0], args[1] = a, b
			return d.each(ctx, query, args, func(v []driver.Value) error {
				id := logrow.Int(v[0])
				ts, m := id>>8-logrow.Int(v[2]), ns == "" || logrow.Int(v[3]) == 1
				var info *valueInfo
				switch k := v[1].(type) {
				case int64:
					if info = nums[k]; info == nil {
						info = newInfo(id)
						nums[k] = info
					}
				case nil:
					return nil
				default:
					t, _ := logrow.Text(k)
					if info = texts[t]; info == nil {
						info = newInfo(id)
						texts[t] = info
					}
				}
				note(info, ts, m)
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
	}
	// Numbers to texts, in one query; each text's first row, and whether it held a number of
	// an epoch begun before the window.
	add := func(text string, info *valueInfo, numbered bool) {
		nm := s.names[text]
		if nm == nil {
			nm = &newName{text: text, domain: dnsname.RegisteredDomain(text), first: math.MaxInt64, firstRow: math.MaxInt64}
			s.names[text] = nm
		}
		nm.queries += info.queries
		nm.first = min(nm.first, info.first)
		if info.firstRow < nm.firstRow {
			nm.firstRow, nm.numbered = info.firstRow, numbered
		}
	}
	for t, info := range texts {
		add(t, info, false)
	}
	if len(nums) > 0 {
		list, _ := json.Marshal(slices.Collect(maps.Keys(nums)))
		err := d.each(ctx, `SELECT id, name FROM names WHERE id IN (SELECT value FROM json_each(?))`, []any{string(list)}, func(v []driver.Value) error {
			num := logrow.Int(v[0])
			t, _ := logrow.Text(v[1])
			e, i := epochOf(num)
			add(t, nums[num], i >= 0 && e.logID < w0)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var facts textFacts // with the text index: what the names dictionary says of the window's names
	if res.textIndex {
		var err error
		if facts, err = d.textNumbers(ctx, s, epochs, w0, last.Int64, lo, hi, haveOld); err != nil {
			return nil, err
		}
		res.uncounted, res.dictWhole = facts.read, facts.whole
	}
	// The names of the namespace, and their domains.
	s.openNames, s.openDoms = map[string]*newName{}, map[string]*newDomain{}
	for t, nm := range s.names {
		if nm.queries == 0 { // asked in the window by other namespaces only
			delete(s.names, t)
			continue
		}
		s.openNames[t] = nm
		if nm.domain == "" {
			continue
		}
		dom := s.domains[nm.domain]
		if dom == nil {
			dom = &newDomain{domain: nm.domain, first: math.MaxInt64}
			s.domains[nm.domain] = dom
			s.openDoms[nm.domain] = dom
		}
		dom.queries += nm.queries
		dom.names++
		dom.first = min(dom.first, nm.first)
	}
	res.winNames, res.winDoms = len(s.names), len(s.domains)
	if (res.skipOld || res.textIndex) && ns == "" {
		// Not every row was read: the window's queries are counted as top counts them.
		q, err := d.windowQueries(ctx, window{from: from, to: openEnd, now: time.Now().Unix()})
		if err != nil {
			return nil, err
		}
		res.queries = q
	}
	// 1b. With --namespace, what it asked before is not new (new_namespace.go); the steps below
	// then tell which of the rest the file saw before.
	if ns != "" {
		if err := d.namespacePast(ctx, s, res, from, last, ns, exact); err != nil {
			return nil, err
		}
	}
	// With the text index, steps 2 and 3 in one: a name or domain with a number first used
	// before its first text row in the window was seen before it.
	if res.textIndex {
		for _, t := range facts.before {
			s.seen(t)
		}
		if facts.whole {
			s.domainsUsedBefore(facts.domFirst)
		} else if err := s.domainsNumberedBefore(ctx, d, w0, lo, hi, haveOld); err != nil {
			return nil, err
		}
	}
	// 2. A name whose first row in the window holds a number was seen before the window.
	for t, nm := range s.names {
		if nm.numbered {
			s.seen(t)
		}
	}
	// 3. The dictionary: numbers of epochs that ended before the window, or no higher than one
	// a row of the minute before the window uses.
	if haveOld && !res.textIndex && !s.done() {
		if err := s.seenInDictionary(ctx, d, lo, hi); err != nil {
			return nil, err
		}
	}
	// 4. The rows before the window that hold a text (SQLite orders every number before every
	// text), newest first, until every name and domain is known to be old. Rows with ids below
	// the window's arrived before it; above, only late ones did.
	if exact && d.log && last.Valid && !s.done() {
		res.scanned = true
		query := `SELECT l.name FROM log l WHERE l.id >= ? AND l.id < ? AND l.name >= '' AND `
		err := chunks(ctx, 0, min(w0+lateMargin.Milliseconds()<<8, last.Int64+1), chunkIDs, true, func(a, b int64) error {
			if s.done() {
				res.scanned = false
				return errEnough
			}
			cond, args := s.textConds("l.name")
			q := query + cond
			if b > w0 {
				q += ` AND (l.id >> 8) - l.late < ` + strconv.FormatInt(from*1000, 10)
			}
			return d.each(ctx, q, append([]any{a, b}, args...), func(v []driver.Value) error {
				res.olderRows++
				t, _ := logrow.Text(v[0])
				s.seen(t)
				return nil
			})
		})
		if err != nil && !errors.Is(err, errEnough) {
			return nil, err
		}
	}
	// 5. Rows of schema 1 before the window.
	if d.v1 != "" && !s.done() {
		cond, args := s.textConds("qname")
		err := d.each(ctx, `SELECT qname FROM `+d.v1+` WHERE ts < ? AND `+cond, append([]any{from * 1000}, args...), func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			s.seen(t)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// 6a. Schema 3 indexes the rollups' names: one seek per open name finds any period, of any
	// span, that counted it and ended by the window, however long ago.
	var indexed bool
	if d.pods && !s.done() && len(s.openNames) > 0 {
		if err := d.row(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = 'rollup_names_name')`, nil, &indexed); err != nil {
			return nil, err
		}
	}
	if indexed {
		list, _ := json.Marshal(slices.Sorted(maps.Keys(s.openNames))) // in order: each seek near the last
		err := d.each(ctx, `SELECT j.value FROM json_each(?1) j WHERE EXISTS (SELECT 1 FROM rollup_names r
			WHERE r.name = j.value AND r.start < ?2 AND r.start + r.span <= ?2)`, []any{string(list), from}, func(v []driver.Value) error {
			t, _ := logrow.Text(v[0])
			s.seen(t)
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.indexed = true
	}
	// 6. The rollups, last: by then few names are open, and each is looked for in each period,
	// by the primary key; while a domain is open (a name under it can be any), or many names
	// are, every name row of the periods is read (after 6a, only for the open domains and for
	// (other): 6a looked for every name in every period). By default, the periods of every span that
	// end by the window: days and hours, and the minutes after the last hour (the rows before
	// the window are not read). With --exact, the periods before the oldest row, where the
	// rows read say nothing.
	if d.rollups && !s.done() {
		before := from // periods that start before this, and end by the window
		if exact && res.oldest.Valid {
			before = min(before, (res.oldest.Int64+999)/1000)
		}
		res.rollupsTo = before
		after := map[int64]int64{} // per span, periods that start before this are not read
		if !exact {
			var hours, days sql.NullInt64
			err := d.row(ctx, `SELECT (SELECT max(start) FROM rollup_names WHERE span = 3600 AND start <= ?1 - 3600),
				(SELECT max(start) FROM rollup_names WHERE span = 86400 AND start <= ?1 - 86400)`, []any{from}, &hours, &days)
			if err != nil {
				return nil, err
			}
			if hours.Valid {
				after[60] = hours.Int64 + 3600
			} else if days.Valid {
				after[60] = days.Int64 + 86400
			}
			res.minutesFrom = after[60]
		}
		for _, span := range []int64{86400, 3600, 60} {
			if s.done() {
				break
			}
			query, args := `SELECT name, n FROM rollup_names WHERE span = ?1 AND start >= ?5 AND start < ?2 AND start + ?1 <= ?3 AND (name = ?4 OR `, []any{span, before, from, otherKey, after[span]}
			open := slices.Collect(maps.Keys(s.openNames))
			if indexed { // 6a looked for them in every period: only domains, and (other), are left
				open = nil
			}
			if len(s.openDoms) == 0 && len(open) < rollupSeekNames {
				starts, err := d.periods(ctx, span, after[span], from)
				if err != nil {
					return nil, err
				}
				starts = slices.DeleteFunc(starts, func(start int64) bool { return start >= before })
				list, _ := json.Marshal(starts)
				names, _ := json.Marshal(append(open, otherKey))
				query, args = `SELECT name, n FROM rollup_names WHERE span = ? AND start IN (SELECT value FROM json_each(?))
					AND name IN (SELECT value FROM json_each(?))`, []any{span, string(list), string(names)}
			} else {
				// The numbered parameters come first; the condition's take the numbers after them.
				cond, condArgs := s.textConds("name")
				if indexed {
					cond, condArgs = s.domainConds("name")
				}
				query, args = query+cond+`)`, append(args, condArgs...)
			}
			err := d.each(ctx, query, args, func(v []driver.Value) error {
				t, _ := logrow.Text(v[0])
				if t == otherKey {
					res.folded[span] += logrow.Int(v[1])
					return nil
				}
				s.seen(t)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	res.finish(s, n)
	return res, nil
}

// finish lists the new names and domains of s, most asked first, up to n of each. With
// --namespace every name left is new to it; those the file never saw come first.
func (res *newResult) finish(s *newState, n int) {
	ns := res.namespace
	for _, nm := range s.names {
		if !nm.old || ns != "" {
			res.names = append(res.names, nm)
		}
		if !nm.old {
			res.newToFile[0]++
		}
	}
	for _, dom := range s.domains {
		if !dom.old || ns != "" {
			res.domains = append(res.domains, dom)
		}
		if !dom.old {
			res.newToFile[1]++
		}
	}
	res.newNames, res.newDoms = len(res.names), len(res.domains)
	res.names = smallest(res.names, n, func(a, b *newName) int {
		return cmp.Or(cmp.Compare(b2i(a.old), b2i(b.old)), cmp.Compare(b.queries, a.queries), cmp.Compare(a.first, b.first), strings.Compare(a.text, b.text))
	})
	res.domains = smallest(res.domains, n, func(a, b *newDomain) int {
		return cmp.Or(cmp.Compare(b2i(a.old), b2i(b.old)), cmp.Compare(b.queries, a.queries), cmp.Compare(a.first, b.first), strings.Compare(a.domain, b.domain))
	})
}

// oldNumbers is the range of name numbers given before the window (its first id w0): those of
// the epochs that ended by then, and those of the epoch the window begins in no higher than
// recent, the highest a row of the minute before the window holds. Numbers are given in order,
// so the range is one; ok is false where it is empty.
func oldNumbers(epochs []epoch, w0 int64, recent sql.NullInt64) (lo, hi int64, ok bool) {
	c := -1 // the epoch the window begins in: the last begun before it
	for i, e := range epochs {
		if e.logID < w0 {
			c = i
		}
	}
	if c < 0 {
		return 0, 0, false
	}
	lo, hi = epochs[0].nameID, epochs[c].nameID-1
	switch {
	case c+1 < len(epochs) && epochs[c+1].logID <= w0: // it ended as the window began
		hi = epochs[c+1].nameID - 1
	case recent.Valid && recent.Int64 >= epochs[c].nameID:
		hi = recent.Int64
		if c+1 < len(epochs) {
			hi = min(hi, epochs[c+1].nameID-1)
		}
	}
	return lo, hi, lo <= hi
}

// seenInDictionary marks old the open names that the names dictionary numbered from lo to hi,
// each found by the index of the dictionary's names (names_name), and the open domains with a
// name at or under them there, each by the first such name.
func (s *newState) seenInDictionary(ctx context.Context, d *database, lo, hi int64) error {
	if len(s.openNames) > 0 {
		list, _ := json.Marshal(slices.Collect(maps.Keys(s.openNames)))
		err := d.each(ctx, `SELECT name FROM names WHERE name IN (SELECT value FROM json_each(?)) AND id BETWEEN ? AND ?`,
			[]any{string(list), lo, hi}, func(v []driver.Value) error {
				t, _ := logrow.Text(v[0])
				s.seen(t)
				return nil
			})
		if err != nil {
			return err
		}
	}
	for _, dom := range slices.Sorted(maps.Keys(s.openDoms)) {
		cond, args := nameCond("name", dom)
		var found bool
		if err := d.row(ctx, `SELECT EXISTS (SELECT 1 FROM names WHERE id BETWEEN ? AND ? AND `+cond+`)`, append([]any{lo, hi}, args...), &found); err != nil {
			return err
		}
		if found {
			s.domains[dom].old = true
			delete(s.openDoms, dom)
		}
	}
	return nil
}

// epochIndex returns the index of the epoch num belongs to (the last that begins at or below it), or
// -1.
func epochIndex(epochs []epoch, num int64) int {
	i, _ := slices.BinarySearchFunc(epochs, num+1, func(e epoch, n int64) int { return cmp.Compare(e.nameID, n) })
	return i - 1
}

// dictRead says how new read the names dictionary: whole or name by name (textNumbers).
var dictRead = map[bool]string{true: "read whole", false: "looked up by name"}

// sources says in words what the window held and what was read of the time before it.
func (r *newResult) sources() []string {
	what := plural(r.queries, "query")
	if r.namespace != "" {
		what += " from namespace " + printable(r.namespace)
	}
	out := []string{fmt.Sprintf("window: %s to now (rounded to whole minutes, as rollups count them); %s, %s, %s",
		rfc3339(r.from), what, plural(int64(r.winNames), "name"), plural(int64(r.winDoms), "registered domain")),
		fmt.Sprintf("new: %s, %s", plural(int64(r.newNames), "name"), plural(int64(r.newDoms), "registered domain"))}
	if r.skipOld && r.namespace == "" {
		out[0] = fmt.Sprintf("window: %s to now (rounded to whole minutes, as rollups count them); %s, as top counts them; read by name: %s and %s, those of its rows not holding a number the dictionary gave before it (the others' names are old)",
			rfc3339(r.from), plural(r.queries, "query"), plural(int64(r.winNames), "name"), plural(int64(r.winDoms), "registered domain"))
	}
	if r.textIndex {
		out[0] = fmt.Sprintf("window: %s to now (rounded to whole minutes, as rollups count them); %s, as top counts them; read by name: %s and %s, those its rows hold as text, by the file's list of those rows (a name whose first row in the window holds a number was seen before it); their numbered rows counted by the names dictionary (%s), and %s after its counts read",
			rfc3339(r.from), plural(r.queries, "query"), plural(int64(r.winNames), "name"), plural(int64(r.winDoms), "registered domain"), dictRead[r.dictWhole], plural(r.uncounted, "row"))
	}
	if r.firsts {
		out[0] = fmt.Sprintf("window: %s to now (rounded to whole minutes, as rollups count them); %s, as top counts them; read by name: %s and %s, those the writer listed as first sightings (rows holding a name the file did not know %d minutes before them); their numbered rows counted by the names dictionary, and %s after its counts read",
			rfc3339(r.from), plural(r.queries, "query"), plural(int64(r.winNames), "name"), plural(int64(r.winDoms), "registered domain"), int(logrow.FirstsHorizon.Minutes()), plural(r.uncounted, "row"))
	}
	if rw := r.rollupWin; rw != nil {
		lines := rw.sources(r.queries, r.winNames, r.winDoms)
		out = slices.Concat(lines[:1], out[1:], lines[1:])
	}
	if p := r.nsPast; p != nil {
		out[1] = fmt.Sprintf("new to namespace %s: %s (%s new to the file), %s (%s new to the file)", printable(r.namespace),
			plural(int64(r.newNames), "name"), count(int64(r.newToFile[0])), plural(int64(r.newDoms), "registered domain"), count(int64(r.newToFile[1])))
		out = append(out, r.namespacePastSource()...)
	}
	switch {
	case r.rollupWin != nil:
		out = append(out, "before the window: the names dictionary and the rollups, not the rows")
	case r.firsts:
		out = append(out, fmt.Sprintf("before the window: the names dictionary and the rollups, as the writer found them at each listed row, and the rollups of the %d minutes before the window; not the rows", int(logrow.FirstsHorizon.Minutes()))+" (--exact reads them, slower: it also finds the names asked only in periods whose rollups counted them under "+otherKey+")")
	case !r.oldest.Valid:
		out = append(out, "before the window: the file has no rows of schema 2")
	case r.oldest.Int64 >= r.from*1000:
		out = append(out, "before the window: no rows; the window begins before the oldest row, "+time.UnixMilli(r.oldest.Int64).UTC().Format(time.RFC3339)+
			": its names from before then, which only rollups keep, are not listed")
	case !r.exact:
		out = append(out, "before the window: the names dictionary and the rollups, not the rows (--exact reads them too, slower: it also finds the names asked only in periods whose rollups counted them under "+otherKey+")")
	case r.scanned:
		out = append(out, fmt.Sprintf("before the window: rows from %s, every one read (%s holding a name as text matched)",
			time.UnixMilli(r.oldest.Int64).UTC().Format(time.RFC3339), count(r.olderRows)))
	default:
		out = append(out, fmt.Sprintf("before the window: rows from %s, and the names dictionary; every name and domain was known before all were read",
			time.UnixMilli(r.oldest.Int64).UTC().Format(time.RFC3339)))
	}
	switch {
	case r.indexed:
		out = append(out, "rollups: every period that ended by the window, by the index of their names")
	case r.rollupsTo > 0 && !r.exact && r.minutesFrom > 0:
		out = append(out, "rollups: the days and hours that end by the window, and the minutes from "+rfc3339(r.minutesFrom)+" to it")
	case r.rollupsTo > 0 && !r.exact:
		out = append(out, "rollups: the days, hours and minutes that end by the window")
	case r.rollupsTo > 0:
		out = append(out, "rollups: the days, hours and minutes before "+rfc3339(r.rollupsTo)+" (where there are no rows)")
	}
	if folded := foldedText(r.folded); folded != "" {
		out = append(out, fmt.Sprintf("%s: of those rollups, %s queries are of names past the rollups' limit per period: a name asked only among them is shown as new",
			otherKey, folded))
	}
	if r.v1 {
		out = append(out, "rows of schema 1: read too (they have no namespace)")
	}
	return out
}

// namespacePastSource says what was read of the namespace's past.
func (r *newResult) namespacePastSource() []string {
	p := r.nsPast
	var read []string
	switch {
	case p.scanned:
		read = append(read, fmt.Sprintf("its rows before the window, every one read (%s)", count(p.rowsRead)))
	case p.rowsRead > 0 || r.exact:
		read = append(read, fmt.Sprintf("its rows before the window, newest first, until every name was known (%s)", count(p.rowsRead)))
	}
	switch {
	case p.rollups && p.rollupsTo < r.from:
		read = append(read, "its rollups of the periods before "+rfc3339(p.rollupsTo)+" (where there are no rows)")
	case p.rollups:
		read = append(read, "its rollups of every period that ended by the window")
	}
	switch {
	case p.none:
		read = []string{"nothing to look for (it asked no name in the window)"}
	case len(read) == 0:
		read = append(read, "nothing (the file has no rollups per namespace, which schema 3 adds; --exact reads its rows)")
	}
	out := []string{fmt.Sprintf("namespace %s before the window: %s; %s of the window it had asked before, not listed", printable(r.namespace),
		strings.Join(read, ", "), plural(int64(p.known), "name"))}
	if folded := foldedText(p.folded); folded != "" {
		out = append(out, fmt.Sprintf("%s: of its rollups, %s queries are of names past rollup_limit per namespace: a name it asked only among them is shown as new to it",
			otherKey, folded))
	}
	return out
}

// foldedText says the queries of folded (by span) in words: "the days 40, the minutes 3", or "".
func foldedText(folded map[int64]int64) string {
	var out []string
	for _, l := range []struct {
		span int64
		what string
	}{{86400, "days"}, {3600, "hours"}, {60, "minutes"}} {
		if n := folded[l.span]; n > 0 {
			out = append(out, "the "+l.what+" "+count(n))
		}
	}
	return strings.Join(out, ", ")
}

// yesNo is a table's word for b.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func msText(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func (r *newResult) writeTable(out io.Writer) error {
	// With --namespace, new to it; the last column says whether the file had seen it at all.
	byNS := r.nsPast != nil
	head := func(cols ...string) [][]string {
		if byNS {
			cols = append(cols, "NEW TO FILE")
		}
		return [][]string{cols}
	}
	row := func(old bool, cols ...string) []string {
		if byNS {
			cols = append(cols, yesNo(!old))
		}
		return cols
	}
	lines := head("NEW NAME", "QUERIES", "FIRST SEEN")
	for _, nm := range r.names {
		lines = append(lines, row(nm.old, printable(nm.text), count(nm.queries), msText(nm.first)))
	}
	if err := writeAligned(out, lines); err != nil {
		return err
	}
	if len(r.names) == 0 {
		io.WriteString(out, "no name first seen in the window\n")
	}
	if r.newNames > len(r.names) {
		fmt.Fprintf(out, "(%d of %s; -n shows more)\n", len(r.names), plural(int64(r.newNames), "new name"))
	}
	lines = head("NEW DOMAIN", "QUERIES", "NAMES", "FIRST SEEN")
	for _, dom := range r.domains {
		lines = append(lines, row(dom.old, printable(dom.domain), count(dom.queries), count(int64(dom.names)), msText(dom.first)))
	}
	io.WriteString(out, "\n")
	if err := writeAligned(out, lines); err != nil {
		return err
	}
	if len(r.domains) == 0 {
		io.WriteString(out, "no registered domain first seen in the window\n")
	}
	if r.newDoms > len(r.domains) {
		fmt.Fprintf(out, "(%d of %s; -n shows more)\n", len(r.domains), plural(int64(r.newDoms), "new domain"))
	}
	_, err := io.WriteString(out, "\n"+strings.Join(r.sources(), "\n")+"\n")
	return err
}

func (r *newResult) writeJSON(out io.Writer) error {
	type jsonName struct {
		Name      string `json:"name"`
		Domain    string `json:"domain"`
		Queries   int64  `json:"queries"`
		FirstSeen string `json:"first_seen"`
		NewToFile bool   `json:"new_to_file"`
	}
	type jsonDomain struct {
		Domain    string `json:"domain"`
		Queries   int64  `json:"queries"`
		Names     int    `json:"names"`
		FirstSeen string `json:"first_seen"`
		NewToFile bool   `json:"new_to_file"`
	}
	var ns *string
	if r.namespace != "" {
		ns = &r.namespace
	}
	v := struct {
		Since            string           `json:"since"`
		Namespace        *string          `json:"namespace"`
		Names            []jsonName       `json:"names"`
		Domains          []jsonDomain     `json:"domains"`
		NewNames         int              `json:"new_names"`
		NewDomains       int              `json:"new_domains"`
		NamesNewToFile   int              `json:"names_new_to_file"`
		DomainsNewToFile int              `json:"domains_new_to_file"`
		KnownToNamespace *int             `json:"known_to_namespace"`
		WindowQueries    int64            `json:"window_queries"`
		WindowNames      int              `json:"window_names"`
		WindowDomains    int              `json:"window_domains"`
		Folded           map[string]int64 `json:"rollup_other_queries"`
		WindowFolded     *int64           `json:"window_other_queries"` // counted from the rollups: the window's (other)
		Sources          []string         `json:"sources"`
	}{Since: rfc3339(r.from), Namespace: ns, Names: []jsonName{}, Domains: []jsonDomain{}, NewNames: r.newNames, NewDomains: r.newDoms,
		NamesNewToFile: r.newToFile[0], DomainsNewToFile: r.newToFile[1],
		WindowQueries: r.queries, WindowNames: r.winNames, WindowDomains: r.winDoms, Folded: map[string]int64{}, Sources: r.sources()}
	for span, n := range r.folded {
		v.Folded[map[int64]string{86400: "days", 3600: "hours", 60: "minutes"}[span]] = n
	}
	if r.nsPast != nil {
		v.KnownToNamespace = &r.nsPast.known
	}
	if r.rollupWin != nil {
		v.WindowFolded = &r.rollupWin.folded
	}
	for _, nm := range r.names {
		v.Names = append(v.Names, jsonName{nm.text, nm.domain, nm.queries, msText(nm.first), !nm.old})
	}
	for _, dom := range r.domains {
		v.Domains = append(v.Domains, jsonDomain{dom.domain, dom.queries, dom.names, msText(dom.first), !dom.old})
	}
	return writeJSON(out, v)
}
