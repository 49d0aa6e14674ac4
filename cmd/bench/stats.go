package main

import (
	"slices"
	"time"
)

// latencies collects per-operation durations of one run.
type latencies []time.Duration

// percentileMS is the p-th percentile (0 < p ≤ 100, nearest rank) in
// milliseconds; 0 without samples. It sorts l.
func (l latencies) percentileMS(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	rank := int(p/100*float64(len(l))+0.5) - 1
	rank = min(max(rank, 0), len(l)-1)
	return float64(l[rank]) / float64(time.Millisecond)
}

// summary is the median and range of one metric over the rounds.
type summary struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func summarize(xs []float64) *summary {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &summary{Median: m, Min: s[0], Max: s[len(s)-1], Samples: xs}
}

// rate is ops per second over d (0 for no time).
func rate(ops int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(ops) / d.Seconds()
}
