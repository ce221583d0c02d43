// Command archiver moves dead letters into the errors collection.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
)

func main() { os.Exit(command.Main(newCommand())) }

// summary is the first line of -help.
const summary = "moves dead letters (events whose retries are exhausted, or that cannot run) from the events collection into the errors collection, recording why. " +
	"Needs MongoDB and NATS with JetStream, and a producer publishing the dead letters; run one or more."

func newCommand() command.Command {
	var (
		cfg   consumer.ArchiverConfig
		flags *command.Flags
	)
	return command.Command{
		Name:    "archiver",
		Summary: summary,
		Bind: func(fs *flag.FlagSet, f *command.Flags) {
			flags = f
			fs.IntVar(&cfg.Concurrency, "concurrency", consumer.DefaultArchiverConcurrency, "dead letters archived at once (at least 1)")
			fs.DurationVar(&cfg.AckWait, "ack-wait", messaging.DefaultAckWait, "JetStream redelivery deadline (longer than 1s)")
			fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", consumer.DefaultArchiverDrainTimeout, "how long a stopping archiver lets work in flight finish (not negative)")
			fs.DurationVar(&cfg.StoreTimeout, "store-timeout", 0, consumer.StoreTimeoutUsage)
		},
		Validate:     func() error { cfg.Names, cfg.Store = flags.Names(), flags.Store; return cfg.Validate() },
		Part:         metrics.Archiver,
		DrainTimeout: func() time.Duration { return cfg.DrainTimeout },
		Start: func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health, cfg.Tracing = env.Log, env.Metrics, env.Health, env.Tracing
			a, err := consumer.NewArchiver(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
}
