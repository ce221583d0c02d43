package producer

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/messaging"
)

// Config of a producer. The zero value of each field means its default.
type Config struct {
	Names   messaging.Names         // default messaging.DefaultNames()
	Streams messaging.StreamOptions // see messaging.StreamOptions

	// Events is the collection of event documents. Default "events".
	Events string
	// Checkpoints is the collection holding the resume token. Default
	// "retrigger_checkpoints".
	Checkpoints string

	// DisableChangeStreams makes the sweeper alone drive the pipeline, for
	// servers without change streams (standalone mongod).
	DisableChangeStreams bool
	// MaxInFlight bounds the publishes awaiting JetStream's ack. Default 1024.
	MaxInFlight int
	// CheckpointInterval is how often the resume token is saved. Default 1s.
	CheckpointInterval time.Duration

	// SweepInterval is the time between sweeps. Default 10s (2s without
	// change streams).
	SweepInterval time.Duration
	// SweepStall is how long an event needing work may make no progress
	// before the sweeper republishes it. Default: the duplicate window
	// (2m), since JetStream drops a republish inside it; 0 without change
	// streams, where the sweeper publishes everything due.
	SweepStall time.Duration
	// SweepBatch is the page size of a sweep query. Default 500.
	SweepBatch int
	// Retention deletes succeeded events this long after they succeeded,
	// keeping the collection small. Default 0: keep them.
	Retention time.Duration

	// MaxEventSize bounds an event document in bytes; larger ones go to
	// errors. Default 0: the NATS server's max payload decides.
	MaxEventSize int

	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives warnings and, at debug level, each publish.
	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	if c.Events == "" {
		c.Events = "events"
	}
	if c.Checkpoints == "" {
		c.Checkpoints = "retrigger_checkpoints"
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 10 * time.Second
		if c.DisableChangeStreams {
			c.SweepInterval = 2 * time.Second
		}
	}
	if c.Streams.DuplicateWindow == 0 {
		c.Streams.DuplicateWindow = 2 * time.Minute
	}
	if c.SweepStall == 0 && !c.DisableChangeStreams {
		// A republish inside the duplicate window is dropped by JetStream, so
		// a shorter stall would only publish duplicates.
		c.SweepStall = c.Streams.DuplicateWindow
	}
	if c.SweepBatch == 0 {
		c.SweepBatch = 500
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first setting to fix, naming its flag.
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	switch {
	case c.MaxInFlight < 1:
		return config.Invalid("max-in-flight", "must be at least 1, got %d", c.MaxInFlight)
	case c.CheckpointInterval < 0:
		return config.Invalid("checkpoint-interval", "must not be negative, got %s", c.CheckpointInterval)
	case c.SweepInterval < 0:
		return config.Invalid("sweep-interval", "must not be negative, got %s", c.SweepInterval)
	case c.SweepStall < 0:
		return config.Invalid("sweep-stall", "must not be negative, got %s", c.SweepStall)
	case c.SweepBatch < 1:
		return config.Invalid("sweep-batch", "must be at least 1, got %d", c.SweepBatch)
	case c.Retention < 0:
		return config.Invalid("retention", "must not be negative, got %s", c.Retention)
	case c.MaxEventSize < 0:
		return config.Invalid("max-event-size", "must not be negative, got %d", c.MaxEventSize)
	}
	return nil
}
