// Command consumer is one stateless replica running the built-in handlers
// (http, demo), chosen per event type by -handlers. Run as many as needed.
// To run handlers of your own, build a binary on consumer.Worker instead.
package main

import (
	"context"
	"flag"
	"os"
	"strings"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/consumer/handlers"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/connect"
	"github.com/retrigger/retrigger/shared/retry"
)

type settings struct {
	handlers, overrides string
	httpTimeout         time.Duration
	demo                handlers.DemoConfig
}

func main() {
	var (
		cfg   consumer.Config
		s     settings
		flags *connect.Flags
	)
	os.Exit(connect.Main("consumer", os.Args[1:],
		func(fs *flag.FlagSet, f *connect.Flags) {
			flags = f
			cfg.RegisterFlags(fs)
			fs.StringVar(&s.handlers, "handlers", "", "handler of each event type, ';'-separated: TYPE=http:URL or TYPE=demo, e.g. 'email=http:https://mailer.internal/send;test=demo' (required)")
			fs.StringVar(&s.overrides, "retry-overrides", "", "per-type retry policies, e.g. 'email:max-attempts=10,initial=5s;partner:max-interval=1h'")
			fs.DurationVar(&s.httpTimeout, "http-timeout", 10*time.Second, "timeout of one http handler request")
			fs.Float64Var(&s.demo.FailureRate, "demo-failure-rate", 0.5, "share of demo handler runs that fail, 0 to 1")
			fs.DurationVar(&s.demo.Latency, "demo-latency", 20*time.Millisecond, "how long the demo handler works")
		},
		func() error {
			cfg.Names = flags.Names()
			var err error
			if cfg.Handlers, err = s.build(); err != nil {
				return err
			}
			if cfg.Policies.ByType, err = retry.ParseOverrides(s.overrides, cfg.Policies.Default); err != nil {
				return config.Invalid("retry-overrides", "%v", err)
			}
			return cfg.Validate()
		},
		func(ctx context.Context, env connect.Env) error {
			cfg.Logger = env.Log
			w, err := consumer.NewWorker(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return w.Run(ctx)
		}))
}

// build reads -handlers into a handler per event type.
func (s settings) build() (map[string]consumer.Handler, error) {
	if strings.TrimSpace(s.handlers) == "" {
		return nil, config.Invalid("handlers", "is required: name a handler per event type, e.g. 'email=http:https://mailer.internal/send'")
	}
	if err := s.demo.Validate(); err != nil {
		return nil, config.Invalid("demo-failure-rate", "%v", err)
	}
	out := map[string]consumer.Handler{}
	for _, spec := range strings.Split(s.handlers, ";") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		typ, kind, ok := strings.Cut(spec, "=")
		if !ok || typ == "" {
			return nil, config.Invalid("handlers", "%q: want TYPE=http:URL or TYPE=demo", spec)
		}
		kind, arg, _ := strings.Cut(kind, ":")
		switch kind {
		case "demo":
			out[typ] = handlers.Demo(s.demo)
		case "http":
			h, err := handlers.HTTP(handlers.HTTPConfig{URL: arg, Timeout: s.httpTimeout})
			if err != nil {
				return nil, config.Invalid("handlers", "type %s: %v", typ, err)
			}
			out[typ] = h
		default:
			return nil, config.Invalid("handlers", "type %s: unknown handler %q (want http or demo)", typ, kind)
		}
	}
	if len(out) == 0 {
		return nil, config.Invalid("handlers", "names no handler")
	}
	return out, nil
}
