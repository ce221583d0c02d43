package retry

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy is how an event type is retried.
type Policy struct {
	// InitialInterval is the delay after the first failure. Default 1s.
	InitialInterval time.Duration
	// Multiplier grows the delay after each further failure. Default 2.
	Multiplier float64
	// MaxInterval caps the delay. Default 5m.
	MaxInterval time.Duration
	// RandomizationFactor spreads each delay over
	// [d*(1-f), d*(1+f)] so retries of many events do not align. Default 0.2;
	// a negative value means none.
	RandomizationFactor float64
	// MaxAttempts is how many executions may fail before the event is moved
	// to the error state. An event's own maxAttempts overrides it. Default 5.
	MaxAttempts int
}

// DefaultPolicy is the policy when nothing is configured.
func DefaultPolicy() Policy {
	return Policy{
		InitialInterval:     time.Second,
		Multiplier:          2,
		MaxInterval:         5 * time.Minute,
		RandomizationFactor: 0.2,
		MaxAttempts:         5,
	}
}

// WithDefaults fills the zero fields from DefaultPolicy.
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy()
	if p.InitialInterval == 0 {
		p.InitialInterval = d.InitialInterval
	}
	if p.Multiplier == 0 {
		p.Multiplier = d.Multiplier
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = d.MaxInterval
	}
	if p.RandomizationFactor == 0 {
		p.RandomizationFactor = d.RandomizationFactor
	} else if p.RandomizationFactor < 0 {
		p.RandomizationFactor = 0
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	return p
}

// Validate reports the first knob that is out of range.
func (p Policy) Validate() error {
	switch {
	case p.InitialInterval <= 0:
		return fmt.Errorf("initial interval must be positive, got %s", p.InitialInterval)
	case p.Multiplier < 1:
		return fmt.Errorf("multiplier must be at least 1, got %g", p.Multiplier)
	case p.MaxInterval < p.InitialInterval:
		return fmt.Errorf("max interval %s is shorter than the initial interval %s", p.MaxInterval, p.InitialInterval)
	case p.RandomizationFactor < 0 || p.RandomizationFactor >= 1:
		return fmt.Errorf("randomization must be in [0, 1), got %g", p.RandomizationFactor)
	case p.MaxAttempts < 1:
		return fmt.Errorf("max attempts must be at least 1, got %d", p.MaxAttempts)
	}
	return nil
}

// Backoff returns the delay after the given number of failures (1 for the
// first), with jitter drawn from random, a source of floats in [0, 1).
// The same inputs give the same delay.
func (p Policy) Backoff(failures int, random func() float64) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		RandomizationFactor: 0, // jitter is applied below, from the injected source
		Clock:               backoff.SystemClock,
		Stop:                backoff.Stop,
	}
	b.Reset()
	d := p.InitialInterval
	for i := 0; i < failures; i++ {
		d = b.NextBackOff()
	}
	if p.RandomizationFactor == 0 || random == nil {
		return d
	}
	// The same interval as backoff's own randomisation, from our source.
	delta := p.RandomizationFactor * float64(d)
	lo, hi := float64(d)-delta, float64(d)+delta
	return time.Duration(lo + random()*(hi-lo))
}

// Decision is the outcome of a failed execution.
type Decision struct {
	Attempts  int       // failed executions including this one
	Retry     bool      // false: move to the error state
	NextAt    time.Time // when Retry: the due time of the next attempt
	Permanent bool      // the handler said not to retry
}

// Decide returns what to do after the attempts-th failure (counting this
// one) ended in err at now. maxAttempts overrides the policy when positive.
func (p Policy) Decide(attempts, maxAttempts int, err error, now time.Time, random func() float64) Decision {
	d := Decision{Attempts: attempts}
	if IsPermanent(err) {
		d.Permanent = true
		return d
	}
	limit := p.MaxAttempts
	if maxAttempts > 0 {
		limit = maxAttempts
	}
	if attempts >= limit {
		return d
	}
	delay, ok := RetryAfter(err)
	if !ok || delay < 0 {
		delay = p.Backoff(attempts, random)
	}
	d.Retry = true
	d.NextAt = now.Add(delay)
	return d
}

// Policies is the global default with per-type overrides.
type Policies struct {
	Default Policy
	ByType  map[string]Policy
}

// For returns the policy of an event type.
func (ps Policies) For(eventType string) Policy {
	if p, ok := ps.ByType[eventType]; ok {
		return p
	}
	return ps.Default
}

// Rand returns a jitter source for Backoff and Decide: math/rand/v2's global
// source, or a seeded one when seed is non-zero (tests).
func Rand(seed uint64) func() float64 {
	if seed == 0 {
		return rand.Float64
	}
	r := rand.New(rand.NewPCG(seed, seed))
	return r.Float64
}
