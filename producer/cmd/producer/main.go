// Command producer relays changes of the events collection to JetStream.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/connect"
)

func main() {
	var (
		cfg   producer.Config
		flags *connect.Flags
	)
	os.Exit(connect.Main("producer", os.Args[1:],
		func(fs *flag.FlagSet, f *connect.Flags) { flags = f; cfg.RegisterFlags(fs) },
		func() error { cfg.Names = flags.Names(); return cfg.Validate() },
		func(ctx context.Context, env connect.Env) error {
			cfg.Logger = env.Log
			p, err := producer.New(cfg, env.DB, env.NATS)
			if err != nil {
				return err
			}
			return p.Run(ctx)
		}))
}
