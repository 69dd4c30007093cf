package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	_ "modernc.org/sqlite" // "sqlite" driver, to count the rows querylog wrote
)

type querylogMetrics struct {
	Enqueued           float64            `json:"enqueued_total"`
	Written            float64            `json:"written_total"`
	BufferedAtStop     float64            `json:"buffered_at_sigterm"`
	Dropped            map[string]float64 `json:"dropped_by_reason"`
	DroppedTotal       float64            `json:"dropped_total"`
	FlushErrors        float64            `json:"flush_errors_total"`
	Ignored            float64            `json:"ignored_total"`
	Pruned             float64            `json:"pruned_total"`       // rows deleted by retention or max_size
	DBSizePeak         float64            `json:"db_size_peak_bytes"` // highest db_size_bytes (database + WAL) scraped
	DropSummaries      int                `json:"drop_summary_lines"` // "Dropped N entries ... in the last 10s" lines logged
	BufferCapacity     float64            `json:"buffer_capacity"`
	BufferPeak         float64            `json:"buffer_peak"`
	BufferPeakPct      float64            `json:"buffer_peak_pct"`
	Flushes            float64            `json:"flush_count"`
	FlushP50           float64            `json:"flush_p50_s"`
	FlushP99           float64            `json:"flush_p99_s"`
	FlushMaxUpperBound float64            `json:"flush_max_upper_bound_s"`
	FlushMaxAbove      bool               `json:"flush_max_above_last_bucket,omitempty"`
	FlushBusyPct       float64            `json:"flush_busy_pct"` // sum of flush durations / load time
	MeanBatch          float64            `json:"mean_batch_rows"`
	BatchMaxUpperBound float64            `json:"batch_rows_max_upper_bound"`
	FlushBuckets       []bucket           `json:"flush_duration_buckets"`
	Note               string             `json:"note"`
}

type runResult struct {
	Index           int              `json:"index"`
	Round           int              `json:"round,omitempty"` // compare: the round (pair) of the run
	Variant         string           `json:"variant"`         // none, querylog, log, dnstap or a -variant name
	querylog        bool             // a querylog block: rows are counted and judged
	lockedDB        bool             // -lock-db: drops are expected, and judged with the rows
	pods            bool             // -corefile kubernetes: every client is a pod of the fake API, and its rows must name it
	Started         time.Time        `json:"started"`
	GOMAXPROCS      int              `json:"gomaxprocs"`
	GOMAXPROCSSeen  float64          `json:"gomaxprocs_observed"` // go_sched_gomaxprocs_threads
	LoadSeconds     float64          `json:"load_seconds"`
	DNSPerf         *dnsperfResult   `json:"dnsperf"`
	Rows            *int64           `json:"rows,omitempty"`            // without LoopProbes
	LoopProbes      int64            `json:"loop_probe_rows,omitempty"` // HINFO probe rows: the loop plugin's (-corefile kubernetes) and the harness's (waitAnswers)
	RowsMinusCompl  *int64           `json:"rows_minus_completed,omitempty"`
	RowsMinusEnq    *int64           `json:"rows_minus_enqueued,omitempty"`
	DBClientAddrs   *int64           `json:"db_client_addresses,omitempty"`  // distinct client_ip in the rows
	DBRowsWithPod   *int64           `json:"db_rows_with_pod,omitempty"`     // -corefile kubernetes: rows (but LoopProbes) with the client's namespace and pod
	DBPods          *int64           `json:"db_pods,omitempty"`              // -corefile kubernetes: distinct namespace and pod in the rows
	DBDistinctNames *int64           `json:"db_distinct_names,omitempty"`    // distinct qname in the rows (not counted for the unique mix)
	NamesRepeated   *float64         `json:"names_repeated_share,omitempty"` // unique mix: share of the queries sent after dnsperf wrapped around its file
	LogLines        *int64           `json:"log_lines,omitempty"`            // log variant: query lines in stdout
	DNSTapBytes     *int64           `json:"dnstap_bytes,omitempty"`         // dnstap variant: the receiver's Frame Streams file
	ReceiverCPU     *float64         `json:"dnstap_receiver_cpu_seconds_load,omitempty"`
	Querylog        *querylogMetrics `json:"querylog,omitempty"`
	Ship            *shipResult      `json:"ship,omitempty"` // querylog shipped to the harness's ClickHouse
	CPUSecondsLoad  float64          `json:"coredns_cpu_seconds_load"`
	CPUSecondsTotal float64          `json:"coredns_cpu_seconds_total"`
	CPUPerQueryUS   float64          `json:"coredns_cpu_us_per_query"`
	PeakRSSBytes    int64            `json:"coredns_peak_rss_bytes"`
	RSSBytes        int64            `json:"coredns_rss_bytes_at_sigterm"`
	ShutdownSeconds float64          `json:"shutdown_seconds"`
	DBBytesAtExit   int64            `json:"db_bytes_at_exit,omitempty"` // database + WAL as CoreDNS left them
	DBBytes         int64            `json:"db_bytes,omitempty"`         // database after a checkpoint
	BytesPerRow     float64          `json:"db_bytes_per_row,omitempty"`
	LogWarnings     []string         `json:"coredns_warnings,omitempty"`
	Problems        []string         `json:"problems,omitempty"`
	Pass            bool             `json:"pass"`
	CPUProfile      string           `json:"cpu_profile,omitempty"`
	Corefile        string           `json:"corefile"`
	Series          []point          `json:"series"`
}

func (r *runResult) setMetrics(s *scrape, peak, dbPeak float64) {
	r.GOMAXPROCSSeen = s.gomaxprocs
	if !s.hasQuerylog {
		return
	}
	peak = max(peak, s.bufferPeak)
	q := &querylogMetrics{
		Enqueued: s.enqueued, Written: s.written, BufferedAtStop: s.bufferSize,
		Dropped: s.dropped, DroppedTotal: s.droppedTotal(), FlushErrors: s.flushErrors, Ignored: s.ignored,
		Pruned: s.pruned, DBSizePeak: max(dbPeak, s.dbSize),
		BufferCapacity: s.bufferCapacity, BufferPeak: peak, FlushBuckets: s.flushDur,
		Note: "flush figures are from the last scrape before SIGTERM: the shutdown drain's flushes are not included; " +
			"p50/p99 are interpolated within histogram buckets, and the max is the upper bound of the highest non-empty bucket, not a measured value",
	}
	if s.bufferCapacity > 0 {
		q.BufferPeakPct = round(100*peak/s.bufferCapacity, 2)
	}
	if n := len(s.flushDur); n > 0 {
		q.Flushes = s.flushDur[n-1].Count
		p50, _ := quantile(0.5, s.flushDur)
		p99, _ := quantile(0.99, s.flushDur)
		mx, above := maxBound(s.flushDur)
		q.FlushP50, q.FlushP99, q.FlushMaxUpperBound, q.FlushMaxAbove = round(p50, 6), round(p99, 6), round(mx, 6), above
		if r.LoadSeconds > 0 {
			q.FlushBusyPct = round(100*s.flushDurSum/r.LoadSeconds, 2)
		}
	}
	if q.Flushes > 0 {
		q.MeanBatch = round(s.flushSizeSum/q.Flushes, 1)
		bmax, _ := maxBound(s.flushSize)
		q.BatchMaxUpperBound = round(bmax, 0)
	}
	r.Querylog = q
}

// scanLog collects querylog's warnings and errors from CoreDNS's output and, for the log
// variant, counts the query lines.
func (r *runResult) scanLog(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var lines int64
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "[INFO] 127."): // a query line: every client is on 127.0.0.0/8
			lines++
		case strings.HasPrefix(line, "[WARNING]"), strings.HasPrefix(line, "[ERROR]"), strings.HasPrefix(line, "panic"):
			if len(r.LogWarnings) < 50 {
				r.LogWarnings = append(r.LogWarnings, line)
			}
			if r.Querylog != nil && strings.HasPrefix(line, "[ERROR] plugin/querylog: Dropped ") && strings.Contains(line, " in the last ") {
				r.Querylog.DropSummaries++
			}
		}
	}
	if r.Variant == "log" {
		r.LogLines = &lines
	}
}

// countRows counts the rows querylog wrote, their client addresses and, if countNames, their
// names, and measures the database.
func (r *runResult) countRows(path string, countNames bool) error {
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			r.DBBytesAtExit += fi.Size()
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	// The loop plugin's startup probe and the harness's (waitAnswers), HINFO, which no mix
	// sends, are not dnsperf's queries.
	var n, probes, clients, names int64
	if countNames {
		err = db.QueryRow(`SELECT count(*), coalesce(sum(qtype = 13), 0), count(DISTINCT client_ip), count(DISTINCT qname) FROM queries`).Scan(&n, &probes, &clients, &names)
		r.DBDistinctNames = &names
	} else {
		err = db.QueryRow(`SELECT count(*), coalesce(sum(qtype = 13), 0), count(DISTINCT client_ip) FROM queries`).Scan(&n, &probes, &clients)
	}
	n -= probes
	if err == nil {
		_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("counting rows in %s: %w", path, err)
	}
	r.Rows, r.DBClientAddrs, r.LoopProbes = &n, &clients, probes
	if r.pods {
		if err := r.countPods(path); err != nil {
			return err
		}
	}
	if fi, err := os.Stat(path); err == nil {
		r.DBBytes = fi.Size()
	}
	if n > 0 {
		r.BytesPerRow = round(float64(r.DBBytes)/float64(n), 1)
	}
	return nil
}

// countPods counts the rows, but the loop plugin's probe, that name the client's namespace and
// pod (the kubernetes plugin's metadata, in the pods dictionary), and the pods they name.
func (r *runResult) countPods(path string) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	var with, pods int64
	err = db.QueryRow(`SELECT coalesce(sum(namespace IS NOT NULL AND pod IS NOT NULL), 0), count(DISTINCT namespace || '/' || pod)
		FROM queries WHERE qtype <> 13`).Scan(&with, &pods)
	if err != nil {
		return fmt.Errorf("counting the rows with a pod in %s: %w", path, err)
	}
	r.DBRowsWithPod, r.DBPods = &with, &pods
	return nil
}

// repeatedNames sets the share of the queries that repeated a name of the unique mix: dnsperf
// reads its file in order and starts over at the end, so a process that sent more queries
// than its file has lines repeated the excess.
func (r *runResult) repeatedNames(linesPerFile []int) {
	d := r.DNSPerf
	if d == nil || d.Sent == 0 || len(d.SentBy) != len(linesPerFile) {
		return
	}
	var repeated int64
	for i, sent := range d.SentBy {
		repeated += max(0, sent-int64(linesPerFile[i]))
	}
	share := round(float64(repeated)/float64(d.Sent), 4)
	r.NamesRepeated = &share
}

// judge computes the derived figures and decides pass/fail: for querylog variants, every reply
// dnsperf received is a row and nothing was dropped.
func (r *runResult) judge() {
	if d := r.DNSPerf; d != nil && d.Completed > 0 {
		r.CPUPerQueryUS = round(1e6*r.CPUSecondsLoad/float64(d.Completed), 2)
	}
	if r.querylog {
		if r.Rows == nil || r.DNSPerf == nil {
			r.Problems = append(r.Problems, "rows or dnsperf results missing")
		} else {
			d := *r.Rows - r.DNSPerf.Completed
			r.RowsMinusCompl = &d
			switch {
			case r.lockedDB && r.Querylog != nil:
				// Nothing was flushed during the load: what did not fit was dropped, and counted.
				if lost := -d - int64(r.Querylog.DroppedTotal); lost != 0 {
					r.Problems = append(r.Problems, fmt.Sprintf("completed − rows − dropped = %d (must be 0)", lost))
				}
			case d != 0:
				r.Problems = append(r.Problems, fmt.Sprintf("rows − completed = %d (must be 0)", d))
			}
		}
		if r.pods && r.Rows != nil && (r.DBRowsWithPod == nil || *r.DBRowsWithPod != *r.Rows) {
			with := int64(-1)
			if r.DBRowsWithPod != nil {
				with = *r.DBRowsWithPod
			}
			r.Problems = append(r.Problems, fmt.Sprintf("%d of %d rows name the client's namespace and pod (must be all: every client is a pod)", with, *r.Rows))
		}
		if r.Querylog == nil {
			r.Problems = append(r.Problems, "no querylog metrics")
		} else {
			if r.Rows != nil {
				d := *r.Rows + r.LoopProbes - int64(r.Querylog.Enqueued)
				r.RowsMinusEnq = &d
			}
			if r.Querylog.DroppedTotal > 0 && !r.lockedDB {
				r.Problems = append(r.Problems, fmt.Sprintf("querylog dropped %.0f entries before SIGTERM: %v", r.Querylog.DroppedTotal, nonZero(r.Querylog.Dropped)))
			}
		}
	}
	if r.Ship != nil {
		r.Problems = append(r.Problems, r.Ship.judge(r.Rows, r.DNSPerf)...)
	}
	if r.DNSPerf != nil && r.DNSPerf.Rcodes["SERVFAIL"] > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d SERVFAIL replies", r.DNSPerf.Rcodes["SERVFAIL"]))
	}
	r.Pass = len(r.Problems) == 0
}

func nonZero(m map[string]float64) map[string]float64 {
	out := maps.Clone(m)
	maps.DeleteFunc(out, func(_ string, v float64) bool { return v == 0 })
	return out
}
