package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseProm parses the Prometheus text exposition format (what CoreDNS serves without
// content negotiation).
func parseProm(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			continue
		}
		s.name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
					rest = ""
					break
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				j := 0
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' && j+1 < len(rest) {
						j++
						if rest[j] == 'n' {
							val.WriteByte('\n')
							continue
						}
					}
					val.WriteByte(rest[j])
				}
				s.labels[key] = val.String()
				if j >= len(rest) {
					rest = ""
					break
				}
				rest = rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

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
	flushDur       []bucket
	flushDurSum    float64
	flushSize      []bucket
	flushSizeSum   float64
	requests       float64
	cpu            float64
	gomaxprocs     float64
	hasQuerylog    bool
}

func newScrape(t float64, samples []sample) *scrape {
	s := &scrape{t: t, dropped: map[string]float64{}}
	const p = "coredns_querylog_"
	for _, m := range samples {
		switch m.name {
		case p + "buffer_size":
			s.bufferSize += m.value
			s.hasQuerylog = true
		case p + "buffer_capacity":
			s.bufferCapacity += m.value
		case p + "buffer_peak_size":
			s.bufferPeak += m.value
		case p + "enqueued_total":
			s.enqueued += m.value
		case p + "written_total":
			s.written += m.value
		case p + "dropped_total":
			s.dropped[m.labels["reason"]] += m.value
		case p + "ignored_total":
			s.ignored += m.value
		case p + "flush_errors_total":
			s.flushErrors += m.value
		case p + "batch_flush_duration_seconds_bucket":
			s.flushDur = addBucket(s.flushDur, m)
		case p + "batch_flush_duration_seconds_sum":
			s.flushDurSum += m.value
		case p + "batch_flush_size_bucket":
			s.flushSize = addBucket(s.flushSize, m)
		case p + "batch_flush_size_sum":
			s.flushSizeSum += m.value
		case "coredns_dns_requests_total":
			s.requests += m.value
		case "process_cpu_seconds_total":
			s.cpu = m.value
		case "go_sched_gomaxprocs_threads":
			s.gomaxprocs = m.value
		}
	}
	return s
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
	CPU        float64 `json:"cpu_seconds"`
}

func (s *scrape) point() point {
	p := point{T: round(s.t, 2), Requests: s.requests, BufferSize: s.bufferSize, BufferPeak: s.bufferPeak,
		Enqueued: s.enqueued, Written: s.written, Dropped: s.droppedTotal(), CPU: s.cpu}
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
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return newScrape(t, parseProm(string(b))), nil
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

func (sc *scraper) maxPeak() float64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var m float64
	for _, s := range sc.scrapes {
		m = max(m, s.bufferPeak)
	}
	return m
}
