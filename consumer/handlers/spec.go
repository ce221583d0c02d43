package handlers

import (
	"fmt"
	"strings"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/redact"
)

// SpecOptions are the settings of the handlers a spec builds.
type SpecOptions struct {
	HTTPTimeout time.Duration // timeout of one http handler request
	Demo        DemoConfig    // the demo handler's failure rate and latency
}

// ParseSpec builds handlers from a spec naming a handler per event type,
// ';'-separated: TYPE=http:URL or TYPE=demo, e.g.
// "email=http:https://mailer.internal/send;test=demo". A type named twice,
// an invalid type, an unknown handler and a bad URL are errors. The errors
// never quote a URL's credentials (see shared/redact).
func ParseSpec(spec string, o SpecOptions) (map[string]consumer.Handler, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("is empty: name a handler per event type, e.g. 'email=http:https://mailer.internal/send'")
	}
	out := map[string]consumer.Handler{}
	for i, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, kind, ok := strings.Cut(part, "=")
		typ = strings.TrimSpace(typ)
		if !ok || typ == "" {
			return nil, fmt.Errorf("entry %d %q: want TYPE=http:URL or TYPE=demo", i+1, redact.URL(part))
		}
		if err := event.ValidateType(typ); err != nil {
			if strings.Contains(typ, "@") || strings.Contains(typ, "://") {
				// Not a type: a URL where the type should be.
				return nil, fmt.Errorf("entry %d: %q is not an event type: want TYPE=http:URL or TYPE=demo", i+1, redact.URL(typ))
			}
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if _, dup := out[typ]; dup {
			return nil, fmt.Errorf("type %s is named twice", typ)
		}
		handler := strings.TrimSpace(kind)
		kind, arg, _ := strings.Cut(handler, ":")
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
			if !plainWord(kind) || strings.ContainsAny(handler, "@?") {
				// Say nothing of it: it may be a URL, or a token.
				return nil, fmt.Errorf("type %s: unknown handler (want http:URL or demo)", typ)
			}
			return nil, fmt.Errorf("type %s: unknown handler %q (want http:URL or demo)", typ, kind)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("names no handler")
	}
	return out, nil
}

// plainWord reports whether s is a short word of letters and digits: safe
// to quote back.
func plainWord(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
