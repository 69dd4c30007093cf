package main

import (
	"context"
	"time"

	"github.com/querylog/querylog/internal/chserver"
)

// outageResult says when ClickHouse was down, in seconds since the load began.
type outageResult struct {
	Planned   float64  `json:"planned_seconds"`                     // -clickhouse-outage
	StopAt    float64  `json:"stop_at_s"`                           // SIGTERM sent
	StoppedAt float64  `json:"stopped_at_s"`                        // the server had exited
	StartAt   float64  `json:"start_at_s"`                          // started again, Planned after StopAt
	BackAt    float64  `json:"back_at_s"`                           // answering again
	LagUnder5 *float64 `json:"lag_under_5s_after_back_s,omitempty"` // first scrape at or after BackAt with ship_lag_seconds < 5, minus BackAt; absent if none before the load ended
	Error     string   `json:"error,omitempty"`
}

// outage stops the ClickHouse server (load − d)/2 into the load and starts it again d later, so
// that the shipper must keep rows back and then catch up while the load goes on.
type outage struct {
	res  outageResult
	done chan struct{}
}

func startOutage(ctx context.Context, s *chserver.Server, load, d time.Duration, loadStart time.Time) *outage {
	o := &outage{res: outageResult{Planned: d.Seconds()}, done: make(chan struct{})}
	at := func() float64 { return round(time.Since(loadStart).Seconds(), 2) }
	go func() {
		defer close(o.done)
		stop := loadStart.Add((load - d) / 2)
		if !sleepUntil(ctx, stop) {
			return
		}
		o.res.StopAt = at()
		if err := s.Stop(); err != nil {
			o.res.Error = err.Error()
		}
		o.res.StoppedAt = at()
		if !sleepUntil(ctx, stop.Add(d)) {
			return
		}
		o.res.StartAt = at()
		if err := s.Start(); err != nil {
			o.res.Error = err.Error()
			return
		}
		o.res.BackAt = at()
	}()
	return o
}

// wait returns once the server is back (or failed to come back), which may be after the load
// ended if it was slow to start.
func (o *outage) wait() *outageResult {
	<-o.done
	return &o.res
}

// recovered sets how long after ClickHouse answered again the lag was first under 5 s.
func (o *outageResult) recovered(series []point) {
	if o.BackAt == 0 {
		return
	}
	for _, p := range series {
		if p.hasShip && p.T >= o.BackAt && p.ShipLag < 5 {
			d := round(p.T-o.BackAt, 2)
			o.LagUnder5 = &d
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
