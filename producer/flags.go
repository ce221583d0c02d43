package producer

import (
	"flag"

	"github.com/retrigger/retrigger/shared/messaging"
)

// RegisterFlags binds the producer's own settings to fs; the collections'
// are eventstore.Options.RegisterFlags. Every flag also reads its
// RETRIGGER_* variable (see shared/config).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.DisableChangeStreams, "disable-change-streams", false, "let the sweeper alone publish new events, for servers without change streams (a standalone mongod): without it such a server stops the producer with an error naming this flag")
	fs.IntVar(&c.Relay.MaxInFlight, "max-in-flight", DefaultMaxInFlight, "publishes awaiting JetStream's ack at once (at least 1)")
	fs.DurationVar(&c.Relay.CheckpointInterval, "checkpoint-interval", DefaultCheckpointInterval, "how often the resume token is saved (not negative)")
	fs.IntVar(&c.Scheduler.Batch, "schedule-batch", DefaultSchedulerBatch, "page size of the scheduler's queries of due events (at least 1)")
	fs.DurationVar(&c.Sweeper.Interval, "sweep-interval", 0, "time between sweeps (not negative; 0: 10s, 2s without change streams)")
	fs.DurationVar(&c.Sweeper.Stall, "sweep-stall", 0, "republish events that made no progress for this long (not negative; 0: the duplicate window, or no wait without change streams)")
	fs.IntVar(&c.Sweeper.Batch, "sweep-batch", DefaultSweepBatch, "page size of a sweep query (at least 1)")
	fs.DurationVar(&c.Sweeper.LeaseGrace, "lease-grace", DefaultLeaseGrace, "how long past its end a consumer's lease is left to it (clock differences) before its run counts as never finished (not negative)")
	fs.DurationVar(&c.Retention.After, "retention", 0, "delete succeeded events this long after success (not negative; 0 keeps them)")
	fs.DurationVar(&c.Retention.Interval, "retention-interval", DefaultRetentionInterval, "time between deletions of succeeded events (not negative)")
	fs.IntVar(&c.Retention.Batch, "retention-batch", DefaultRetentionBatch, "most succeeded events deleted at once (at least 1)")
	fs.IntVar(&c.MaxEventSize, "max-event-size", 0, "largest event document in bytes; larger ones go to errors (not negative; 0: no bound)")
	fs.DurationVar(&c.Leader.TTL, "leader-ttl", DefaultLeaderTTL, "how long the active producer's leadership holds without renewal: a standby producer takes over after it (at least 1s)")
	fs.StringVar(&c.Leader.Owner, "leader-name", "", "name of this producer in the leadership document (any text; empty: host name, process id and a random suffix)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "how long a stopping producer waits for publishes in flight (not negative)")
	fs.DurationVar(&c.Streams.DuplicateWindow, "duplicate-window", messaging.DefaultDuplicateWindow, "JetStream duplicate window of both streams (not negative)")
	fs.DurationVar(&c.Streams.DLQMaxAge, "dlq-max-age", messaging.DefaultDLQMaxAge, "how long dead letters stay in the DLQ stream for inspection (not negative)")
	fs.IntVar(&c.Streams.Replicas, "stream-replicas", messaging.DefaultReplicas, "JetStream replicas of both streams, 1 to 5: use 3 in production, on servers with sync_interval: always (one replica can lose acknowledged messages; see the README)")
}
