package handlers

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/retry"
)

func TestDemoOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     DemoConfig
		runs    int
		wantErr string // "" for success on every run
	}{
		{name: "rate 0 never fails", cfg: DemoConfig{FailureRate: 0}, runs: 1000},
		{name: "rate 1 always fails", cfg: DemoConfig{FailureRate: 1}, runs: 1000,
			wantErr: "demo: simulated failure (failure rate 100%)"},
		{name: "rate 0 with the smallest draw", cfg: DemoConfig{FailureRate: 0, Rand: fixed(0)}, runs: 1},
		{name: "rate 1 with the largest draw", cfg: DemoConfig{FailureRate: 1, Rand: fixed(0.999999)}, runs: 1,
			wantErr: "demo: simulated failure (failure rate 100%)"},
		{name: "draw below the rate fails", cfg: DemoConfig{FailureRate: 0.5, Rand: fixed(0.49)}, runs: 3,
			wantErr: "demo: simulated failure (failure rate 50%)"},
		{name: "draw at the rate succeeds", cfg: DemoConfig{FailureRate: 0.5, Rand: fixed(0.5)}, runs: 3},
		{name: "draw above the rate succeeds", cfg: DemoConfig{FailureRate: 0.25, Rand: fixed(0.9)}, runs: 3},
		{name: "fractional percent", cfg: DemoConfig{FailureRate: 0.333, Rand: fixed(0.1)}, runs: 1,
			wantErr: "demo: simulated failure (failure rate 33.3%)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := Demo(tt.cfg)
			for range tt.runs {
				err := h(t.Context(), testEvent(t))
				if tt.wantErr == "" {
					require.NoError(t, err)
					continue
				}
				require.EqualError(t, err, tt.wantErr)
				require.False(t, retry.IsPermanent(err), "a simulated failure is retryable")
				_, ok := retry.RetryAfter(err)
				require.False(t, ok, "a simulated failure uses the backoff")
			}
		})
	}
}

func TestDemoLatencyHonoursContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		latency time.Duration
	}{
		{name: "long latency", latency: time.Hour},
		{name: "no latency", latency: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Rate 0: only the context can make it fail.
			h := Demo(DemoConfig{Latency: tt.latency})
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			require.ErrorIs(t, h(ctx, testEvent(t)), context.Canceled)
		})
	}
}

func TestDemoLatencyWaits(t *testing.T) {
	t.Parallel()
	const latency = 20 * time.Millisecond
	h := Demo(DemoConfig{Latency: latency})
	start := time.Now()
	require.NoError(t, h(t.Context(), testEvent(t)))
	require.GreaterOrEqual(t, time.Since(start), latency)
}

func TestDemoConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     DemoConfig
		wantErr string
	}{
		{name: "zero value", cfg: DemoConfig{}},
		{name: "bounds", cfg: DemoConfig{FailureRate: 1, Latency: time.Second}},
		{name: "negative rate", cfg: DemoConfig{FailureRate: -0.1}, wantErr: "FailureRate must be in [0, 1], got -0.1"},
		{name: "rate above 1", cfg: DemoConfig{FailureRate: 1.5}, wantErr: "FailureRate must be in [0, 1], got 1.5"},
		{name: "rate NaN", cfg: DemoConfig{FailureRate: math.NaN()}, wantErr: "FailureRate must be in [0, 1], got NaN"},
		{name: "negative latency", cfg: DemoConfig{Latency: -time.Second}, wantErr: "Latency must not be negative, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NotPanics(t, func() { Demo(tt.cfg) })
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.PanicsWithError(t, err.Error(), func() { Demo(tt.cfg) })
		})
	}
}

func fixed(v float64) func() float64 { return func() float64 { return v } }

// The example project's function succeeds on even draws only.
func TestEvenNumber(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 10; n++ {
		err := EvenNumber(0, func() int { return n })(t.Context(), &consumer.Event{})
		if n%2 == 0 {
			require.NoError(t, err, n)
		} else {
			require.ErrorContains(t, err, fmt.Sprintf("drew %d, an odd number", n))
		}
	}
	// The default draw stays within 1 to 10, and both outcomes occur.
	h := EvenNumber(0, nil)
	var ok, failed int
	for range 200 {
		if h(t.Context(), &consumer.Event{}) == nil {
			ok++
		} else {
			failed++
		}
	}
	require.Positive(t, ok)
	require.Positive(t, failed)
}
