package main

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"

	dto "github.com/prometheus/client_model/go"
)

type bucket struct {
	LE    float64 `json:"le"` // +Inf is encoded as -1 in JSON
	Count float64 `json:"count"`
}

func (b bucket) MarshalJSON() ([]byte, error) {
	le := b.LE
	if math.IsInf(le, 1) {
		le = -1
	}
	return json.Marshal(struct {
		LE    float64 `json:"le"`
		Count float64 `json:"count"`
	}{le, b.Count})
}

// addBuckets adds the cumulative buckets of h to bs, which may already hold those of other
// label sets, with the +Inf bucket (the sample count) last.
func addBuckets(bs []bucket, h *dto.Histogram) []bucket {
	add := func(le, n float64) {
		i, found := slices.BinarySearchFunc(bs, le, func(b bucket, le float64) int { return cmp.Compare(b.LE, le) })
		if found {
			bs[i].Count += n
		} else {
			bs = slices.Insert(bs, i, bucket{le, n})
		}
	}
	for _, b := range h.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) { // the text format lists +Inf, the protobuf one does not
			add(b.GetUpperBound(), float64(b.GetCumulativeCount())+b.GetCumulativeCountFloat())
		}
	}
	add(math.Inf(1), float64(h.GetSampleCount())+h.GetSampleCountFloat())
	return bs
}

// quantile estimates the q-quantile from cumulative buckets as Prometheus's histogram_quantile
// does (linear within a bucket). above reports that it fell in the +Inf bucket, in which case
// the value is the highest finite bound.
func quantile(q float64, bs []bucket) (v float64, above bool) {
	if len(bs) == 0 || bs[len(bs)-1].Count == 0 {
		return math.NaN(), false
	}
	total := bs[len(bs)-1].Count
	rank := q * total
	for i, b := range bs {
		if b.Count < rank {
			continue
		}
		if math.IsInf(b.LE, 1) {
			if i == 0 {
				return math.NaN(), true
			}
			return bs[i-1].LE, true
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bs[i-1].LE, bs[i-1].Count
		}
		if b.Count == below {
			return b.LE, false
		}
		return lower + (b.LE-lower)*(rank-below)/(b.Count-below), false
	}
	return math.NaN(), false
}

// maxBound returns the upper bound of the highest non-empty bucket: the largest observation is
// at most this. above reports that it is in the +Inf bucket (then the value is the last finite
// bound, which the largest observation exceeds).
func maxBound(bs []bucket) (v float64, above bool) {
	if len(bs) == 0 || bs[len(bs)-1].Count == 0 {
		return math.NaN(), false
	}
	total := bs[len(bs)-1].Count
	for i, b := range bs {
		if b.Count == total {
			if math.IsInf(b.LE, 1) {
				return bs[max(i-1, 0)].LE, true
			}
			return b.LE, false
		}
	}
	return math.NaN(), false
}
