package flow

import (
	"flag"

	"github.com/retrigger/retrigger/shared/config"
)

// Flags are flow control's settings as the commands take them: each a
// flag, with its RETRIGGER_* variable.
type Flags struct {
	Breaker          string
	BreakerOverrides string
	RateLimits       string
	Keys             string
}

// Register binds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Breaker, "breaker", "on", "every type's circuit breaker: on (min-runs=20,failure-ratio=0.8,window=30s,probe=5s,max-probe=30s), off, or knob=value pairs, e.g. 'min-runs=10,failure-ratio=90%'")
	fs.StringVar(&f.BreakerOverrides, "breaker-overrides", "", "per-type breakers, e.g. 'partner:min-runs=5,window=1m;batch:off' (knobs as -breaker, those not named from it)")
	fs.StringVar(&f.RateLimits, "rate-limits", "", "how often runs of a type start, across all replicas, e.g. 'email=50/s;partner=5/s,burst=10' (per s, m or h; burst: how many may start at once, default 1)")
	fs.StringVar(&f.Keys, "keys", "", "runs per key of a type, across all replicas, e.g. 'customer=key:payload.customerId,concurrency:1;ledger=key:payload.account,ordered' (ordered: one at a time, in insertion order)")
}

// Config reads the flags into a Config; errors name the flag and its
// variable, and the part that is wrong. The types each setting names are
// checked against the replica's handlers by Config.Validate.
func (f Flags) Config() (Config, error) {
	var c Config
	var err error
	if c.Breaker, err = ParseBreaker(f.Breaker, defaultBreaker); err != nil {
		return c, config.Invalid("breaker", "%v", err)
	}
	if c.Breakers, err = ParseBreakerOverrides(f.BreakerOverrides, c.Breaker.withBase(defaultBreaker)); err != nil {
		return c, config.Invalid("breaker-overrides", "%v", err)
	}
	if c.Rates, err = ParseRates(f.RateLimits); err != nil {
		return c, config.Invalid("rate-limits", "%v", err)
	}
	if c.Keys, err = ParseKeys(f.Keys); err != nil {
		return c, config.Invalid("keys", "%v", err)
	}
	return c, nil
}
