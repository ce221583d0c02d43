package consumer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Defaults of a worker.
const (
	DefaultConcurrency    = 16
	DefaultHandlerTimeout = 20 * time.Second
	DefaultDrainTimeout   = 25 * time.Second
	DefaultMaxCrashes     = 5
	DefaultNakWindow      = time.Second
	// DefaultStoreTimeout bounds one storage call; it stays well under the
	// ack wait, so a slow database never lets a message be redelivered
	// while its first delivery is still being handled.
	DefaultStoreTimeout = 10 * time.Second
)

// Config of a worker replica. The zero value of each field means its default.
type Config struct {
	Names messaging.Names // default messaging.DefaultNames()
	// Store names the collections and how events are read.
	Store eventstore.Options
	// Handlers maps event types to their handlers. A replica only receives
	// events of these types.
	Handlers map[string]Handler
	// Policies are the retry policies; zero fields take the defaults (for
	// a per-type policy, those of Default).
	Policies retry.Policies
	// Concurrency bounds the handlers running at once in this replica.
	// Default 16.
	Concurrency int
	// HandlerTimeout bounds one handler run. Default 20s.
	HandlerTimeout time.Duration
	// AckWait is JetStream's redelivery deadline, and how long a run's
	// lease holds without renewal; a longer run keeps both with progress
	// acks and renewals every AckWait/2. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds messages out at once across replicas, per event
	// type. Default 1000.
	MaxAckPending int
	// DrainTimeout is how long a stopping worker lets handlers finish.
	// Default 25s.
	DrainTimeout time.Duration
	// MaxCrashes is how many runs of one event may end without an outcome
	// (the process crashed, or the handler hung past its timeout) before
	// the event is archived as crashed. Default 5.
	MaxCrashes int64
	// Flow is flow control: every type's breaker (on by default), and the
	// rate limits and keys of the types that have them.
	Flow flow.Config
	// NakWindow: a message of an event due within this time is handed back
	// for the remaining delay; one due later is dropped, the producer's
	// scheduler publishing it again when it is due. Default 1s.
	NakWindow time.Duration
	// StoreTimeout bounds each storage call. Default a third of AckWait,
	// at most 10s.
	StoreTimeout time.Duration
	// Replica names this replica in leases and histories. Default: the
	// host name, the process id and a random suffix.
	Replica string
	// Now is the clock; Rand the jitter source. Defaults time.Now,
	// retry.Rand(0).
	Now  func() time.Time
	Rand func() float64
	// OnTransition, when set, is called after each transition is written.
	OnTransition func(Transition)
	Logger       zerolog.Logger
	// Metrics records what the replica does; Health its heartbeats and
	// readiness. nil: none.
	Metrics *metrics.Metrics
	Health  *health.Health
	// Tracing makes a span of each run, which the handler's ctx carries,
	// and writes its ids into the run's history entry (package tracing).
	// nil: off.
	Tracing *tracing.Tracer
}

func (c Config) withDefaults() Config {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	c.Store = c.Store.WithDefaults()
	c.Policies = c.Policies.WithDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.AckWait == 0 {
		c.AckWait = messaging.DefaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = messaging.DefaultMaxAckPending
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.MaxCrashes == 0 {
		c.MaxCrashes = DefaultMaxCrashes
	}
	if c.NakWindow == 0 {
		c.NakWindow = DefaultNakWindow
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = min(DefaultStoreTimeout, c.AckWait/3)
	}
	if c.Replica == "" {
		c.Replica = defaultReplica()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = retry.Rand(0)
	}
	return c
}

// defaultReplica names a replica by its host, process and a random suffix,
// unique even for two replicas in one process.
func defaultReplica() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "replica"
	}
	return fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(1<<16))
}

// Validate reports the first setting to fix, naming its Go field (and, for
// commands, its flag: config.ForFlags).
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	f := func(field, flag, format string, args ...any) error {
		return config.Field("consumer.Config."+field, flag, format, args...)
	}
	if err := c.Names.Validate(); err != nil {
		return err
	}
	if len(c.Handlers) == 0 {
		return f("Handlers", "handlers", "no handlers registered: a worker needs at least one event type to run")
	}
	types := make([]string, 0, len(c.Handlers))
	for typ := range c.Handlers {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		if err := event.ValidateType(typ); err != nil {
			return f(fmt.Sprintf("Handlers[%q]", typ), "handlers", "%v", err)
		}
		if c.Handlers[typ] == nil {
			return f(fmt.Sprintf("Handlers[%q]", typ), "handlers", "nil handler")
		}
	}
	switch {
	case c.Concurrency < 1:
		return f("Concurrency", "concurrency", "must be at least 1, got %d", c.Concurrency)
	case c.HandlerTimeout <= 0:
		return f("HandlerTimeout", "handler-timeout", "must be positive, got %s", c.HandlerTimeout)
	case c.AckWait <= time.Second:
		return f("AckWait", "ack-wait", "must be longer than 1s, got %s", c.AckWait)
	case c.MaxAckPending < c.Concurrency:
		return f("MaxAckPending", "max-ack-pending", "must be at least the concurrency %d, got %d", c.Concurrency, c.MaxAckPending)
	case c.DrainTimeout < 0:
		return f("DrainTimeout", "drain-timeout", "must not be negative, got %s", c.DrainTimeout)
	case c.MaxCrashes < 1:
		return f("MaxCrashes", "max-crashes", "must be at least 1, got %d", c.MaxCrashes)
	case c.NakWindow < 0:
		return f("NakWindow", "nak-window", "must not be negative, got %s", c.NakWindow)
	case c.StoreTimeout < 0 || c.StoreTimeout >= c.AckWait:
		return f("StoreTimeout", "store-timeout", "must be shorter than the ack wait %s and not negative (0: a third of the ack wait, at most %s), got %s", c.AckWait, DefaultStoreTimeout, c.StoreTimeout)
	}
	if err := c.Policies.Validate("consumer.Config.Policies"); err != nil {
		return err
	}
	if err := c.Flow.Validate(types); err != nil {
		var fe *flow.Error
		if errors.As(err, &fe) {
			return f("Flow", fe.Setting, "%v", err)
		}
		return f("Flow", "", "%v", err)
	}
	return c.Store.Validate()
}
