package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

// Config of a worker replica. The zero value of each field means its default.
type Config struct {
	Names messaging.Names // default messaging.DefaultNames()
	// Events is the collection of event documents. Default "events".
	Events string
	// Handlers maps event types to their handlers.
	Handlers map[string]Handler
	// Policies are the retry policies; zero fields take retry.DefaultPolicy.
	Policies retry.Policies
	// Concurrency bounds the handlers running at once in this replica.
	// Default 16.
	Concurrency int
	// HandlerTimeout bounds one handler run. Default 20s.
	HandlerTimeout time.Duration
	// AckWait is JetStream's redelivery deadline; a longer handler keeps its
	// message with progress acks. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds messages out at once across replicas. Default 1000.
	MaxAckPending int
	// DrainTimeout is how long a stopping worker lets handlers finish.
	// Default 25s.
	DrainTimeout time.Duration
	// Now is the clock; Rand the jitter source. Defaults time.Now, retry.Rand(0).
	Now  func() time.Time
	Rand func() float64
	// OnTransition, when set, is called after each transition is written.
	OnTransition func(Transition)
	Logger       zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	if c.Events == "" {
		c.Events = "events"
	}
	c.Policies.Default = c.Policies.Default.WithDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 20 * time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 25 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = retry.Rand(0)
	}
	return c
}

// Validate reports the first setting to fix, naming its flag.
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	if len(c.Handlers) == 0 {
		return errors.New("no handlers registered: a worker needs at least one event type to run")
	}
	for typ, h := range c.Handlers {
		if err := event.ValidateType(typ); err != nil {
			return fmt.Errorf("handler type %q: %w", typ, err)
		}
		if h == nil {
			return fmt.Errorf("handler type %q: nil handler", typ)
		}
	}
	switch {
	case c.Concurrency < 1:
		return config.Invalid("concurrency", "must be at least 1, got %d", c.Concurrency)
	case c.HandlerTimeout <= 0:
		return config.Invalid("handler-timeout", "must be positive, got %s", c.HandlerTimeout)
	case c.AckWait <= time.Second:
		return config.Invalid("ack-wait", "must be longer than 1s, got %s", c.AckWait)
	case c.MaxAckPending < c.Concurrency:
		return config.Invalid("max-ack-pending", "must be at least the concurrency %d, got %d", c.Concurrency, c.MaxAckPending)
	case c.DrainTimeout < 0:
		return config.Invalid("drain-timeout", "must not be negative, got %s", c.DrainTimeout)
	}
	if err := c.Policies.Default.Validate(); err != nil {
		return config.Invalid("retry-*", "%v", err)
	}
	for typ, p := range c.Policies.ByType {
		if err := p.Validate(); err != nil {
			return config.Invalid("retry-overrides", "type %s: %v", typ, err)
		}
	}
	return nil
}

// WorkerStats count what a worker did.
type WorkerStats struct {
	Succeeded atomic.Int64 // transitions to success
	Failed    atomic.Int64 // transitions to failed (will retry)
	Errored   atomic.Int64 // transitions to error (exhausted or permanent)
	Stale     atomic.Int64 // duplicate or stale messages acknowledged without running
	Early     atomic.Int64 // messages of events not due yet, nak'ed with the remaining delay
	Retried   atomic.Int64 // messages handed back after a storage error
}

// Worker is one consumer replica.
type Worker struct {
	cfg    Config
	log    zerolog.Logger
	events store.Collection
	js     jetstream.JetStream
	stats  WorkerStats
}

// NewWorker builds a worker on db and nc.
func NewWorker(cfg Config, db store.Database, nc *nats.Conn) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	return &Worker{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "consumer").Logger(),
		events: db.Collection(cfg.Events),
		js:     js,
	}, nil
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *WorkerStats { return &w.stats }

// Run pulls and handles events until ctx ends, then drains (see Config).
func (w *Worker) Run(ctx context.Context) error {
	open := func(ctx context.Context) (jetstream.Consumer, error) {
		return messaging.EnsureWorkers(ctx, w.js, w.cfg.Names, messaging.ConsumerOptions{AckWait: w.cfg.AckWait, MaxAckPending: w.cfg.MaxAckPending})
	}
	return consume(ctx, w.log, open, w.cfg.Concurrency, w.cfg.DrainTimeout, w.handle)
}

// handle runs one message: look the event up, skip it if stale, wait if not
// due, run the handler, write the transition, ack.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	ref, err := messaging.DecodeRef(msg.Data())
	if err != nil {
		// Not a message of ours; the event, if any, is swept from MongoDB.
		w.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("terminating an undecodable message")
		_ = msg.Term()
		return
	}
	if ref.State == event.StateFailed && ref.NextAttemptAt.After(w.cfg.Now()) {
		// Not due: hand it back for the remaining delay, no read needed.
		w.stats.Early.Add(1)
		_ = msg.NakWithDelay(ref.NextAttemptAt.Sub(w.cfg.Now()))
		return
	}
	doc, err := w.events.FindOne(ctx, event.ByID(ref.ID))
	if errors.Is(err, store.ErrNotFound) {
		w.stale(msg, ref, "event no longer exists")
		return
	}
	if err != nil {
		w.retryLater(msg, ref, err)
		return
	}
	ev, err := event.Parse(doc, 0)
	if err != nil || ev.Version != ref.Version || (ev.State != event.StateNew && ev.State != event.StateFailed) {
		w.stale(msg, ref, "event moved on")
		return
	}
	now := w.cfg.Now()
	if ev.State == event.StateFailed && ev.NextAttemptAt.After(now) {
		w.stats.Early.Add(1)
		_ = msg.NakWithDelay(ev.NextAttemptAt.Sub(now))
		return
	}

	start := w.cfg.Now()
	herr := w.run(ctx, msg, &ev)
	now = w.cfg.Now()
	if herr != nil && ctx.Err() != nil && !errors.Is(herr, errHandlerTimeout) {
		// Hard stop: the handler was cut short by the shutdown, not by its
		// own failure. Hand the message back to be run again.
		_ = msg.Nak()
		return
	}
	tr := Transition{ID: event.IDString(ev.ID), Type: ev.Type, From: ev.State, Took: now.Sub(start), At: now, Attempts: ev.Attempts}
	var update any
	if herr == nil {
		tr.To = event.StateSuccess
		update = event.Succeed(now, ev.Version)
	} else {
		d := w.cfg.Policies.For(ev.Type).Decide(ev.Attempts+1, ev.MaxAttempts, herr, now, w.cfg.Rand)
		tr.Attempts, tr.Error = d.Attempts, herr.Error()
		tr.To = event.StateError
		if d.Retry {
			tr.To = event.StateFailed
		}
		update = event.Fail(now, d.NextAt, event.LastError{Message: herr.Error(), Retryable: d.Retry, At: now}, ev.Attempts, ev.Version)
	}
	matched, err := w.events.UpdateOne(ctx, event.Current(ev.ID, ev.Version, ev.State), update, false)
	if err != nil {
		w.retryLater(msg, ref, err)
		return
	}
	if matched == 0 {
		w.stale(msg, ref, "another delivery wrote the transition first")
		return
	}
	_ = msg.Ack()
	switch tr.To {
	case event.StateSuccess:
		w.stats.Succeeded.Add(1)
	case event.StateFailed:
		w.stats.Failed.Add(1)
	case event.StateError:
		w.stats.Errored.Add(1)
	}
	w.log.Debug().Str("event_id", tr.ID).Str("type", tr.Type).Stringer("from", tr.From).Stringer("to", tr.To).
		Int("attempts", tr.Attempts).Dur("took", tr.Took).Str("error", tr.Error).Msg("transition")
	if w.cfg.OnTransition != nil {
		w.cfg.OnTransition(tr)
	}
}

var errHandlerTimeout = errors.New("handler timed out")

// run calls the event's handler under the handler timeout, keeps the
// message alive with progress acks while it runs, and turns a panic into an
// error.
func (w *Worker) run(ctx context.Context, msg jetstream.Msg, ev *Event) (err error) {
	h, ok := w.cfg.Handlers[ev.Type]
	if !ok {
		return fmt.Errorf("no handler registered for type %q on this consumer", ev.Type)
	}
	hctx, cancel := context.WithTimeoutCause(ctx, w.cfg.HandlerTimeout, errHandlerTimeout)
	defer cancel()
	if w.cfg.HandlerTimeout > w.cfg.AckWait/2 {
		stop := keepAlive(hctx, msg, w.cfg.AckWait/2)
		defer stop()
	}
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Str("event_id", event.IDString(ev.ID)).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("handler panicked")
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	err = h(hctx, ev)
	if err != nil && errors.Is(context.Cause(hctx), errHandlerTimeout) {
		err = fmt.Errorf("%w after %s: %w", errHandlerTimeout, w.cfg.HandlerTimeout, err)
	}
	return err
}

// keepAlive sends progress acks every interval until stopped.
func keepAlive(ctx context.Context, msg jetstream.Msg, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (w *Worker) stale(msg jetstream.Msg, ref messaging.Ref, why string) {
	w.stats.Stale.Add(1)
	w.log.Debug().Str("event_id", event.IDString(ref.ID)).Int64("version", ref.Version).Str("why", why).Msg("stale message acknowledged")
	_ = msg.Ack()
}

// retryLater hands a message back after a storage error.
func (w *Worker) retryLater(msg jetstream.Msg, ref messaging.Ref, err error) {
	w.stats.Retried.Add(1)
	w.log.Warn().Err(err).Str("event_id", event.IDString(ref.ID)).Msg("storage error; the message will be redelivered")
	_ = msg.NakWithDelay(time.Second)
}
