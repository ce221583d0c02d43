package consumer

import (
	"flag"

	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
)

// StoreTimeoutUsage is the help of -store-timeout, which the worker and the
// archiver share: its default follows -ack-wait.
const StoreTimeoutUsage = "longest storage call, shorter than -ack-wait (0 or unset: a third of -ack-wait, at most 10s; not negative)"

// RegisterFlags binds the worker's settings and its default retry policy to
// fs; the collections' are eventstore.Options.RegisterFlags. Every flag also
// reads its RETRIGGER_* variable. Per-type policies are read by the caller
// from -retry-overrides (see retry.ParseOverrides).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	p := &c.Policies.Default
	fs.IntVar(&c.Concurrency, "concurrency", DefaultConcurrency, "handlers running at once in this replica (at least 1)")
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", DefaultHandlerTimeout, "longest run of one handler (positive)")
	fs.DurationVar(&c.AckWait, "ack-wait", messaging.DefaultAckWait, "JetStream redelivery deadline and lease of a run; longer runs renew both every half of it (longer than 1s)")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", messaging.DefaultMaxAckPending, "messages out at once across all replicas, per event type (at least -concurrency)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long a stopping replica lets handlers finish (not negative)")
	fs.Int64Var(&c.MaxCrashes, "max-crashes", DefaultMaxCrashes, "runs of one event that may end without an outcome (crash, hang) before it is archived as crashed (at least 1)")
	fs.DurationVar(&c.NakWindow, "nak-window", DefaultNakWindow, "a message of an event due within this time is handed back for the rest; one due later waits for the scheduler (not negative)")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", 0, StoreTimeoutUsage)
	fs.StringVar(&c.Replica, "replica", "", "name of this replica in leases and histories (any text; empty: host name, process id and a random suffix)")
	fs.DurationVar(&p.InitialInterval, "retry-initial", retry.DefaultInitialInterval, "delay after the first failure (positive)")
	fs.Float64Var(&p.Multiplier, "retry-multiplier", retry.DefaultMultiplier, "growth of the delay after each further failure (a finite number, at least 1)")
	fs.DurationVar(&p.MaxInterval, "retry-max-interval", retry.DefaultMaxInterval, "longest delay between attempts (at least -retry-initial)")
	fs.Float64Var(&p.RandomizationFactor, "retry-randomization", retry.DefaultRandomizationFactor, "jitter: each delay is spread over ±this share (a finite number below 1; negative: none)")
	fs.Int64Var(&p.MaxAttempts, "retry-max-attempts", retry.DefaultMaxAttempts, "failed runs before an event goes to errors (at least 1; an event's maxAttempts overrides it)")
}
