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
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/retry"
)

func main() { os.Exit(command.Main(newCommand())) }

// summary is the first line of -help.
const summary = "one replica running the built-in handlers (http, demo) on the events of the types named in -handlers, with retries. " +
	"Needs MongoDB and NATS with JetStream, and a producer publishing the events; run as many replicas as the load needs, and an archiver."

func newCommand() command.Command {
	var (
		cfg       consumer.Config
		spec      string
		overrides string
		flows     flow.Flags
		opts      handlers.SpecOptions
		flags     *command.Flags
	)
	return command.Command{
		Name:    "consumer",
		Summary: summary,
		Bind: func(fs *flag.FlagSet, f *command.Flags) {
			flags = f
			cfg.RegisterFlags(fs)
			fs.StringVar(&spec, "handlers", "", "handler of each event type, ';'-separated: TYPE=http:URL or TYPE=demo, e.g. 'email=http:https://mailer.internal/send;test=demo' (required; each type once, a valid event type; URL credentials are masked in messages)")
			flows.Register(fs)
			fs.StringVar(&overrides, "retry-overrides", "", "per-type retry policies, e.g. 'email:max-attempts=10,initial=5s;partner:max-interval=1h' (knobs: initial, multiplier, max-interval, randomization, max-attempts, with the -retry-* rules)")
			fs.DurationVar(&opts.HTTPTimeout, "http-timeout", 10*time.Second, "timeout of one http handler request (not negative; 0: 10s)")
			fs.Float64Var(&opts.Demo.FailureRate, "demo-failure-rate", 0.5, "share of demo handler runs that fail, 0 to 1")
			fs.DurationVar(&opts.Demo.Latency, "demo-latency", 20*time.Millisecond, "how long the demo handler works (not negative)")
		},
		Validate: func() error {
			cfg.Names, cfg.Store = flags.Names(), flags.Store
			if err := opts.Demo.Validate(); err != nil {
				flag := "demo-failure-rate"
				if opts.Demo.Latency < 0 {
					flag = "demo-latency"
				}
				return config.Invalid(flag, "%v", err)
			}
			if opts.HTTPTimeout < 0 {
				return config.Invalid("http-timeout", "must not be negative, got %s", opts.HTTPTimeout)
			}
			var err error
			if cfg.Handlers, err = handlers.ParseSpec(spec, opts); err != nil {
				return config.Invalid("handlers", "%v", err)
			}
			if cfg.Policies.ByType, err = retry.ParseOverrides(overrides, cfg.Policies.Default); err != nil {
				return config.Invalid("retry-overrides", "%v", err)
			}
			if cfg.Flow, err = flows.Config(); err != nil {
				return err
			}
			return cfg.Validate()
		},
		Part:         metrics.Consumer,
		DrainTimeout: func() time.Duration { return cfg.DrainTimeout },
		Start: func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health, cfg.Tracing = env.Log, env.Metrics, env.Health, env.Tracing
			w, err := consumer.NewWorker(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return w.Run(ctx)
		},
	}
}
