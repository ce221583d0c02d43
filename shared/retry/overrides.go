package retry

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseOverrides reads per-type policies written as
//
//	type:knob=value,knob=value;type2:knob=value
//
// with the knobs initial, multiplier, max-interval, randomization and
// max-attempts, e.g. "email:max-attempts=10,initial=5s;partner:max-interval=1h".
// Knobs not named are taken from base.
func ParseOverrides(s string, base Policy) (map[string]Policy, error) {
	out := map[string]Policy{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, knobs, ok := strings.Cut(part, ":")
		typ = strings.TrimSpace(typ)
		if !ok || typ == "" {
			return nil, fmt.Errorf("%q: want type:knob=value[,knob=value]", part)
		}
		p := base
		for _, kv := range strings.Split(knobs, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return nil, fmt.Errorf("type %s: %q: want knob=value", typ, kv)
			}
			if err := p.set(k, v); err != nil {
				return nil, fmt.Errorf("type %s: %w", typ, err)
			}
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("type %s: %w", typ, err)
		}
		out[typ] = p
	}
	return out, nil
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
	case "max-attempts":
		p.MaxAttempts, err = strconv.Atoi(value)
	default:
		return fmt.Errorf("unknown knob %q (want initial, multiplier, max-interval, randomization or max-attempts)", knob)
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", knob, value, err)
	}
	return nil
}
