package handlers

import (
	"fmt"
	"strings"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
)

// SpecOptions are the settings of the handlers a spec builds.
type SpecOptions struct {
	HTTPTimeout time.Duration // timeout of one http handler request
	Demo        DemoConfig    // the demo handler's failure rate and latency
}

// ParseSpec builds handlers from a spec naming a handler per event type,
// ';'-separated: TYPE=http:URL or TYPE=demo, e.g.
// "email=http:https://mailer.internal/send;test=demo". A type named twice,
// an invalid type, an unknown handler and a bad URL are errors.
func ParseSpec(spec string, o SpecOptions) (map[string]consumer.Handler, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("is empty: name a handler per event type, e.g. 'email=http:https://mailer.internal/send'")
	}
	out := map[string]consumer.Handler{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, kind, ok := strings.Cut(part, "=")
		typ = strings.TrimSpace(typ)
		if !ok || typ == "" {
			return nil, fmt.Errorf("%q: want TYPE=http:URL or TYPE=demo", part)
		}
		if err := event.ValidateType(typ); err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		if _, dup := out[typ]; dup {
			return nil, fmt.Errorf("type %s is named twice", typ)
		}
		kind, arg, _ := strings.Cut(strings.TrimSpace(kind), ":")
		switch kind {
		case "demo":
			if err := o.Demo.Validate(); err != nil {
				return nil, fmt.Errorf("type %s: %w", typ, err)
			}
			out[typ] = Demo(o.Demo)
		case "http":
			h, err := HTTP(HTTPConfig{URL: arg, Timeout: o.HTTPTimeout})
			if err != nil {
				return nil, fmt.Errorf("type %s: %w", typ, err)
			}
			out[typ] = h
		default:
			return nil, fmt.Errorf("type %s: unknown handler %q (want http:URL or demo)", typ, kind)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("names no handler")
	}
	return out, nil
}
