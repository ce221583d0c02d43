// Command producer relays changes of the events collection to JetStream,
// publishes failed events when they come due, and sweeps up what stalled.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/command"
)

func main() {
	var (
		cfg   producer.Config
		flags *command.Flags
	)
	os.Exit(command.Main("producer", os.Args[1:],
		func(fs *flag.FlagSet, f *command.Flags) { flags = f; cfg.RegisterFlags(fs) },
		func() error { cfg.Names, cfg.Store = flags.Names(), flags.Store; return cfg.Validate() },
		func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health = env.Log, env.Metrics, env.Health
			p, err := producer.New(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return p.Run(ctx)
		}))
}
