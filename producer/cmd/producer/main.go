// Command producer relays changes of the events collection to JetStream,
// publishes failed events when they come due, and sweeps up what stalled.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/metrics"
)

func main() { os.Exit(command.Main(newCommand())) }

// summary is the first line of -help.
const summary = "publishes the events of MongoDB's events collection that need work to NATS JetStream (new ones as they change, failed ones when due) and sweeps up what stalled. " +
	"Needs a MongoDB replica set and NATS with JetStream; run one producer, beside consumer replicas (which run the handlers) and an archiver."

func newCommand() command.Command {
	var (
		cfg   producer.Config
		flags *command.Flags
	)
	return command.Command{
		Name:    "producer",
		Summary: summary,
		Bind:    func(fs *flag.FlagSet, f *command.Flags) { flags = f; cfg.RegisterFlags(fs) },
		Validate: func() error {
			cfg.Names, cfg.Store = flags.Names(), flags.Store
			if cfg.Streams.Replicas == 0 {
				// The library reads 0 as its default; on the command line
				// it is out of JetStream's range.
				return config.Invalid("stream-replicas", "must be 1 to 5 (JetStream's range; 3 in production), got 0")
			}
			return cfg.Validate()
		},
		Part:         metrics.Producer,
		DrainTimeout: func() time.Duration { return cfg.DrainTimeout },
		Start: func(ctx context.Context, env command.Env) error {
			cfg.Logger, cfg.Metrics, cfg.Health, cfg.Tracing = env.Log, env.Metrics, env.Health, env.Tracing
			p, err := producer.New(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return p.Run(ctx)
		},
	}
}
