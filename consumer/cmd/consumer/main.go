// Command consumer is one stateless replica running the built-in handlers
// (http, demo), chosen per event type by -handlers. Run as many as needed.
// To run handlers of your own, build a binary on consumer.Worker instead.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/consumer/handlers"
	"github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/retry"
)

func main() {
	var (
		cfg       consumer.Config
		spec      string
		overrides string
		opts      handlers.SpecOptions
		flags     *command.Flags
	)
	os.Exit(command.Main("consumer", os.Args[1:],
		func(fs *flag.FlagSet, f *command.Flags) {
			flags = f
			cfg.RegisterFlags(fs)
			fs.StringVar(&spec, "handlers", "", "handler of each event type, ';'-separated: TYPE=http:URL or TYPE=demo, e.g. 'email=http:https://mailer.internal/send;test=demo' (required)")
			fs.StringVar(&overrides, "retry-overrides", "", "per-type retry policies, e.g. 'email:max-attempts=10,initial=5s;partner:max-interval=1h'")
			fs.DurationVar(&opts.HTTPTimeout, "http-timeout", 10*time.Second, "timeout of one http handler request")
			fs.Float64Var(&opts.Demo.FailureRate, "demo-failure-rate", 0.5, "share of demo handler runs that fail, 0 to 1")
			fs.DurationVar(&opts.Demo.Latency, "demo-latency", 20*time.Millisecond, "how long the demo handler works")
		},
		func() error {
			cfg.Names, cfg.Store = flags.Names(), flags.Store
			if err := opts.Demo.Validate(); err != nil {
				return config.Invalid("demo-failure-rate", "%v", err)
			}
			var err error
			if cfg.Handlers, err = handlers.ParseSpec(spec, opts); err != nil {
				return config.Invalid("handlers", "%v", err)
			}
			if cfg.Policies.ByType, err = retry.ParseOverrides(overrides, cfg.Policies.Default); err != nil {
				return config.Invalid("retry-overrides", "%v", err)
			}
			return cfg.Validate()
		},
		func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health = env.Log, env.Metrics, env.Health
			w, err := consumer.NewWorker(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return w.Run(ctx)
		}))
}
