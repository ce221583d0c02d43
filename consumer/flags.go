package consumer

import (
	"flag"

	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
)

// RegisterFlags binds the worker's settings and its default retry policy to
// fs; the collections' are eventstore.Options.RegisterFlags. Every flag also
// reads its RETRIGGER_* variable. Per-type policies are read by the caller
// from -retry-overrides (see retry.ParseOverrides).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	p := &c.Policies.Default
	fs.IntVar(&c.Concurrency, "concurrency", DefaultConcurrency, "handlers running at once in this replica")
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", DefaultHandlerTimeout, "longest run of one handler")
	fs.DurationVar(&c.AckWait, "ack-wait", messaging.DefaultAckWait, "JetStream redelivery deadline and lease of a run; longer runs renew both every half of it")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", messaging.DefaultMaxAckPending, "messages out at once across all replicas, per event type")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long a stopping replica lets handlers finish")
	fs.Int64Var(&c.MaxCrashes, "max-crashes", DefaultMaxCrashes, "runs of one event that may end without an outcome (crash, hang) before it is archived as crashed")
	fs.DurationVar(&c.NakWindow, "nak-window", DefaultNakWindow, "a message of an event due within this time is handed back for the rest; one due later waits for the scheduler")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", DefaultStoreTimeout, "longest storage call (at most a third of -ack-wait)")
	fs.StringVar(&c.Replica, "replica", "", "name of this replica in leases and histories (default: host name, process id and a random suffix)")
	fs.DurationVar(&p.InitialInterval, "retry-initial", retry.DefaultInitialInterval, "delay after the first failure")
	fs.Float64Var(&p.Multiplier, "retry-multiplier", retry.DefaultMultiplier, "growth of the delay after each further failure")
	fs.DurationVar(&p.MaxInterval, "retry-max-interval", retry.DefaultMaxInterval, "longest delay between attempts")
	fs.Float64Var(&p.RandomizationFactor, "retry-randomization", retry.DefaultRandomizationFactor, "jitter: each delay is spread over ±this share (negative: none)")
	fs.Int64Var(&p.MaxAttempts, "retry-max-attempts", retry.DefaultMaxAttempts, "failed runs before an event goes to errors (an event's maxAttempts overrides it)")
}
