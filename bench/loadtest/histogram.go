package main

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
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

func addBucket(bs []bucket, m sample) []bucket {
	le, err := strconv.ParseFloat(m.labels["le"], 64)
	if err != nil {
		return bs
	}
	for i := range bs {
		if bs[i].LE == le {
			bs[i].Count += m.value
			return bs
		}
	}
	bs = append(bs, bucket{le, m.value})
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.LE < b.LE:
			return -1
		case a.LE > b.LE:
			return 1
		}
		return 0
	})
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
