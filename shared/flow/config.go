package flow

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/retrigger/retrigger/shared/event"
)

// Defaults of the breaker, chosen for the outage they are meant to catch: a
// partner that fails every call for tens of seconds or more.
const (
	// DefaultMinRuns: fewer runs in the window say nothing (a quiet type
	// whose three runs failed is not an outage).
	DefaultMinRuns = 20
	// DefaultFailureRatio: 80% of the runs failing. Below it the type is
	// degraded, and retries with backoff serve it better than a stop.
	DefaultFailureRatio = 0.8
	// DefaultWindow: the runs of the last 30 s count; an outage shows
	// within it, a burst of failures an hour ago does not.
	DefaultWindow = 30 * time.Second
	// DefaultProbe: the first probe 5 s after a trip, then every interval
	// 1.5 times the last, up to DefaultMaxProbe: a partner back after an
	// outage of a minute is found within 15 s, one back after an hour
	// within 30 s, and a dead partner sees one call every 30 s.
	DefaultProbe       = 5 * time.Second
	DefaultProbeGrowth = 1.5
	DefaultMaxProbe    = 30 * time.Second
	// DefaultWave: after a probe succeeds the backlog is let out in waves,
	// 1 run at once across the replicas, doubling every 5 s; at 64 the
	// breaker closes (after 30 s).
	DefaultWave    = 5 * time.Second
	DefaultMaxWave = 64
	// DefaultRefresh is how often a replica reads the shared state.
	DefaultRefresh = time.Second
)

// Breaker are the rules of one type's breaker. Zero fields take the
// defaults (for a per-type breaker, those of Config.Breaker).
type Breaker struct {
	Off      bool          // no breaker for the type
	MinRuns  int           // runs in the window before it may trip; default 20
	Ratio    float64       // share of the runs failing that trips it; default 0.8
	Window   time.Duration // the window runs are counted in; default 30s
	Probe    time.Duration // first interval between probes; default 5s
	MaxProbe time.Duration // longest interval between probes; default 30s
}

func (b Breaker) withBase(base Breaker) Breaker {
	if b.MinRuns == 0 {
		b.MinRuns = base.MinRuns
	}
	if b.Ratio == 0 {
		b.Ratio = base.Ratio
	}
	if b.Window == 0 {
		b.Window = base.Window
	}
	if b.Probe == 0 {
		b.Probe = base.Probe
	}
	if b.MaxProbe == 0 {
		b.MaxProbe = base.MaxProbe
	}
	return b
}

var defaultBreaker = Breaker{MinRuns: DefaultMinRuns, Ratio: DefaultFailureRatio, Window: DefaultWindow, Probe: DefaultProbe, MaxProbe: DefaultMaxProbe}

func (b Breaker) validate() error {
	if b.Off {
		return nil
	}
	switch {
	case b.MinRuns < 1:
		return fmt.Errorf("min-runs must be at least 1, got %d", b.MinRuns)
	case math.IsNaN(b.Ratio) || b.Ratio <= 0 || b.Ratio > 1:
		return fmt.Errorf("failure-ratio must be above 0 and at most 1, got %v", b.Ratio)
	case b.Window < time.Second:
		return fmt.Errorf("window must be at least 1s, got %s", b.Window)
	case b.Probe < 100*time.Millisecond:
		return fmt.Errorf("probe must be at least 100ms, got %s", b.Probe)
	case b.MaxProbe < b.Probe:
		return fmt.Errorf("max-probe must be at least probe (%s), got %s", b.Probe, b.MaxProbe)
	}
	return nil
}

// String writes b in the syntax ParseBreaker reads.
func (b Breaker) String() string {
	if b.Off {
		return "off"
	}
	return fmt.Sprintf("min-runs=%d,failure-ratio=%g,window=%s,probe=%s,max-probe=%s", b.MinRuns, b.Ratio, b.Window, b.Probe, b.MaxProbe)
}

// Rate limits how often runs of a type start, across all replicas: at most
// PerSecond on average, with at most Burst starting at once.
type Rate struct {
	PerSecond float64
	Burst     int // default 1
}

// interval is the time one run takes of the rate; tolerance how far ahead
// of its turn a run may start (Burst-1 turns).
func (r Rate) interval() time.Duration  { return time.Duration(float64(time.Second) / r.PerSecond) }
func (r Rate) tolerance() time.Duration { return time.Duration(r.Burst-1) * r.interval() }

// String writes r as ParseRates reads it.
func (r Rate) String() string {
	s := strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
	if r.Burst > 1 {
		s += ",burst=" + strconv.Itoa(r.Burst)
	}
	return s
}

// Key limits the runs of a type per value of a field: at most Concurrency
// at once, or one at a time in insertion order when Ordered. An event
// without the field (or with null there) is a key of its own.
type Key struct {
	Path        string // a field path in the event document, e.g. payload.customerId
	Concurrency int    // at most this many at once per key (Ordered: 1)
	Ordered     bool
}

// String writes k as ParseKeys reads it.
func (k Key) String() string {
	if k.Ordered {
		return "key:" + k.Path + ",ordered"
	}
	return "key:" + k.Path + ",concurrency:" + strconv.Itoa(k.Concurrency)
}

// Config is flow control's configuration for one replica. The zero value
// is the default: a breaker on every type, no limits.
type Config struct {
	// Breaker is every type's breaker; Breakers overrides it per type,
	// their zero knobs taken from it.
	Breaker  Breaker
	Breakers map[string]Breaker
	// Rates limit how often runs of a type start, across all replicas.
	Rates map[string]Rate
	// Keys limit a type's runs per key, across all replicas.
	Keys map[string]Key
	// Refresh is how often a replica reads the shared state (breakers,
	// pauses). Default 1s.
	Refresh time.Duration
}

// WithDefaults returns c with its zero fields set.
func (c Config) WithDefaults() Config {
	c.Breaker = c.Breaker.withBase(defaultBreaker)
	if len(c.Breakers) > 0 {
		by := make(map[string]Breaker, len(c.Breakers))
		for t, b := range c.Breakers {
			by[t] = b.withBase(c.Breaker)
		}
		c.Breakers = by
	}
	if len(c.Rates) > 0 {
		rates := make(map[string]Rate, len(c.Rates))
		for t, r := range c.Rates {
			if r.Burst == 0 {
				r.Burst = 1
			}
			rates[t] = r
		}
		c.Rates = rates
	}
	if len(c.Keys) > 0 {
		keys := make(map[string]Key, len(c.Keys))
		for t, k := range c.Keys {
			if k.Ordered || k.Concurrency == 0 {
				k.Concurrency = 1
			}
			keys[t] = k
		}
		c.Keys = keys
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	return c
}

// breakerOf returns typ's breaker rules.
func (c Config) breakerOf(typ string) Breaker {
	if b, ok := c.Breakers[typ]; ok {
		return b
	}
	return c.Breaker
}

// Validate reports the first setting to fix, as an *Error naming the
// setting (Error.Setting: breaker, breaker-overrides, rate-limits, keys,
// refresh) and the part at fault. types are the event types the replica
// runs: a limit of any other type is an error (a typo would otherwise
// limit nothing).
func (c Config) Validate(types []string) error {
	c = c.WithDefaults()
	known := map[string]bool{}
	for _, t := range types {
		known[t] = true
	}
	unknown := func(setting, typ string) error {
		return &Error{Setting: setting, Part: typ, Reason: fmt.Sprintf("unknown type %q: this replica runs %s", typ, strings.Join(types, ", "))}
	}
	if err := c.Breaker.validate(); err != nil {
		return &Error{Setting: "breaker", Reason: err.Error()}
	}
	for _, t := range sortedKeys(c.Breakers) {
		if !known[t] {
			return unknown("breaker-overrides", t)
		}
		if err := c.Breakers[t].validate(); err != nil {
			return &Error{Setting: "breaker-overrides", Part: t, Reason: err.Error()}
		}
	}
	for _, t := range sortedKeys(c.Rates) {
		if !known[t] {
			return unknown("rate-limits", t)
		}
		if err := c.Rates[t].validate(); err != nil {
			return &Error{Setting: "rate-limits", Part: t, Reason: err.Error()}
		}
	}
	for _, t := range sortedKeys(c.Keys) {
		if !known[t] {
			return unknown("keys", t)
		}
		if err := c.Keys[t].validate(); err != nil {
			return &Error{Setting: "keys", Part: t, Reason: err.Error()}
		}
	}
	if c.Refresh < 10*time.Millisecond || c.Refresh > time.Minute {
		return &Error{Setting: "refresh", Reason: fmt.Sprintf("must be 10ms to 1m, got %s", c.Refresh)}
	}
	return nil
}

func (r Rate) validate() error {
	switch {
	case math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) || r.PerSecond <= 0:
		return fmt.Errorf("the rate must be positive, got %v/s", r.PerSecond)
	case r.PerSecond > 1e6:
		return fmt.Errorf("the rate must be at most 1000000/s, got %v/s", r.PerSecond)
	case r.Burst < 1:
		return fmt.Errorf("burst must be at least 1, got %d", r.Burst)
	case r.Burst > 1e6:
		return fmt.Errorf("burst must be at most 1000000, got %d", r.Burst)
	}
	return nil
}

func (k Key) validate() error {
	if err := ValidatePath(k.Path); err != nil {
		return err
	}
	if k.Concurrency < 1 || k.Concurrency > 1000 {
		return fmt.Errorf("concurrency must be 1 to 1000, got %d", k.Concurrency)
	}
	return nil
}

// ValidatePath checks that p is a field path of the event document:
// dot-separated names, none empty, none starting with '$', not inside
// retrigger's own bookkeeping field.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("the key path is empty: name a field, e.g. key:payload.customerId")
	}
	for _, part := range strings.Split(p, ".") {
		switch {
		case part == "":
			return fmt.Errorf("key path %q has an empty part", p)
		case strings.HasPrefix(part, "$"):
			return fmt.Errorf("key path %q: %q starts with '$', which MongoDB reserves for operators", p, part)
		case strings.ContainsAny(part, "\x00 \t\n"):
			return fmt.Errorf("key path %q: %q holds a space or a NUL", p, part)
		}
	}
	if p == event.FieldRetrigger || strings.HasPrefix(p, event.FieldRetrigger+".") {
		return fmt.Errorf("key path %q is inside %q, retrigger's own bookkeeping", p, event.FieldRetrigger)
	}
	return nil
}

// Error is a setting of flow control to fix.
type Error struct {
	Setting string // breaker, breaker-overrides, rate-limits, keys, refresh
	Part    string // the part of its value at fault (a type), if any
	Reason  string
}

func (e *Error) Error() string {
	if e.Part == "" {
		return e.Reason
	}
	return fmt.Sprintf("%q: %s", e.Part, e.Reason)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseBreaker reads a breaker written as "off", "on" (the defaults), or
// knob=value pairs, ','-separated, with the knobs min-runs, failure-ratio
// (a share like 0.8 or a percentage like 80%), window, probe and
// max-probe, e.g. "min-runs=10,failure-ratio=90%". Knobs not named take
// base's values.
func ParseBreaker(s string, base Breaker) (Breaker, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "off":
		return Breaker{Off: true}, nil
	case "", "on":
		base.Off = false
		return base, nil
	}
	b := base
	b.Off = false
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return b, fmt.Errorf("%q: want knob=value (knobs: min-runs, failure-ratio, window, probe, max-probe), or off", kv)
		}
		if seen[k] {
			return b, fmt.Errorf("knob %s is named twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "min-runs":
			b.MinRuns, err = strconv.Atoi(v)
		case "failure-ratio":
			if p, isPercent := strings.CutSuffix(v, "%"); isPercent {
				b.Ratio, err = strconv.ParseFloat(p, 64)
				b.Ratio /= 100
			} else {
				b.Ratio, err = strconv.ParseFloat(v, 64)
			}
		case "window":
			b.Window, err = time.ParseDuration(v)
		case "probe":
			b.Probe, err = time.ParseDuration(v)
		case "max-probe":
			b.MaxProbe, err = time.ParseDuration(v)
		default:
			return b, fmt.Errorf("unknown knob %q (want min-runs, failure-ratio, window, probe or max-probe)", k)
		}
		if err != nil {
			return b, fmt.Errorf("%s=%s: %w", k, v, err)
		}
	}
	return b, b.validate()
}

// ParseBreakerOverrides reads per-type breakers written as
// "type:knobs;type2:off", the knobs as in ParseBreaker, those not named
// taken from base.
func ParseBreakerOverrides(s string, base Breaker) (map[string]Breaker, error) {
	out := map[string]Breaker{}
	err := eachType(s, ":", "type:knob=value[,knob=value] or type:off", func(typ, spec string) error {
		b, err := ParseBreaker(spec, base)
		if err != nil {
			return err
		}
		out[typ] = b
		return nil
	}, func(typ string) bool { _, dup := out[typ]; return dup })
	return out, err
}

// ParseRates reads rate limits written as "type=RATE[,burst=N];...", a
// RATE being a positive number of runs per second, minute or hour:
// "50/s", "300/m", "1000/h" (also "/sec", "/min", "/hour"), e.g.
// "email=50/s;partner=5/s,burst=10".
func ParseRates(s string) (map[string]Rate, error) {
	out := map[string]Rate{}
	err := eachType(s, "=", "type=RATE[,burst=N] with RATE like 50/s, 300/m or 1000/h", func(typ, spec string) error {
		parts := strings.Split(spec, ",")
		r, err := parseRate(strings.TrimSpace(parts[0]))
		if err != nil {
			return err
		}
		r.Burst = 1
		for _, p := range parts[1:] {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || strings.TrimSpace(k) != "burst" {
				return fmt.Errorf("%q: want burst=N after the rate", p)
			}
			if r.Burst, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("burst=%s: %w", v, err)
			}
		}
		if err := r.validate(); err != nil {
			return err
		}
		out[typ] = r
		return nil
	}, func(typ string) bool { _, dup := out[typ]; return dup })
	return out, err
}

func parseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want a number per unit, like 50/s, 300/m or 1000/h", s)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return Rate{}, fmt.Errorf("rate %q: %q is not a number", s, num)
	}
	per := map[string]float64{"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[strings.TrimSpace(unit)]
	if per == 0 {
		return Rate{}, fmt.Errorf("rate %q: unknown unit %q (want s, m or h)", s, unit)
	}
	if n <= 0 {
		return Rate{}, fmt.Errorf("rate %q must be positive", s)
	}
	return Rate{PerSecond: n / per}, nil
}

// ParseKeys reads key limits written as
// "type=key:PATH,concurrency:N;type2=key:PATH,ordered", PATH a field path
// of the event document (payload.customerId), e.g.
// "customer=key:payload.customerId,concurrency:1". Without concurrency or
// ordered, a key runs one at a time, in any order.
func ParseKeys(s string) (map[string]Key, error) {
	out := map[string]Key{}
	err := eachType(s, "=", "type=key:PATH[,concurrency:N|,ordered]", func(typ, spec string) error {
		var k Key
		seen := map[string]bool{}
		for _, p := range strings.Split(spec, ",") {
			p = strings.TrimSpace(p)
			name, v, _ := strings.Cut(p, ":")
			name, v = strings.TrimSpace(name), strings.TrimSpace(v)
			if seen[name] {
				return fmt.Errorf("%s is named twice", name)
			}
			seen[name] = true
			switch name {
			case "key":
				k.Path = v
			case "concurrency":
				n, err := strconv.Atoi(v)
				if err != nil {
					return fmt.Errorf("concurrency:%s: want a whole number", v)
				}
				if n < 1 {
					return fmt.Errorf("concurrency must be at least 1, got %d", n)
				}
				k.Concurrency = n
			case "ordered":
				if v != "" {
					return fmt.Errorf("%q: ordered takes no value", p)
				}
				k.Ordered = true
			default:
				return fmt.Errorf("unknown part %q (want key:PATH, concurrency:N or ordered)", p)
			}
		}
		if !seen["key"] {
			return fmt.Errorf("%q names no key: want key:PATH, e.g. key:payload.customerId", spec)
		}
		if k.Ordered && k.Concurrency > 1 {
			return fmt.Errorf("ordered runs one at a time: drop concurrency:%d", k.Concurrency)
		}
		if k.Concurrency == 0 {
			k.Concurrency = 1
		}
		if err := k.validate(); err != nil {
			return err
		}
		out[typ] = k
		return nil
	}, func(typ string) bool { _, dup := out[typ]; return dup })
	return out, err
}

// eachType splits "type<sep>spec;..." and calls fn per type; a type named
// twice, an invalid type and an empty spec are errors.
func eachType(s, sep, want string, fn func(typ, spec string) error, dup func(string) bool) error {
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, spec, ok := strings.Cut(part, sep)
		typ, spec = strings.TrimSpace(typ), strings.TrimSpace(spec)
		if !ok || typ == "" || spec == "" {
			return fmt.Errorf("%q: want %s", part, want)
		}
		if err := event.ValidateType(typ); err != nil {
			return fmt.Errorf("%q: %w", part, err)
		}
		if dup(typ) {
			return fmt.Errorf("type %s is named twice", typ)
		}
		if err := fn(typ, spec); err != nil {
			return fmt.Errorf("type %s: %w", typ, err)
		}
	}
	return nil
}
