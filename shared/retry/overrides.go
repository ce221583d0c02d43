package retry

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
)

// ParseOverrides reads per-type policies written as
//
//	type:knob=value,knob=value;type2:knob=value
//
// with the knobs initial, multiplier, max-interval, randomization and
// max-attempts, e.g. "email:max-attempts=10,initial=5s;partner:max-interval=1h".
// Knobs not named are taken from base. A type named twice, a knob named
// twice for one type, an unknown knob and a value out of range are errors.
func ParseOverrides(s string, base Policy) (map[string]Policy, error) {
	out := map[string]Policy{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, knobs, ok := strings.Cut(part, ":")
		typ = strings.TrimSpace(typ)
		if !ok || typ == "" || strings.TrimSpace(knobs) == "" {
			return nil, fmt.Errorf("%q: want type:knob=value[,knob=value]", part)
		}
		if err := event.ValidateType(typ); err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		if _, dup := out[typ]; dup {
			return nil, fmt.Errorf("type %s is named twice", typ)
		}
		p := base
		seen := map[string]bool{}
		for _, kv := range strings.Split(knobs, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" || v == "" {
				return nil, fmt.Errorf("type %s: %q: want knob=value", typ, kv)
			}
			if seen[k] {
				return nil, fmt.Errorf("type %s: knob %s is named twice", typ, k)
			}
			seen[k] = true
			if err := p.set(k, v); err != nil {
				return nil, fmt.Errorf("type %s: %w", typ, err)
			}
		}
		if err := p.validate("type "+typ, func(knob string) string { return knob }); err != nil {
			return nil, fmt.Errorf("type %s: %s", typ, reason(err))
		}
		out[typ] = p
	}
	return out, nil
}

// reason is the knob and reason of a validation error.
func reason(err error) string {
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return fe.Flag + " " + fe.Reason
	}
	return err.Error()
}

func (p *Policy) set(knob, value string) error {
	var err error
	switch knob {
	case "initial":
		p.InitialInterval, err = time.ParseDuration(value)
	case "multiplier":
		p.Multiplier, err = strconv.ParseFloat(value, 64)
	case "max-interval":
		p.MaxInterval, err = time.ParseDuration(value)
	case "randomization":
		p.RandomizationFactor, err = strconv.ParseFloat(value, 64)
		if err == nil && p.RandomizationFactor < 0 && !math.IsInf(p.RandomizationFactor, -1) {
			p.RandomizationFactor = 0 // negative: no jitter, as for the default policy
		}
	case "max-attempts":
		p.MaxAttempts, err = strconv.ParseInt(value, 10, 64)
	default:
		return fmt.Errorf("unknown knob %q (want initial, multiplier, max-interval, randomization or max-attempts)", knob)
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", knob, value, err)
	}
	if f, ok := floatKnob(p, knob); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return fmt.Errorf("%s=%s: must be a finite number", knob, value)
	}
	return nil
}

// floatKnob returns the value of a float knob as set.
func floatKnob(p *Policy, knob string) (float64, bool) {
	switch knob {
	case "multiplier":
		return p.Multiplier, true
	case "randomization":
		return p.RandomizationFactor, true
	}
	return 0, false
}
