package retry

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/retrigger/retrigger/shared/config"
)

// Defaults of a Policy, the values its zero fields take.
//
// They keep an event through an outage of its partner of about an hour and
// a half, even with the breaker off: the delays double from 1s to the
// 10-minute cap (1 + 2 + ... + 512 s, then 600 s each), so the 20th
// attempt comes 6,423 s (about 1 h 47 min) after the first failure, and at
// the jitter's earliest 5,138 s (1 h 26 min). The old defaults (5
// attempts, 5m cap) gave up within half a minute.
const (
	DefaultInitialInterval     = time.Second
	DefaultMultiplier          = 2.0
	DefaultMaxInterval         = 10 * time.Minute
	DefaultRandomizationFactor = 0.2
	DefaultMaxAttempts         = 20
)

// Policy is how an event type is retried.
type Policy struct {
	// InitialInterval is the delay after the first failure. Default 1s.
	InitialInterval time.Duration
	// Multiplier grows the delay after each further failure. Default 2.
	Multiplier float64
	// MaxInterval caps the delay. Default 10m.
	MaxInterval time.Duration
	// RandomizationFactor spreads each delay over
	// [d*(1-f), d*(1+f)] so retries of many events do not align. Default 0.2;
	// a negative value means none.
	RandomizationFactor float64
	// MaxAttempts is how many executions may fail before the event is moved
	// to the error state. An event's own maxAttempts overrides it. Default 20.
	MaxAttempts int64
}

// DefaultPolicy is the policy when nothing is configured.
func DefaultPolicy() Policy {
	return Policy{
		InitialInterval:     DefaultInitialInterval,
		Multiplier:          DefaultMultiplier,
		MaxInterval:         DefaultMaxInterval,
		RandomizationFactor: DefaultRandomizationFactor,
		MaxAttempts:         DefaultMaxAttempts,
	}
}

// WithDefaults fills the zero fields from DefaultPolicy.
func (p Policy) WithDefaults() Policy { return p.withBase(DefaultPolicy()) }

// withBase fills the zero fields of p from base; a negative randomization
// means none.
func (p Policy) withBase(base Policy) Policy {
	if p.InitialInterval == 0 {
		p.InitialInterval = base.InitialInterval
	}
	if p.Multiplier == 0 {
		p.Multiplier = base.Multiplier
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = base.MaxInterval
	}
	if p.RandomizationFactor == 0 {
		p.RandomizationFactor = base.RandomizationFactor
	}
	if p.RandomizationFactor < 0 && !math.IsInf(p.RandomizationFactor, -1) {
		p.RandomizationFactor = 0 // -Inf is no number: validate rejects it
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = base.MaxAttempts
	}
	return p
}

// Validate reports the first knob that is out of range.
func (p Policy) Validate() error { return p.validate("Policy", defaultFlag) }

// defaultFlag is the flag of a knob of the default policy.
func defaultFlag(knob string) string { return "retry-" + knob }

// validate names the Go fields under prefix and the flags with flag.
func (p Policy) validate(prefix string, flag func(knob string) string) error {
	f := func(field, knob, format string, args ...any) error {
		return config.Field(prefix+"."+field, flag(knob), format, args...)
	}
	switch {
	case p.InitialInterval <= 0:
		return f("InitialInterval", "initial", "must be positive, got %s", p.InitialInterval)
	case math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) || p.Multiplier < 1:
		return f("Multiplier", "multiplier", "must be a number of at least 1, got %g", p.Multiplier)
	case p.MaxInterval < p.InitialInterval:
		return f("MaxInterval", "max-interval", "%s is shorter than the initial interval %s", p.MaxInterval, p.InitialInterval)
	case math.IsNaN(p.RandomizationFactor) || math.IsInf(p.RandomizationFactor, 0) || p.RandomizationFactor < 0 || p.RandomizationFactor >= 1:
		return f("RandomizationFactor", "randomization", "must be a number in [0, 1) (negative: none), got %g", p.RandomizationFactor)
	case p.MaxAttempts < 1:
		return f("MaxAttempts", "max-attempts", "must be at least 1, got %d", p.MaxAttempts)
	}
	return nil
}

// Backoff returns the delay after the given number of failures (1 for the
// first): InitialInterval × Multiplier^(failures-1), capped at MaxInterval,
// the sequence of github.com/cenkalti/backoff/v4's ExponentialBackOff,
// computed in constant time for any count. Jitter is drawn from random, a
// source of floats in [0, 1), with backoff's formula; nil means none. The
// same inputs give the same delay.
func (p Policy) Backoff(failures int64, random func() float64) time.Duration {
	d := float64(p.InitialInterval)
	if failures > 1 && p.Multiplier > 1 {
		// d·m^(n-1) reaches the cap once n-1 ≥ log(max/d)/log(m); beyond
		// that the power would only overflow.
		steps := float64(failures - 1)
		if limit := math.Log(float64(p.MaxInterval)/d) / math.Log(p.Multiplier); steps > limit {
			d = float64(p.MaxInterval)
		} else {
			d *= math.Pow(p.Multiplier, steps)
		}
	}
	d = min(d, float64(p.MaxInterval))
	if p.RandomizationFactor > 0 && random != nil {
		delta := p.RandomizationFactor * d
		d = d - delta + random()*2*delta
	}
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}

// Decision is the outcome of a failed execution.
type Decision struct {
	Attempts  int64     // failed executions including this one
	Retry     bool      // false: move to the error state
	NextAt    time.Time // when Retry: the due time of the next attempt
	Permanent bool      // the handler said not to retry
}

// Decide returns what to do after the attempts-th failure (counting this
// one) ended in err at now. maxAttempts overrides the policy when positive.
func (p Policy) Decide(attempts, maxAttempts int64, err error, now time.Time, random func() float64) Decision {
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

// WithDefaults fills the zero fields of Default from DefaultPolicy, and
// the zero fields of each ByType entry from that Default: an entry that
// sets only MaxAttempts keeps the default's intervals.
func (ps Policies) WithDefaults() Policies {
	out := Policies{Default: ps.Default.WithDefaults()}
	if len(ps.ByType) > 0 {
		out.ByType = make(map[string]Policy, len(ps.ByType))
		for typ, p := range ps.ByType {
			out.ByType[typ] = p.withBase(out.Default)
		}
	}
	return out
}

// Validate reports the first policy to fix; prefix names the Policies in
// the caller's Go terms (e.g. "consumer.Config.Policies"). A per-type
// policy's flag is -retry-overrides.
func (ps Policies) Validate(prefix string) error {
	if err := ps.Default.validate(prefix+".Default", defaultFlag); err != nil {
		return err
	}
	types := make([]string, 0, len(ps.ByType))
	for typ := range ps.ByType {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		overrides := func(string) string { return "retry-overrides" }
		if err := ps.ByType[typ].validate(fmt.Sprintf("%s.ByType[%q]", prefix, typ), overrides); err != nil {
			var fe *config.FieldError
			if errors.As(err, &fe) {
				fe.Reason = "type " + typ + ": " + fe.Reason
			}
			return err
		}
	}
	return nil
}

// For returns the policy of an event type.
func (ps Policies) For(eventType string) Policy {
	if p, ok := ps.ByType[eventType]; ok {
		return p
	}
	return ps.Default
}

// Rand returns a jitter source for Backoff and Decide: math/rand/v2's global
// source, or a seeded one when seed is non-zero (tests). A seeded source is
// not safe for concurrent use.
func Rand(seed uint64) func() float64 {
	if seed == 0 {
		return rand.Float64
	}
	r := rand.New(rand.NewPCG(seed, seed))
	return r.Float64
}
