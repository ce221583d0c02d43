package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Defaults of the archiver.
const (
	DefaultArchiverConcurrency  = 4
	DefaultArchiverDrainTimeout = 10 * time.Second
)

// ArchiverConfig configures the archiver. Zero fields take their defaults.
type ArchiverConfig struct {
	Names messaging.Names // default messaging.DefaultNames()
	// Store names the collections and how events are read.
	Store eventstore.Options
	// Concurrency bounds the messages archived at once. Default 4.
	Concurrency int
	// AckWait is JetStream's redelivery deadline. Default 30s.
	AckWait time.Duration
	// DrainTimeout bounds the wait for archives in flight at shutdown.
	// Default 10s.
	DrainTimeout time.Duration
	// StoreTimeout bounds each storage call. Default 10s (at most a third
	// of AckWait).
	StoreTimeout time.Duration
	Now          func() time.Time // default time.Now
	OnTransition func(Transition) // called after each event is archived
	Logger       zerolog.Logger
	Metrics      *metrics.Metrics // nil: none
	Health       *health.Health   // nil: none
	Tracing      *tracing.Tracer  // a span of each archive (package tracing); nil: off
}

func (c ArchiverConfig) withDefaults() ArchiverConfig {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	c.Store = c.Store.WithDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = DefaultArchiverConcurrency
	}
	if c.AckWait == 0 {
		c.AckWait = messaging.DefaultAckWait
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultArchiverDrainTimeout
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = min(DefaultStoreTimeout, c.AckWait/3)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first setting to fix, naming its Go field (and, for
// commands, its flag: config.ForFlags).
func (c ArchiverConfig) Validate() error { return c.withDefaults().validate() }

func (c ArchiverConfig) validate() error {
	f := func(field, flag, format string, args ...any) error {
		return config.Field("consumer.ArchiverConfig."+field, flag, format, args...)
	}
	if err := c.Names.Validate(); err != nil {
		return err
	}
	switch {
	case c.Concurrency < 1:
		return f("Concurrency", "concurrency", "must be at least 1, got %d", c.Concurrency)
	case c.AckWait <= time.Second:
		return f("AckWait", "ack-wait", "must be longer than 1s, got %s", c.AckWait)
	case c.DrainTimeout < 0:
		return f("DrainTimeout", "drain-timeout", "must not be negative, got %s", c.DrainTimeout)
	case c.StoreTimeout < 0 || c.StoreTimeout >= c.AckWait:
		return f("StoreTimeout", "store-timeout", "must be shorter than the ack wait %s and not negative (0: a third of the ack wait, at most %s), got %s", c.AckWait, DefaultStoreTimeout, c.StoreTimeout)
	}
	return c.Store.Validate()
}

// ArchiverStats count what the archiver did.
type ArchiverStats struct {
	Archived atomic.Int64 // events moved into errors
	Repeated atomic.Int64 // messages whose event was already archived or gone
	Stale    atomic.Int64 // messages whose event left the error state
	Retried  atomic.Int64 // messages handed back after a storage error
}

// Archiver moves dead letters into the errors collection.
type Archiver struct {
	cfg   ArchiverConfig
	log   zerolog.Logger
	store *eventstore.Store
	js    jetstream.JetStream
	stats ArchiverStats
}

// NewArchiver builds an archiver on db and nc.
func NewArchiver(cfg ArchiverConfig, db store.Database, nc *nats.Conn) (*Archiver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	a := &Archiver{
		cfg:   cfg,
		log:   cfg.Logger.With().Str("component", "archiver").Logger().Hook(tracing.LogHook),
		store: eventstore.New(db, cfg.Store),
		js:    js,
	}
	cfg.Health.Check("archiver", a.checkReady)
	return a, nil
}

// Stats returns the archiver's counters.
func (a *Archiver) Stats() *ArchiverStats { return &a.stats }

// Run archives dead letters until ctx ends, then drains.
func (a *Archiver) Run(ctx context.Context) error {
	p := newPool(a.log, a.cfg.Concurrency, a.cfg.DrainTimeout, a.cfg.AckWait)
	p.observe(a.cfg.Metrics, a.cfg.Health, a.cfg.StoreTimeout)
	p.add("dlq", a.open, func(ctx context.Context, _ string, msg jetstream.Msg) { a.handle(ctx, msg) })
	return p.run(ctx)
}

// open makes sure the DLQ stream and the archiver's consumer exist.
func (a *Archiver) open(ctx context.Context) (jetstream.Consumer, error) {
	if _, err := messaging.EnsureStreams(ctx, a.js, a.cfg.Names, messaging.StreamOptions{}, false); err != nil {
		return nil, err
	}
	c, changed, err := messaging.EnsureConsumer(ctx, a.js, a.cfg.Names.DLQStream(), a.cfg.Names.ArchiverConfig(messaging.ConsumerOptions{AckWait: a.cfg.AckWait}))
	if changed != "" {
		a.log.Info().Msg(changed)
	}
	return c, err
}

// handle archives one dead letter: it reads the event from the events
// collection (the authoritative copy) and moves it into errors with the
// reason it is there. A repeated or redelivered message changes nothing.
func (a *Archiver) handle(ctx context.Context, msg jetstream.Msg) {
	ref, err := messaging.ReadRef(msg.Headers())
	if err != nil {
		a.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("terminating a dead letter that is not retrigger's")
		_ = msg.Term()
		return
	}
	id := event.IDString(ref.ID)
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	doc, err := a.store.Find(sctx, ref.ID)
	if errors.Is(err, store.ErrNotFound) {
		a.stats.Repeated.Add(1)
		_ = msg.Ack()
		return
	}
	if err != nil {
		a.retryLater(ctx, msg, id, err)
		return
	}
	now := a.cfg.Now()
	ev, perr := a.store.Parse(doc)
	ctx, span := a.cfg.Tracing.Archive(ctx, msg.Subject(), msg.Headers(), &ev)
	defer func() { span.End(err) }()
	arch := eventstore.Archive{At: now, Reason: ev.Reason}
	arch.TraceID, arch.SpanID = span.IDs()
	switch {
	case ref.Reason != "":
		arch.Reason, arch.Message = event.ReasonRejected, ref.Reason // the producer's reason
	case perr != nil:
		arch.Reason, arch.Message = event.ReasonRejected, perr.Error() // it went bad since
	case ev.State != event.StateError:
		// Not in the error state any more (the application reset it): its
		// change flows through the producer again.
		a.stats.Stale.Add(1)
		_ = msg.Ack()
		return
	case arch.Reason == "":
		arch.Reason = event.ReasonApplication // state 3 set by the application itself
	}
	err = a.store.MoveToErrors(sctx, doc, arch)
	if errors.Is(err, eventstore.ErrStale) {
		err = nil
		span.Outcome("stale")
		a.stats.Stale.Add(1)
		_ = msg.Ack() // it changed while being archived: the change flows through the producer
		return
	}
	if err != nil {
		a.retryLater(ctx, msg, id, err)
		return
	}
	_ = msg.Ack()
	span.Outcome(string(arch.Reason))
	a.stats.Archived.Add(1)
	a.cfg.Metrics.Archived(arch.Reason)
	a.log.Debug().Ctx(ctx).Str("event_id", id).Str("reason", string(arch.Reason)).Msg("archived")
	if a.cfg.OnTransition != nil {
		a.cfg.OnTransition(Transition{ID: id, Type: ev.Type, From: ev.State, To: event.StateError, Attempts: ev.Attempts, At: now, Archived: true, Error: arch.Message, Reason: arch.Reason})
	}
}

func (a *Archiver) retryLater(ctx context.Context, msg jetstream.Msg, id string, err error) {
	a.stats.Retried.Add(1)
	a.log.Warn().Ctx(ctx).Err(err).Str("event_id", id).Msg("archiving failed; the dead letter will be redelivered")
	_ = msg.NakWithDelay(time.Second)
}
