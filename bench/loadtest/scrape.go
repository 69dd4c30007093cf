package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// scrape is the part of one /metrics scrape the report uses.
type scrape struct {
	t              float64
	bufferSize     float64
	bufferCapacity float64
	bufferPeak     float64
	enqueued       float64
	written        float64
	dropped        map[string]float64
	flushErrors    float64
	ignored        float64
	pruned         float64
	dbSize         float64 // database + WAL
	flushDur       []bucket
	flushDurSum    float64
	flushSize      []bucket
	flushSizeSum   float64
	requests       float64
	cpu            float64
	gomaxprocs     float64
	hasQuerylog    bool
	// With ship.
	shipLag     float64 // seconds: the oldest row not in ClickHouse yet (the largest of several databases)
	shipLagRows float64
	shipped     float64
	shipErrors  float64
	shipDropped float64
	hasShip     bool
}

// newScrape sums each series the report uses over its label sets (several servers or
// databases would each have their own).
func newScrape(t float64, families []*dto.MetricFamily) *scrape {
	s := &scrape{t: t, dropped: map[string]float64{}}
	const p = "coredns_querylog_"
	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := value(m)
			switch f.GetName() {
			case p + "buffer_size":
				s.bufferSize += v
				s.hasQuerylog = true
			case p + "buffer_capacity":
				s.bufferCapacity += v
			case p + "buffer_peak_size":
				s.bufferPeak += v
			case p + "enqueued_total":
				s.enqueued += v
			case p + "written_total":
				s.written += v
			case p + "dropped_total":
				s.dropped[label(m, "reason")] += v
			case p + "ignored_total":
				s.ignored += v
			case p + "flush_errors_total":
				s.flushErrors += v
			case p + "pruned_total":
				s.pruned += v
			case p + "db_size_bytes":
				s.dbSize += v
			case p + "batch_flush_duration_seconds":
				s.flushDur = addBuckets(s.flushDur, m.GetHistogram())
				s.flushDurSum += m.GetHistogram().GetSampleSum()
			case p + "batch_flush_size":
				s.flushSize = addBuckets(s.flushSize, m.GetHistogram())
				s.flushSizeSum += m.GetHistogram().GetSampleSum()
			case p + "ship_lag_seconds":
				s.shipLag = max(s.shipLag, v)
				s.hasShip = true
			case p + "ship_lag_rows":
				s.shipLagRows += v
			case p + "shipped_total":
				s.shipped += v
			case p + "ship_errors_total":
				s.shipErrors += v
			case p + "ship_dropped_total":
				s.shipDropped += v
			case "coredns_dns_requests_total":
				s.requests += v
			case "process_cpu_seconds_total":
				s.cpu = v
			case "go_sched_gomaxprocs_threads":
				s.gomaxprocs = v
			}
		}
	}
	return s
}

// value is the value of a counter, gauge or untyped sample.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (s *scrape) droppedTotal() float64 {
	var n float64
	for _, v := range s.dropped {
		n += v
	}
	return n
}

// point is one second of the time series in the JSON report.
type point struct {
	T          float64 `json:"t"`
	Requests   float64 `json:"dns_requests"`
	BufferSize float64 `json:"buffer_size,omitempty"`
	BufferPeak float64 `json:"buffer_peak,omitempty"`
	Enqueued   float64 `json:"enqueued,omitempty"`
	Written    float64 `json:"written,omitempty"`
	Dropped    float64 `json:"dropped,omitempty"`
	Flushes    float64 `json:"flushes,omitempty"`
	DBSize     float64 `json:"db_size_bytes,omitempty"`
	CPU        float64 `json:"cpu_seconds"`
	ShipLag    float64 `json:"ship_lag_seconds,omitempty"`
	ShipRows   float64 `json:"ship_lag_rows,omitempty"`
	Shipped    float64 `json:"shipped,omitempty"`
	ShipErrors float64 `json:"ship_errors,omitempty"`
	hasShip    bool
}

func (s *scrape) point() point {
	p := point{T: round(s.t, 2), Requests: s.requests, BufferSize: s.bufferSize, BufferPeak: s.bufferPeak,
		Enqueued: s.enqueued, Written: s.written, Dropped: s.droppedTotal(), DBSize: s.dbSize, CPU: s.cpu,
		ShipLag: s.shipLag, ShipRows: s.shipLagRows, Shipped: s.shipped, ShipErrors: s.shipErrors, hasShip: s.hasShip}
	if n := len(s.flushDur); n > 0 {
		p.Flushes = s.flushDur[n-1].Count
	}
	return p
}

func scrapeOnce(ctx context.Context, url string, t float64) (*scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var families []*dto.MetricFamily
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("GET %s: %w", url, err)
		}
		families = append(families, f)
	}
	return newScrape(t, families), nil
}

type scraper struct {
	url     string
	mu      sync.Mutex
	scrapes []*scrape
	errors  int
}

func (sc *scraper) loop(ctx context.Context, start time.Time) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, err := scrapeOnce(ctx, sc.url, time.Since(start).Seconds())
		sc.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				sc.errors++
			}
		} else {
			sc.scrapes = append(sc.scrapes, s)
		}
		sc.mu.Unlock()
	}
}

func (sc *scraper) series() []point {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := make([]point, 0, len(sc.scrapes)+1)
	for _, s := range sc.scrapes {
		out = append(out, s.point())
	}
	return out
}

// maxPeak returns the highest buffer peak and database size (with its WAL) scraped.
func (sc *scraper) maxPeak() (buffer, dbSize float64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, s := range sc.scrapes {
		buffer, dbSize = max(buffer, s.bufferPeak), max(dbSize, s.dbSize)
	}
	return buffer, dbSize
}
