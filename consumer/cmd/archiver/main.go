// Command archiver moves dead letters into the errors collection.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/connect"
)

func main() {
	var (
		cfg   consumer.ArchiverConfig
		flags *connect.Flags
	)
	os.Exit(connect.Main("archiver", os.Args[1:],
		func(fs *flag.FlagSet, f *connect.Flags) {
			flags = f
			fs.StringVar(&cfg.Events, "events-collection", "events", "collection of event documents")
			fs.StringVar(&cfg.Errors, "errors-collection", "errors", "collection of archived events")
			fs.IntVar(&cfg.Concurrency, "concurrency", 4, "dead letters archived at once")
			fs.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "JetStream redelivery deadline")
			fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "how long a stopping archiver lets work in flight finish")
		},
		func() error { cfg.Names = flags.Names(); return cfg.Validate() },
		func(ctx context.Context, env connect.Env) error {
			cfg.Logger = env.Log
			a, err := consumer.NewArchiver(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		}))
}
