package producer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Defaults of the producer's services.
const (
	DefaultMaxInFlight        = 1024
	DefaultCheckpointInterval = time.Second
	DefaultSchedulerBatch     = 500
	DefaultSweepInterval      = 10 * time.Second
	DefaultSweepOnlyInterval  = 2 * time.Second // without change streams the sweeper drives the pipeline
	DefaultSweepBatch         = 500
	DefaultLeaseGrace         = time.Second
	DefaultRetentionInterval  = 10 * time.Second
	DefaultRetentionBatch     = 1000
	DefaultDrainTimeout       = 10 * time.Second
	DefaultLeaderTTL          = 15 * time.Second
)

// Config of a producer. The zero value of each field means its default.
type Config struct {
	Names   messaging.Names         // default messaging.DefaultNames()
	Streams messaging.StreamOptions // see messaging.StreamOptions
	// Store names the collections and how events are read.
	Store eventstore.Options
	// DisableChangeStreams makes the sweeper alone drive new events, for
	// servers without change streams (standalone mongod).
	DisableChangeStreams bool
	// MaxEventSize bounds an event document in bytes; larger ones go to
	// errors. Default 0: no bound of retrigger's own (a document too large
	// to show in a message travels as a reference).
	MaxEventSize int

	Leader    LeaderConfig
	Relay     RelayConfig
	Scheduler SchedulerConfig
	Sweeper   SweeperConfig
	Retention RetentionConfig

	// DrainTimeout bounds the wait for publishes in flight at shutdown.
	// Default 10s.
	DrainTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives warnings and, at debug level, each publish.
	Logger zerolog.Logger
	// Metrics records what the producer does; Health its heartbeats and
	// readiness. nil: none.
	Metrics *metrics.Metrics
	// Tracing makes a span of each publish, and writes its context into
	// the message (package tracing). nil: off.
	Tracing *tracing.Tracer
	Health  *health.Health
}

// LeaderConfig tunes the leadership that lets several producers run, one
// active and the others standing by.
type LeaderConfig struct {
	// TTL is how long a leadership holds without renewal: a standby takes
	// over this long after the leader stopped renewing (it crashed, or
	// lost MongoDB). The leader renews every TTL/3, and stops its work if
	// it could not renew for TTL minus a clock-skew margin of TTL/5.
	// Default 15s.
	TTL time.Duration
	// Owner names this producer in the leadership document. Default: the
	// host name, the process id and a random suffix.
	Owner string
}

// RelayConfig tunes the change stream relay.
type RelayConfig struct {
	// MaxInFlight bounds the publishes awaiting JetStream's ack. Default 1024.
	MaxInFlight int
	// CheckpointInterval is how often the resume token is saved. Default 1s.
	CheckpointInterval time.Duration
}

// SchedulerConfig tunes the scheduler, which publishes each failed event
// when it comes due.
type SchedulerConfig struct {
	// Batch is the page size of its queries. Default 500.
	Batch int
}

// SweeperConfig tunes the sweeper, which republishes events that made no
// progress (a lost message, a lost change, a run that never finished).
type SweeperConfig struct {
	// Interval is the time between sweeps. Default 10s (2s without change
	// streams).
	Interval time.Duration
	// Stall is how long an event needing work may show no progress before
	// it is republished. Default: the duplicate window (2m), since
	// JetStream drops a republish inside it anyway; 0 without change
	// streams, where the sweeper publishes every new event.
	Stall time.Duration
	// Batch is the page size of a sweep query. Default 500.
	Batch int
	// LeaseGrace is how long past its end a consumer's lease is left to
	// it, for clock differences, before its run counts as never finished.
	// Default 1s.
	LeaseGrace time.Duration
}

// RetentionConfig tunes the deletion of succeeded events.
type RetentionConfig struct {
	// After deletes succeeded events this long after they succeeded.
	// Default 0: keep them.
	After time.Duration
	// Interval is the time between deletions. Default 10s.
	Interval time.Duration
	// Batch bounds one delete. Default 1000.
	Batch int
}

func (c Config) withDefaults() Config {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	c.Streams = c.Streams.WithDefaults()
	c.Store = c.Store.WithDefaults()
	if c.MaxEventSize > 0 {
		c.Store.Schema.MaxSize = c.MaxEventSize
	}
	if c.Relay.MaxInFlight == 0 {
		c.Relay.MaxInFlight = DefaultMaxInFlight
	}
	if c.Relay.CheckpointInterval == 0 {
		c.Relay.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Scheduler.Batch == 0 {
		c.Scheduler.Batch = DefaultSchedulerBatch
	}
	if c.Sweeper.Interval == 0 {
		c.Sweeper.Interval = DefaultSweepInterval
		if c.DisableChangeStreams {
			c.Sweeper.Interval = DefaultSweepOnlyInterval
		}
	}
	if c.Sweeper.Stall == 0 && !c.DisableChangeStreams {
		// A republish inside the duplicate window is dropped by JetStream,
		// so a shorter stall would only publish duplicates.
		c.Sweeper.Stall = c.Streams.DuplicateWindow
	}
	if c.Sweeper.Batch == 0 {
		c.Sweeper.Batch = DefaultSweepBatch
	}
	if c.Sweeper.LeaseGrace == 0 {
		c.Sweeper.LeaseGrace = DefaultLeaseGrace
	}
	if c.Retention.Interval == 0 {
		c.Retention.Interval = DefaultRetentionInterval
	}
	if c.Retention.Batch == 0 {
		c.Retention.Batch = DefaultRetentionBatch
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Leader.TTL == 0 {
		c.Leader.TTL = DefaultLeaderTTL
	}
	if c.Leader.Owner == "" {
		c.Leader.Owner = defaultOwner()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first setting to fix, naming its Go field (and, for
// commands, its flag: config.ForFlags).
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	f := func(field, flag, format string, args ...any) error {
		return config.Field("producer.Config."+field, flag, format, args...)
	}
	if err := c.Names.Validate(); err != nil {
		return err
	}
	switch {
	case c.Streams.Replicas < 1 || c.Streams.Replicas > 5:
		return f("Streams.Replicas", "stream-replicas", "must be 1 to 5 (JetStream's range; 3 in production), got %d", c.Streams.Replicas)
	case c.Streams.DuplicateWindow < 0:
		return f("Streams.DuplicateWindow", "duplicate-window", "must not be negative, got %s", c.Streams.DuplicateWindow)
	case c.Streams.DLQMaxAge < 0:
		return f("Streams.DLQMaxAge", "dlq-max-age", "must not be negative, got %s", c.Streams.DLQMaxAge)
	case c.Relay.MaxInFlight < 1:
		return f("Relay.MaxInFlight", "max-in-flight", "must be at least 1, got %d", c.Relay.MaxInFlight)
	case c.Relay.CheckpointInterval < 0:
		return f("Relay.CheckpointInterval", "checkpoint-interval", "must not be negative, got %s", c.Relay.CheckpointInterval)
	case c.Scheduler.Batch < 1:
		return f("Scheduler.Batch", "schedule-batch", "must be at least 1, got %d", c.Scheduler.Batch)
	case c.Sweeper.Interval < 0:
		return f("Sweeper.Interval", "sweep-interval", "must not be negative, got %s", c.Sweeper.Interval)
	case c.Sweeper.Stall < 0:
		return f("Sweeper.Stall", "sweep-stall", "must not be negative, got %s", c.Sweeper.Stall)
	case c.Sweeper.Batch < 1:
		return f("Sweeper.Batch", "sweep-batch", "must be at least 1, got %d", c.Sweeper.Batch)
	case c.Sweeper.LeaseGrace < 0:
		return f("Sweeper.LeaseGrace", "lease-grace", "must not be negative, got %s", c.Sweeper.LeaseGrace)
	case c.Retention.After < 0:
		return f("Retention.After", "retention", "must not be negative, got %s", c.Retention.After)
	case c.Retention.Interval < 0:
		return f("Retention.Interval", "retention-interval", "must not be negative, got %s", c.Retention.Interval)
	case c.Retention.Batch < 1:
		return f("Retention.Batch", "retention-batch", "must be at least 1, got %d", c.Retention.Batch)
	case c.MaxEventSize < 0:
		return f("MaxEventSize", "max-event-size", "must not be negative, got %d", c.MaxEventSize)
	case c.Leader.TTL < time.Second:
		return f("Leader.TTL", "leader-ttl", "must be at least 1s, got %s", c.Leader.TTL)
	case c.DrainTimeout < 0:
		return f("DrainTimeout", "drain-timeout", "must not be negative, got %s", c.DrainTimeout)
	}
	return c.Store.Validate()
}

// defaultOwner names a producer by its host, process and a random suffix.
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "producer"
	}
	return fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(1<<16))
}
