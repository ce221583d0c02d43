package producer

import (
	"flag"
	"time"
)

// RegisterFlags binds the producer's settings to fs. Every flag also reads
// its RETRIGGER_* variable (see shared/config).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Events, "events-collection", "events", "collection of event documents")
	fs.StringVar(&c.Checkpoints, "checkpoints-collection", "retrigger_checkpoints", "collection holding the change stream resume token")
	fs.BoolVar(&c.DisableChangeStreams, "disable-change-streams", false, "let the sweeper alone drive the pipeline (servers without change streams)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 1024, "publishes awaiting JetStream's ack at once")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", time.Second, "how often the resume token is saved")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 0, "time between sweeps (default 10s, 2s without change streams)")
	fs.DurationVar(&c.SweepStall, "sweep-stall", 0, "republish events that made no progress for this long (default: the duplicate window; 0 without change streams)")
	fs.IntVar(&c.SweepBatch, "sweep-batch", 500, "page size of a sweep query")
	fs.DurationVar(&c.Retention, "retention", 0, "delete succeeded events this long after success (0 keeps them)")
	fs.IntVar(&c.MaxEventSize, "max-event-size", 0, "largest event document in bytes; larger ones go to errors (0: the NATS max payload decides)")
	fs.DurationVar(&c.Streams.DuplicateWindow, "duplicate-window", 2*time.Minute, "JetStream duplicate window of both streams")
	fs.DurationVar(&c.Streams.DLQMaxAge, "dlq-max-age", 7*24*time.Hour, "how long dead letters stay in the DLQ stream for inspection")
	fs.IntVar(&c.Streams.Replicas, "stream-replicas", 1, "JetStream replicas of both streams")
}
