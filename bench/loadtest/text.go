package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func (rep *report) text() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	title := rep.Scenario
	if rep.Short {
		title += " (short)"
	}
	p("")
	p("querylog load test: scenario %s, %s", title, rep.Date.Format(time.RFC3339))
	load := "unthrottled"
	if rep.TargetQPS > 0 {
		load = fmt.Sprintf("target %d QPS", rep.TargetQPS)
	}
	p("machine:  %d cores (runtime.NumCPU), shared by dnsperf and CoreDNS; CoreDNS GOMAXPROCS=%d; %s", rep.Cores, rep.GOMAXPROCS, rep.GoVersion)
	if rep.GOMEMLIMIT != "" {
		p("          CoreDNS GOMEMLIMIT=%s", rep.GOMEMLIMIT)
	}
	if rep.CorefileOf != "" {
		p("corefile: %s (deploy/kubernetes's, fake API, loopback upstream with %d A records per A answer)", rep.CorefileOf, rep.UpstreamRR)
	}
	if rep.LockDB {
		p("lock:     the database's write lock held by another connection from startup to the end of the load")
	}
	edns := map[bool]string{true: " -e", false: ""}[rep.EDNS]
	if k := rep.ClientAddrs; k > 1 {
		p("load:     %s for %s per run; %d dnsperf processes at once, each -c %d -T %d -q %d%s and 1/%d of the rate; cache %s",
			load, rep.Duration, k, ceilDiv(rep.Clients, k), rep.Threads, ceilDiv(rep.Outstanding, k), edns, k, onOff(rep.Cache))
	} else {
		p("load:     %s for %s per run; dnsperf -c %d -T %d -q %d%s; cache %s",
			load, rep.Duration, rep.Clients, rep.Threads, rep.Outstanding, edns, onOff(rep.Cache))
	}
	q := rep.Queries
	if mix := cmp.Or(rep.Mix, mixDefault); rep.ClientAddrs > 1 {
		p("mix:      %s: %d client addresses (%s–%s, one dnsperf process each)", mix, rep.ClientAddrs, clientAddr(0), clientAddr(rep.ClientAddrs-1))
	} else {
		p("mix:      %s: 1 client address (127.0.0.1)", mix)
	}
	files := ""
	if q.Files > 1 {
		files = fmt.Sprintf(" in %d files", q.Files)
	}
	pool := ""
	if q.NamePool > 0 && rep.Mix != "" {
		pool = fmt.Sprintf(" from a pool of %d", q.NamePool)
	}
	p("queries:  %d lines%s, %d distinct names%s (top 10 = %.1f%% of lines), %.1f%% NXDOMAIN, seed %d; %s",
		q.Lines, files, q.DistinctNames, pool, 100*q.Top10Share, 100*q.NXDOMAINShare, q.Seed, typeMix(q.ByType, q.Lines))
	if rep.Mix != "" {
		p("queries:  written in %.3f s, before CoreDNS starts (not part of the load)", q.WriteSeconds)
	}
	if src := rep.Source; src != nil {
		if src.Commit != "" || src.SHA256 != "" {
			line := fmt.Sprintf("commit %.12s", src.Commit)
			if src.CommitFrom != "" {
				line += " (from " + src.CommitFrom
				if src.Modified != nil && *src.Modified {
					line += ", checkout modified"
				}
				line += ")"
			}
			if src.SHA256 != "" {
				line += fmt.Sprintf(", %d uncommitted file(s) under plugin/ cmd/, sources sha256 %.12s", len(src.Dirty), src.SHA256)
			}
			p("source:   %s", line)
		}
		if src.Note != "" {
			p("source:   %s", src.Note)
		}
	}
	if rep.QLOptions != "" {
		p("querylog: %s", rep.QLOptions)
	}
	if ch := rep.ClickHouse; ch != nil {
		outage := ""
		if rep.Outage != "" {
			outage = "; stopped for " + rep.Outage + " in the middle of the load"
		}
		p("clickhouse: %s on %s, data in %s; %s is clickhouse://%s@%s/default?table=runN, each run its own table%s",
			ch.Version, ch.Addr, ch.DataDir, clickhousePlaceholder, ch.User, ch.Addr, outage)
	}
	for _, r := range rep.Runs {
		r.text(&b, rep.Scenario == "compare")
	}
	if len(rep.Summary) > 0 {
		p("")
		p("compare: medians over %d round(s) of %s (GOMAXPROCS=%d, %d cores shared with dnsperf; noisy machine: ratios matter more than absolutes)",
			rep.Pairs, strings.Join(rep.Variants, ", "), rep.GOMAXPROCS, rep.Cores)
		none, ql := rep.summaryOf("none") != nil, rep.summaryOf("querylog") != nil
		// Every cell ends with a tab, so that all are right-aligned; the empty first one indents.
		table := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "\tvariant\tQPS\tCPU µs/query\tlatency ms\tRSS MiB\t"
		if none {
			head += "QPS ×none\tCPU/q ×none\tpaired QPS\tpaired CPU/q\t"
		}
		if ql {
			head += "QPS ×ql\tCPU/q ×ql\tpaired QPS ×ql\tpaired CPU/q ×ql\t"
		}
		fmt.Fprintln(table, head+"QPS min..max\t")
		for _, s := range rep.Summary {
			fmt.Fprintf(table, "\t%s\t%.0f\t%.2f\t%.3f\t%.1f\t", s.Variant, s.MedianQPS, s.MedianCPUPerQ, 1000*s.MedianLatency, s.MedianPeakRSS/(1<<20))
			if none {
				fmt.Fprint(table, ratioCells(s.Variant != "none", s.QPSRatio, s.CPUPerQRatio, s.PairedQPSRatio, s.PairedCPUPerQRatio))
			}
			if ql {
				fmt.Fprint(table, ratioCells(s.Variant != "querylog", s.QPSRatioQL, s.CPUPerQRatioQL, s.PairedQPSRatioQL, s.PairedCPUPerQRatioQL))
			}
			fmt.Fprintf(table, "%s\t\n", s.QPSRangeJSON)
		}
		table.Flush()
		if none {
			p("  ×none: ratio of the medians; paired: median of the per-round ratios to that round's none run")
		}
		if ql {
			p("  ×ql: the same against querylog (that round's querylog run for paired)")
		}
		for _, n := range rep.Named {
			p("  variant %s", n)
		}
	}
	p("")
	if rep.Pass {
		p("result: PASS")
	} else {
		p("result: FAIL")
		for _, pr := range rep.Problems {
			p("  - %s", pr)
		}
	}
	return b.String()
}

func (r *runResult) text(w io.Writer, compact bool) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("")
	p("run %d: %s (GOMAXPROCS=%d, observed %.0f)", r.Index, r.Variant, r.GOMAXPROCS, r.GOMAXPROCSSeen)
	if d := r.DNSPerf; d != nil {
		p("  dnsperf:   QPS achieved %.0f; sent %d, completed %d, lost %d (%.3f%%); latency avg %.3f ms, max %.1f ms; %s",
			d.QPS, d.Sent, d.Completed, d.Lost, pct(float64(d.Lost), float64(d.Sent)), 1000*d.LatencyAvg, 1000*d.LatencyMax, rcodes(d.Rcodes))
	}
	if r.Rows != nil {
		rc := "n/a"
		if r.RowsMinusCompl != nil {
			rc = strconv.FormatInt(*r.RowsMinusCompl, 10)
			if r.lockedDB && r.Querylog != nil && *r.RowsMinusCompl == -int64(r.Querylog.DroppedTotal) {
				rc += " = − dropped (OK: -lock-db)"
			} else if *r.RowsMinusCompl == 0 {
				rc += " (OK)"
			} else {
				rc += " (MUST BE 0)"
			}
		}
		re := ""
		if r.RowsMinusEnq != nil {
			re = fmt.Sprintf("; rows − enqueued_total = %d", *r.RowsMinusEnq)
		}
		if r.LoopProbes > 0 {
			re += fmt.Sprintf(" (with %d HINFO probe row(s), the loop plugin's and the harness's, not counted as written)", r.LoopProbes)
		}
		p("  rows:      %d written; rows − completed = %s%s", *r.Rows, rc, re)
	}
	if r.DBClientAddrs != nil || r.NamesRepeated != nil {
		var parts []string
		switch {
		case r.DBClientAddrs != nil && r.DBDistinctNames != nil:
			parts = append(parts, fmt.Sprintf("%d distinct names and %d client address(es) in the rows", *r.DBDistinctNames, *r.DBClientAddrs))
		case r.DBClientAddrs != nil:
			parts = append(parts, fmt.Sprintf("%d client address(es) in the rows", *r.DBClientAddrs))
		}
		if r.DBRowsWithPod != nil && r.DBPods != nil {
			parts = append(parts, fmt.Sprintf("%d rows with the client's namespace and pod (%d pod(s))", *r.DBRowsWithPod, *r.DBPods))
		}
		if r.NamesRepeated != nil {
			parts = append(parts, fmt.Sprintf("%.2f%% of the queries sent repeated a name (dnsperf starts its file over after the last line)", 100**r.NamesRepeated))
		}
		p("  mix:       %s", strings.Join(parts, "; "))
	}
	if r.LogLines != nil && r.DNSPerf != nil {
		p("  log:       %d query lines on stdout; lines − completed = %d", *r.LogLines, *r.LogLines-r.DNSPerf.Completed)
	}
	if r.DNSTapBytes != nil && r.ReceiverCPU != nil {
		p("  dnstap:    the receiver wrote %d bytes and used %.2f s of CPU during load, not counted in CoreDNS's", *r.DNSTapBytes, *r.ReceiverCPU)
	}
	if q := r.Querylog; q != nil {
		p("  drops:     %s (at SIGTERM: enqueued %.0f, written %.0f, buffered %.0f, flush errors %.0f, ignored %.0f)",
			drops(q.Dropped), q.Enqueued, q.Written, q.BufferedAtStop, q.FlushErrors, q.Ignored)
		p("  buffer:    peak %.0f of %.0f (%.2f%% of capacity); %d drop summary line(s) logged", q.BufferPeak, q.BufferCapacity, q.BufferPeakPct, q.DropSummaries)
		p("  size:      database + WAL at most %.0f bytes (db_size_bytes, scraped every second); %.0f rows pruned", q.DBSizePeak, q.Pruned)
		if q.Flushes > 0 {
			mx := fmt.Sprintf("≤ %s (upper bound of the highest non-empty bucket, an estimate)", ms(q.FlushMaxUpperBound))
			if q.FlushMaxAbove {
				mx = fmt.Sprintf("> %s (in the +Inf bucket)", ms(q.FlushMaxUpperBound))
			}
			p("  flushes:   %.0f before SIGTERM, mean %.0f rows/batch (largest ≤ %.0f); flusher busy %.2f%% of load time",
				q.Flushes, q.MeanBatch, q.BatchMaxUpperBound, q.FlushBusyPct)
			p("  flush time: p50 %s, p99 %s, max %s", ms(q.FlushP50), ms(q.FlushP99), mx)
		} else {
			p("  flushes:   none before SIGTERM (everything was written by the shutdown drain)")
		}
	}
	if r.Ship != nil {
		r.Ship.text(w)
	}
	perQ := ""
	if r.CPUPerQueryUS > 0 {
		perQ = fmt.Sprintf(" = %.2f µs/query", r.CPUPerQueryUS)
	}
	p("  CoreDNS:   CPU %.2f s during load%s (%.2f s since start, GOMAXPROCS=%d); peak RSS %.1f MiB; shutdown %.2f s",
		r.CPUSecondsLoad, perQ, r.CPUSecondsTotal, r.GOMAXPROCS, float64(r.PeakRSSBytes)/(1<<20), r.ShutdownSeconds)
	if d := r.DNSPerf; d != nil && !compact {
		p("  dnsperf:   CPU %.2f s", d.CPUSeconds)
	}
	if r.Rows != nil {
		p("  database:  %d bytes after checkpoint (%d with WAL at exit), %.1f bytes/row", r.DBBytes, r.DBBytesAtExit, r.BytesPerRow)
	}
	if r.CPUProfile != "" {
		p("  profile:   %s (go tool pprof -top %s)", r.CPUProfile, r.CPUProfile)
	}
	for _, w := range r.LogWarnings[:min(len(r.LogWarnings), 5)] {
		p("  coredns:   %s", w)
	}
	for _, pr := range r.Problems {
		p("  PROBLEM:   %s", pr)
	}
}

// ratioCells formats four ratios as table cells, or leaves them empty (for the base itself).
func ratioCells(show bool, xs ...float64) string {
	var b strings.Builder
	for _, x := range xs {
		if show {
			fmt.Fprintf(&b, "%.3f", x)
		}
		b.WriteString("\t")
	}
	return b.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// typeMix lists the query types from the most to the least frequent.
func typeMix(m map[string]int, total int) string {
	types := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, 0, len(types))
	for _, k := range types {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*float64(m[k])/float64(total)))
	}
	return strings.Join(parts, ", ")
}

func rcodes(m map[string]int) string { return joinSorted(m, "%s %d") }

func drops(m map[string]float64) string {
	if len(m) == 0 {
		return "none reported"
	}
	return joinSorted(m, "%s %.0f")
}

// joinSorted formats each key and value of m with format, in key order.
func joinSorted[V any](m map[string]V, format string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf(format, k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", 1000*s)
}
