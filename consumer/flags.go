package consumer

import (
	"flag"
	"time"

	"github.com/retrigger/retrigger/shared/retry"
)

// RegisterFlags binds the worker's settings and its default retry policy to
// fs. Every flag also reads its RETRIGGER_* variable. Per-type policies are
// read by the caller from -retry-overrides (see retry.ParseOverrides).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := retry.DefaultPolicy()
	p := &c.Policies.Default
	fs.StringVar(&c.Events, "events-collection", "events", "collection of event documents")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "handlers running at once in this replica")
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", 20*time.Second, "longest run of one handler")
	fs.DurationVar(&c.AckWait, "ack-wait", 30*time.Second, "JetStream redelivery deadline; longer handlers send progress acks")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", 1000, "messages out at once across all replicas")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 25*time.Second, "how long a stopping replica lets handlers finish")
	fs.DurationVar(&p.InitialInterval, "retry-initial", d.InitialInterval, "delay after the first failure")
	fs.Float64Var(&p.Multiplier, "retry-multiplier", d.Multiplier, "growth of the delay after each further failure")
	fs.DurationVar(&p.MaxInterval, "retry-max-interval", d.MaxInterval, "longest delay between attempts")
	fs.Float64Var(&p.RandomizationFactor, "retry-randomization", d.RandomizationFactor, "jitter: each delay is spread over ±this share (negative: none)")
	fs.IntVar(&p.MaxAttempts, "retry-max-attempts", d.MaxAttempts, "failed runs before an event goes to errors (an event's maxAttempts overrides it)")
}
