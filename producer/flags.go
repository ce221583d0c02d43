package producer

import (
	"flag"

	"github.com/retrigger/retrigger/shared/messaging"
)

// RegisterFlags binds the producer's own settings to fs; the collections'
// are eventstore.Options.RegisterFlags. Every flag also reads its
// RETRIGGER_* variable (see shared/config).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.DisableChangeStreams, "disable-change-streams", false, "let the sweeper alone publish new events (servers without change streams)")
	fs.IntVar(&c.Relay.MaxInFlight, "max-in-flight", DefaultMaxInFlight, "publishes awaiting JetStream's ack at once")
	fs.DurationVar(&c.Relay.CheckpointInterval, "checkpoint-interval", DefaultCheckpointInterval, "how often the resume token is saved")
	fs.IntVar(&c.Scheduler.Batch, "schedule-batch", DefaultSchedulerBatch, "page size of the scheduler's queries of due events")
	fs.DurationVar(&c.Sweeper.Interval, "sweep-interval", 0, "time between sweeps (default 10s, 2s without change streams)")
	fs.DurationVar(&c.Sweeper.Stall, "sweep-stall", 0, "republish events that made no progress for this long (default: the duplicate window; 0 without change streams)")
	fs.IntVar(&c.Sweeper.Batch, "sweep-batch", DefaultSweepBatch, "page size of a sweep query")
	fs.DurationVar(&c.Sweeper.LeaseGrace, "lease-grace", DefaultLeaseGrace, "how long past its end a consumer's lease is left to it (clock differences) before its run counts as never finished")
	fs.DurationVar(&c.Retention.After, "retention", 0, "delete succeeded events this long after success (0 keeps them)")
	fs.DurationVar(&c.Retention.Interval, "retention-interval", DefaultRetentionInterval, "time between deletions of succeeded events")
	fs.IntVar(&c.Retention.Batch, "retention-batch", DefaultRetentionBatch, "most succeeded events deleted at once")
	fs.IntVar(&c.MaxEventSize, "max-event-size", 0, "largest event document in bytes; larger ones go to errors (0: no bound)")
	fs.DurationVar(&c.Leader.TTL, "leader-ttl", DefaultLeaderTTL, "how long the active producer's leadership holds without renewal: a standby producer takes over after it")
	fs.StringVar(&c.Leader.Owner, "leader-name", "", "name of this producer in the leadership document (default: host name, process id and a random suffix)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long a stopping producer waits for publishes in flight")
	fs.DurationVar(&c.Streams.DuplicateWindow, "duplicate-window", messaging.DefaultDuplicateWindow, "JetStream duplicate window of both streams")
	fs.DurationVar(&c.Streams.DLQMaxAge, "dlq-max-age", messaging.DefaultDLQMaxAge, "how long dead letters stay in the DLQ stream for inspection")
	fs.IntVar(&c.Streams.Replicas, "stream-replicas", messaging.DefaultReplicas, "JetStream replicas of both streams, 1 to 5 (use 3 in production)")
}
