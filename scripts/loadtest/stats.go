package loadtest

import (
	"math"
	"slices"
	"time"
)

// Summary describes a distribution of durations. Times are milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Percentile returns the q-th percentile (0 < q <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least q% of the
// samples are at or below it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Summarize sorts samples in place and summarises them.
func Summarize(samples []time.Duration) Summary {
	slices.Sort(samples)
	s := Summary{Count: len(samples)}
	if len(samples) == 0 {
		return s
	}
	s.P50 = ms(Percentile(samples, 50))
	s.P90 = ms(Percentile(samples, 90))
	s.P99 = ms(Percentile(samples, 99))
	s.Max = ms(samples[len(samples)-1])
	return s
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
