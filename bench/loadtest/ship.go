package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// shipResult is what a run that ships to the harness's ClickHouse (-clickhouse) reports: the
// rows there against SQLite and dnsperf, and how far behind the shipper was during the load.
type shipResult struct {
	Table    string   `json:"table"` // default.TABLE, the run's own
	Nodes    []string `json:"nodes,omitempty"`
	CHRows   *uint64  `json:"clickhouse_count,omitempty"`             // count(), after CoreDNS exited
	CHUnique *uint64  `json:"clickhouse_distinct_node_seq,omitempty"` // uniqExact(node, seq)
	// Rows and completed queries are the run's rows and dnsperf.queries_completed.
	Equal bool `json:"counts_equal"` // all four equal

	// coredns_querylog_ship_lag_seconds, scraped every second during the load.
	LagSamples int     `json:"lag_samples"`
	LagP50     float64 `json:"lag_seconds_p50"`
	LagP99     float64 `json:"lag_seconds_p99"`
	LagMax     float64 `json:"lag_seconds_max"`
	// At the last scrape before SIGTERM: the shipper's last pass on shutdown is not in these.
	LagAtStop     float64 `json:"lag_seconds_at_sigterm"`
	LagRowsAtStop float64 `json:"lag_rows_at_sigterm"`
	Shipped       float64 `json:"shipped_total"`
	Errors        float64 `json:"ship_errors_total"`
	Dropped       float64 `json:"ship_dropped_total"`
	// ClickHouse's own CPU (utime+stime) during the load; absent across an outage's restart.
	CPUSecondsLoad float64 `json:"clickhouse_cpu_seconds_load,omitempty"`

	Outage *outageResult `json:"outage,omitempty"`
}

// shipTarget is a run's own table in the harness's ClickHouse.
type shipTarget struct {
	ch    *clickhouse
	table string
}

// shipRun follows a run that ships to the harness's ClickHouse, from the start of the load.
type shipRun struct {
	target *shipTarget
	res    *shipResult
	pid    int // ClickHouse's, to read its CPU time
	cpu0   float64
	outage *outage
}

// startShipRun is called as the load starts; with -clickhouse-outage it schedules the outage.
func startShipRun(ctx context.Context, c *config, t *shipTarget, loadStart time.Time) *shipRun {
	s := &shipRun{target: t, res: &shipResult{Table: t.table}, pid: t.ch.server.Pid()}
	s.cpu0, _ = procCPU(s.pid)
	if c.outage > 0 {
		s.outage = startOutage(ctx, t.ch.server, c.duration, c.outage, loadStart)
	}
	return s
}

// loadEnded waits for ClickHouse to be back from an outage and reads its CPU time, which
// covers the load unless the outage restarted it.
func (s *shipRun) loadEnded() {
	if s.outage != nil {
		s.res.Outage = s.outage.wait()
	}
	if s.target.ch.server.Pid() == s.pid {
		if cpu1, err := procCPU(s.pid); err == nil {
			s.res.CPUSecondsLoad = round(cpu1-s.cpu0, 3)
		}
	}
}

// scraped summarizes the shipper's metrics: the lag over the load's scrapes, the counters
// from the last one before SIGTERM (final, nil if it failed).
func (s *shipRun) scraped(series []point, final *scrape) {
	r := s.res
	if final != nil {
		r.LagAtStop, r.LagRowsAtStop = final.shipLag, final.shipLagRows
		r.Shipped, r.Errors, r.Dropped = final.shipped, final.shipErrors, final.shipDropped
	}
	var lags []float64
	for _, p := range series {
		if p.hasShip {
			lags = append(lags, p.ShipLag)
		}
	}
	if len(lags) > 0 {
		r.LagSamples = len(lags)
		r.LagP50, r.LagP99, r.LagMax = round(percentile(lags, 0.5), 3), round(percentile(lags, 0.99), 3), slices.Max(lags)
	}
	if r.Outage != nil {
		r.Outage.recovered(series)
	}
}

// count reads the run's rows in ClickHouse, once CoreDNS has exited.
func (s *shipRun) count(ctx context.Context) error {
	rows, distinct, nodes, err := s.target.ch.count(ctx, s.target.table)
	if err != nil {
		return err
	}
	s.res.CHRows, s.res.CHUnique, s.res.Nodes = &rows, &distinct, nodes
	return nil
}

// judge checks that ClickHouse holds every row of SQLite once, and that every query dnsperf
// got a reply to is one of them.
func (s *shipResult) judge(rows *int64, d *dnsperfResult) []string {
	if s.CHRows == nil || rows == nil || d == nil {
		return []string{"ClickHouse count, rows or dnsperf results missing"}
	}
	n := uint64(*rows)
	s.Equal = *s.CHRows == n && *s.CHUnique == n && *rows == d.Completed
	if !s.Equal {
		return []string{fmt.Sprintf("ClickHouse count() %d, distinct (node, seq) %d, rows %d, completed %d: must all be equal",
			*s.CHRows, *s.CHUnique, *rows, d.Completed)}
	}
	return nil
}

func (s *shipResult) text(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if s.CHRows != nil {
		ok := "EQUAL"
		if !s.Equal {
			ok = "NOT EQUAL"
		}
		p("  ship:      ClickHouse count() %d, distinct (node, seq) %d in default.%s (nodes %v), after exit; with rows and completed: %s",
			*s.CHRows, *s.CHUnique, s.Table, s.Nodes, ok)
	}
	p("  ship lag:  p50 %.1f s, p99 %.1f s, max %.1f s (ship_lag_seconds, %d scrapes 1 s apart); at SIGTERM %.1f s, %.0f rows",
		s.LagP50, s.LagP99, s.LagMax, s.LagSamples, s.LagAtStop, s.LagRowsAtStop)
	p("  shipping:  shipped_total %.0f, ship_errors_total %.0f, ship_dropped_total %.0f (at SIGTERM; the last pass on shutdown is not counted)",
		s.Shipped, s.Errors, s.Dropped)
	if s.CPUSecondsLoad > 0 {
		p("  ClickHouse: CPU %.2f s during load", s.CPUSecondsLoad)
	}
	if o := s.Outage; o != nil {
		back := "never"
		if o.BackAt > 0 {
			back = fmt.Sprintf("%.1f s", o.BackAt)
		}
		p("  outage:    ClickHouse sent SIGTERM at %.1f s, exited at %.1f s, started again at %.1f s, answering at %s (seconds into the load; -clickhouse-outage %gs)",
			o.StopAt, o.StoppedAt, o.StartAt, back, o.Planned)
		if o.LagUnder5 != nil {
			p("  recovery:  lag under 5 s %.1f s after ClickHouse answered again (to the next scrape)", *o.LagUnder5)
		} else if o.BackAt > 0 {
			p("  recovery:  lag NOT under 5 s again before the load ended")
		}
		if o.Error != "" {
			p("  outage:    %s", o.Error)
		}
	}
}
