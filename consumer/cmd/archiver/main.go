// Command archiver moves dead letters into the errors collection.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/messaging"
)

func main() {
	var (
		cfg   consumer.ArchiverConfig
		flags *command.Flags
	)
	os.Exit(command.Main("archiver", os.Args[1:],
		func(fs *flag.FlagSet, f *command.Flags) {
			flags = f
			fs.IntVar(&cfg.Concurrency, "concurrency", consumer.DefaultArchiverConcurrency, "dead letters archived at once")
			fs.DurationVar(&cfg.AckWait, "ack-wait", messaging.DefaultAckWait, "JetStream redelivery deadline")
			fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", consumer.DefaultArchiverDrainTimeout, "how long a stopping archiver lets work in flight finish")
			fs.DurationVar(&cfg.StoreTimeout, "store-timeout", consumer.DefaultStoreTimeout, "longest storage call (at most a third of -ack-wait)")
		},
		func() error { cfg.Names, cfg.Store = flags.Names(), flags.Store; return cfg.Validate() },
		func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health = env.Log, env.Metrics, env.Health
			a, err := consumer.NewArchiver(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		}))
}
