package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/retrigger/retrigger/consumer"
)

// DemoConfig configures the Demo handler.
type DemoConfig struct {
	// FailureRate is the probability, in [0, 1], that a run fails. Default 0.
	FailureRate float64
	// Latency is how long each run takes before it succeeds or fails.
	// Default 0.
	Latency time.Duration
	// Rand returns a number in [0, 1); a run fails when it is below
	// FailureRate. It need not be safe for concurrent use. Default
	// math/rand/v2's Float64.
	Rand func() float64
}

// Validate reports the first field of c that is out of range.
func (c DemoConfig) Validate() error {
	switch {
	case math.IsNaN(c.FailureRate) || c.FailureRate < 0 || c.FailureRate > 1:
		return fmt.Errorf("demo handler: FailureRate must be in [0, 1], got %g", c.FailureRate)
	case c.Latency < 0:
		return fmt.Errorf("demo handler: Latency must not be negative, got %s", c.Latency)
	}
	return nil
}

// Demo returns a handler that stands in for real work: it waits cfg.Latency,
// then fails with probability cfg.FailureRate, with a message that says the
// failure is simulated. Its failures are retryable. It returns ctx.Err() if
// ctx ends while it waits. Demo panics if cfg is invalid: call cfg.Validate
// first to get an error instead.
func Demo(cfg DemoConfig) consumer.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	random := rand.Float64
	if cfg.Rand != nil {
		// Handlers run concurrently; an injected source (a seeded
		// *rand.Rand) usually is not safe for that.
		var mu sync.Mutex
		random = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return cfg.Rand()
		}
	}
	// Percent with at most two decimals: 0.333 -> "33.3".
	percent := strconv.FormatFloat(math.Round(cfg.FailureRate*1e4)/100, 'f', -1, 64)
	errSimulated := errors.New("demo: simulated failure (failure rate " + percent + "%)")

	return func(ctx context.Context, _ *consumer.Event) error {
		if err := sleep(ctx, cfg.Latency); err != nil {
			return err
		}
		if random() < cfg.FailureRate {
			return errSimulated
		}
		return nil
	}
}

// sleep waits d, or until ctx ends, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EvenNumber is the demo function of the hand-built trigger mechanism's
// example project: it waits latency, draws an integer from 1 to 10 and
// succeeds when it is even, so half of the runs fail. draw returns that
// integer; nil draws from math/rand/v2. It must be safe for concurrent use.
func EvenNumber(latency time.Duration, draw func() int) consumer.Handler {
	if draw == nil {
		draw = func() int { return rand.IntN(10) + 1 }
	}
	return func(ctx context.Context, _ *consumer.Event) error {
		if err := sleep(ctx, latency); err != nil {
			return err
		}
		if n := draw(); n%2 != 0 {
			return fmt.Errorf("demo: drew %d, an odd number", n)
		}
		return nil
	}
}
