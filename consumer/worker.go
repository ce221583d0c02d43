package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/tracing"
)

// WorkerStats count what a worker did.
type WorkerStats struct {
	Succeeded atomic.Int64 // transitions to success
	Failed    atomic.Int64 // transitions to failed (will retry)
	Errored   atomic.Int64 // transitions to error (exhausted, permanent or crashed)
	Stale     atomic.Int64 // messages of events that moved on, acknowledged without running
	Early     atomic.Int64 // messages of events not due yet, handed back or left to the scheduler
	Busy      atomic.Int64 // messages of events another replica runs now, handed back
	Changed   atomic.Int64 // runs whose outcome was not written: the event changed meanwhile
	Retried   atomic.Int64 // messages handed back after a storage error
	Held      atomic.Int64 // claimed events flow control held back (paused, breaker open, limits, keys)
	// AfterCrash counts claims of events whose last run never recorded an
	// outcome (retrigger.crashes above 0): crashed or hung runs.
	AfterCrash atomic.Int64
	InFlight   atomic.Int64 // handlers running now
}

// Worker is one consumer replica.
type Worker struct {
	cfg   Config
	log   zerolog.Logger
	store *eventstore.Store
	js    jetstream.JetStream
	stats WorkerStats
	types []string
	flow  *flow.Controller
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
	types := make([]string, 0, len(cfg.Handlers))
	for typ := range cfg.Handlers {
		types = append(types, typ)
	}
	sort.Strings(types)
	w := &Worker{
		cfg:   cfg,
		log:   cfg.Logger.With().Str("component", "consumer").Str("replica", cfg.Replica).Logger().Hook(tracing.LogHook),
		store: eventstore.New(db, cfg.Store),
		js:    js,
		types: types,
	}
	w.flow = flow.New(w.store, cfg.Flow, flow.Options{Types: types, Owner: cfg.Replica, RunTTL: cfg.HandlerTimeout + cfg.AckWait,
		StoreTimeout: cfg.StoreTimeout, Now: cfg.Now, Log: w.log, Metrics: cfg.Metrics})
	cfg.Health.Check("consumer "+cfg.Replica, w.checkReady)
	return w, nil
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *WorkerStats { return &w.stats }

// Flow is the replica's flow control: what each of its types may do now.
func (w *Worker) Flow() *flow.Controller { return w.flow }

// Replica is the name of this replica in leases and histories.
func (w *Worker) Replica() string { return w.cfg.Replica }

// Run pulls and handles the events of its handlers' types until ctx ends,
// then drains (see Config). Each type has its own durable consumer, which
// the replicas handling that type share; the replica's Concurrency bounds
// its handlers across all of them.
func (w *Worker) Run(ctx context.Context) error {
	p := newPool(w.log, w.cfg.Concurrency, w.cfg.DrainTimeout, w.cfg.AckWait)
	p.observe(w.cfg.Metrics, w.cfg.Health, w.cfg.HandlerTimeout)
	p.gate = w.flow.Pulling
	for _, typ := range w.types {
		p.add(typ, func(ctx context.Context) (jetstream.Consumer, error) {
			return w.open(ctx, typ)
		}, w.handle)
	}
	// Flow control reads and writes the types' shared state beside the
	// pulls, and stops with them.
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.flow.Run(fctx) }()
	defer func() { stop(); <-done }()
	return p.run(ctx)
}

// open makes sure the EVENTS stream and the type's consumer exist, as the
// producer defines them, and returns the consumer. A replica started before
// the producer creates the stream itself (the producer later applies its
// own settings), so start order does not matter.
func (w *Worker) open(ctx context.Context, typ string) (jetstream.Consumer, error) {
	if _, err := messaging.EnsureStreams(ctx, w.js, w.cfg.Names, messaging.StreamOptions{}, false); err != nil {
		return nil, err
	}
	c, changed, err := messaging.EnsureConsumer(ctx, w.js, w.cfg.Names.EventsStream(),
		w.cfg.Names.WorkersConfig(typ, messaging.ConsumerOptions{AckWait: w.cfg.AckWait, MaxAckPending: w.cfg.MaxAckPending}))
	if changed != "" {
		w.log.Info().Str("type", typ).Msg(changed)
	}
	return c, err
}

// storeCtx bounds one storage call.
func (w *Worker) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.cfg.StoreTimeout)
}

// handle runs one message: claim the event, run its handler under the
// lease, write the outcome, ack. A message is only a reminder: the event
// document in MongoDB decides whether and what to run.
func (w *Worker) handle(ctx context.Context, typ string, msg jetstream.Msg) {
	defer decided(ctx)
	ref, err := messaging.ReadRef(msg.Headers())
	if err != nil {
		// Not a message of ours; the event, if any, is swept from MongoDB.
		w.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("terminating a message that is not retrigger's")
		_ = msg.Term()
		return
	}
	now := w.cfg.Now()
	r := eventstore.ClaimRequest{ID: ref.ID, Type: typ, Owner: w.cfg.Replica, Token: newToken(), Now: now, TTL: w.cfg.AckWait, Grace: leaseGrace}
	claim, err := w.claim(ctx, msg, r)
	if err != nil {
		// No answer while the lease it may have written holds: give that
		// lease back, so it never passes for a crashed run.
		w.abandon(ctx, &Claim{Event: event.Event{ID: ref.ID, Version: ref.Version}, Lease: event.Lease{Owner: r.Owner, Token: r.Token, Until: r.Now.Add(r.TTL)}}, "claiming", err)
		w.redeliver(msg)
		return
	}
	switch claim.Outcome {
	case eventstore.Claimed:
		if claim.Event.Crashes > 0 {
			w.stats.AfterCrash.Add(1)
		}
	case eventstore.NotDue:
		w.stats.Early.Add(1)
		w.cfg.Metrics.Skipped(metrics.SkipNotDue)
		if wait := claim.Event.NextAttemptAt.Sub(now); wait <= w.cfg.NakWindow {
			_ = msg.NakWithDelay(wait)
			return
		}
		// Its due time moved later: the scheduler publishes it then.
		_ = msg.Ack()
		return
	case eventstore.Leased:
		// Another replica runs it now. If that replica dies, its lease
		// ends and this message takes over; if it finishes, this message
		// finds the event moved on. It looks again after 1s, then 2s, 4s,
		// ..., never later than the lease's end.
		w.stats.Busy.Add(1)
		w.cfg.Metrics.Skipped(metrics.SkipBusy)
		_ = msg.NakWithDelay(busyDelay(msg, claim.Event.Lease, now.Add(-leaseGrace)))
		return
	default: // Gone, Done, Invalid: nothing to run
		w.stale(ctx, msg, ref, claim.Outcome.String())
		return
	}
	// May it run now, and if not, until when? Flow control (breakers,
	// pauses, rate limits, keys) parks what may not.
	permit, err := w.flow.Admit(ctx, &claim, messaging.ChangeOrder(msg.Headers()))
	decided(ctx)
	if !permit.Run {
		if err != nil {
			// Parking it may have failed, leaving the lease: give it
			// back, so that it never passes for a crashed run.
			_ = w.giveBack(ctx, &claim)
		}
		w.held(ctx, msg, ref, permit, err)
		return
	}
	w.run(ctx, msg, &claim, &permit)
}

// held hands back the message of an event flow control holds: until it
// may look again, or for good when its key wakes it.
func (w *Worker) held(ctx context.Context, msg jetstream.Msg, ref messaging.Ref, p flow.Permit, err error) {
	w.stats.Held.Add(1)
	if err != nil {
		w.log.Warn().Ctx(ctx).Err(err).Str("event_id", event.IDString(ref.ID)).Msg("storage error while holding an event back; the sweeper brings it back if it stays parked")
	}
	if p.Until.IsZero() {
		_ = msg.Ack() // it waits for its key, out of NATS
		return
	}
	_ = msg.NakWithDelay(max(p.Until.Sub(w.cfg.Now()), 0))
}

// run runs a claimed event and records its outcome.
func (w *Worker) run(ctx context.Context, msg jetstream.Msg, c *Claim, permit *flow.Permit) {
	ev := &c.Event
	start := w.cfg.Now()
	var (
		herr    error
		crashed = ev.Crashes >= w.cfg.MaxCrashes
	)
	ctx, span := w.cfg.Tracing.Run(ctx, msg.Subject(), msg.Headers(), ev, w.cfg.Replica)
	defer func() { span.End(herr) }()
	if !crashed {
		w.stats.InFlight.Add(1)
		w.cfg.Metrics.InFlight(1)
		herr = w.call(ctx, msg, c)
		w.cfg.Metrics.InFlight(-1)
		w.stats.InFlight.Add(-1)
	}
	if herr != nil && ctx.Err() != nil && !errors.Is(herr, errHandlerTimeout) {
		// Hard stop: the handler was cut short by the shutdown, not by its
		// own failure. Give the event back to be run again.
		sctx, cancel := w.storeCtx(context.WithoutCancel(ctx))
		_ = w.store.Release(sctx, c)
		permit.Release(sctx, false, retry.EventFault(herr)) // says nothing of the partner
		cancel()
		_ = msg.Nak()
		return
	}
	spend := crashed || permit.Settle(herr)
	t := w.outcome(ev, herr, crashed, spend, start, w.cfg.Now())
	if key, seq := permit.Stamp(); key != "" {
		t.Key, t.Seq = key, seq
	}
	if crashed {
		// The span records why; it says nothing of the partner.
		herr = retry.EventFault(errors.New(t.LastError.Message))
	}
	t.Run.TraceID, t.Run.SpanID = span.IDs()
	span.Outcome(t.Run.Outcome)
	err := w.complete(ctx, msg, c, t)
	if errors.Is(err, eventstore.ErrStale) {
		// The application or an operator changed the event while it ran,
		// or the lease expired and another replica took it over: the
		// change stands. Releasing the lease lets the producer route the
		// event as it now is.
		sctx, cancel := w.storeCtx(context.WithoutCancel(ctx))
		defer cancel()
		w.stats.Changed.Add(1)
		if err := w.store.Release(sctx, c); err != nil {
			w.log.Debug().Ctx(ctx).Err(err).Str("event_id", event.IDString(ev.ID)).Msg("releasing the lease of a changed event")
		}
		permit.Release(sctx, false, herr)
		span.Outcome("stale")
		w.stale(ctx, msg, messaging.Ref{ID: ev.ID, Version: ev.Version}, "the event changed while it ran")
		return
	}
	if err != nil {
		// No answer while the lease held: give the lease back, so it never
		// passes for a crashed run. The outcome may have been written all
		// the same, which one more read tells.
		w.abandon(ctx, c, "writing the outcome of", err)
		if w.recorded(context.WithoutCancel(ctx), c, t) != nil {
			rctx, rcancel := w.storeCtx(context.WithoutCancel(ctx))
			permit.Release(rctx, false, herr)
			rcancel()
			span.Outcome("given back")
			w.redeliver(msg)
			return
		}
	}
	_ = msg.Ack()
	w.release(ctx, permit, t.To == event.StateSuccess || t.To == event.StateError, herr)
	w.report(ctx, ev, &t)
}

// release ends permit (flow.Permit.Release) under a store timeout, made
// only when the permit holds something to give back in storage: a type
// with no limits set needs none.
func (w *Worker) release(ctx context.Context, permit *flow.Permit, finished bool, herr error) {
	if !permit.Stores() {
		permit.Release(ctx, finished, herr)
		return
	}
	sctx, cancel := w.storeCtx(context.WithoutCancel(ctx))
	defer cancel()
	permit.Release(sctx, finished, herr)
}

// outcome is the transition a run ends in: success; failed, to be retried
// by the type's policy; error (exhausted, permanent, or crashed too
// often); or, when the run does not spend the event's attempt (a probe
// that found its partner still down), the state it had, due again now.
func (w *Worker) outcome(ev *event.Event, herr error, crashed, spend bool, start, now time.Time) eventstore.Transition {
	t := eventstore.Transition{At: now, Attempts: ev.Attempts,
		Run: event.Attempt{At: start, Took: now.Sub(start), Replica: w.cfg.Replica, Number: ev.Attempts + 1}}
	switch {
	case crashed:
		msg := fmt.Sprintf("its run never finished %d times: each crashed or hung its consumer", ev.Crashes)
		t.To, t.Reason = event.StateError, event.ReasonCrashed
		t.LastError = event.LastError{Message: msg, At: now}
		t.Run = event.Attempt{At: start, Outcome: "crashed", Error: msg, Replica: w.cfg.Replica}
	case herr == nil:
		t.To, t.Run.Outcome = event.StateSuccess, "success"
	case !spend:
		t.To, t.NextAt, t.Run.Outcome = ev.State, now, "probe"
		t.LastError = event.LastError{Message: herr.Error(), Retryable: true, At: now}
		t.Run.Error = herr.Error()
	default:
		d := w.cfg.Policies.For(ev.Type).Decide(ev.Attempts+1, ev.MaxAttempts, herr, now, w.cfg.Rand)
		t.Attempts, t.LastError = d.Attempts, event.LastError{Message: herr.Error(), Retryable: d.Retry, At: now}
		t.Run.Error = herr.Error()
		switch {
		case d.Retry:
			t.To, t.NextAt, t.Run.Outcome = event.StateFailed, d.NextAt, "failed"
		case d.Permanent:
			t.To, t.Reason, t.Run.Outcome = event.StateError, event.ReasonPermanent, "error"
		default:
			t.To, t.Reason, t.Run.Outcome = event.StateError, event.ReasonExhausted, "error"
		}
	}
	return t
}

// report tells the counters, the metrics, the log and the observer of a
// transition written.
func (w *Worker) report(ctx context.Context, ev *event.Event, t *eventstore.Transition) {
	switch t.To {
	case event.StateSuccess:
		w.stats.Succeeded.Add(1)
	case event.StateFailed:
		w.stats.Failed.Add(1)
	case event.StateError:
		w.stats.Errored.Add(1)
	}
	w.cfg.Metrics.Transition(ev.Type, ev.State, t.To, ev.Attempts+1, t.Run.Took)
	debug := w.log.Debug()
	if !debug.Enabled() && w.cfg.OnTransition == nil {
		return // nobody reads the transition: build none
	}
	tr := Transition{ID: event.IDString(ev.ID), Type: ev.Type, From: ev.State, To: t.To, Attempts: t.Attempts,
		Error: t.Run.Error, Took: t.Run.Took, At: t.At, Reason: t.Reason}
	debug.Ctx(ctx).Str("event_id", tr.ID).Str("type", tr.Type).Stringer("from", tr.From).Stringer("to", tr.To).
		Int64("attempts", tr.Attempts).Dur("took", tr.Took).Str("error", tr.Error).Msg("transition")
	if w.cfg.OnTransition != nil {
		w.cfg.OnTransition(tr)
	}
}

// Claim is a claimed event.
type Claim = eventstore.Claim

var errHandlerTimeout = errors.New("handler timed out")

// call runs the event's handler under the handler timeout, renews the
// lease and sends progress acks while it runs (until the timeout: a
// handler that outlives it loses its lease), and turns a panic into an
// error.
func (w *Worker) call(ctx context.Context, msg jetstream.Msg, c *Claim) (err error) {
	h := w.cfg.Handlers[c.Event.Type]
	hctx, cancel := context.WithTimeoutCause(ctx, w.cfg.HandlerTimeout, errHandlerTimeout)
	defer cancel()
	defer w.keepAlive(hctx, msg, c, cancel).stop()
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Ctx(ctx).Str("event_id", event.IDString(c.Event.ID)).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("handler panicked")
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	ev := c.Event
	err = h(hctx, &ev)
	if err != nil && errors.Is(context.Cause(hctx), errHandlerTimeout) {
		err = fmt.Errorf("%w after %s: %w", errHandlerTimeout, w.cfg.HandlerTimeout, err)
	}
	return err
}

// keepAlive renews the lease and sends a progress ack every AckWait/2
// until ctx ends; if the lease was taken over it cancels the run. The
// first renewal comes sooner when the lease has less than an ack wait
// left (a claim answered only on a retry): at half of what is left. Its
// stop ends it, cutting short a renewal under way, and returns once none
// runs.
// A timer's callback makes each renewal: a run that ends before the first
// (most runs) costs a timer, not a goroutine and a context of its own.
func (w *Worker) keepAlive(ctx context.Context, msg jetstream.Msg, c *Claim, cancel context.CancelFunc) *keeper {
	k := &keeper{w: w, ctx: ctx, msg: msg, c: c, cancel: cancel, every: w.cfg.AckWait / 2}
	first := min(k.every, max(c.Lease.Until.Sub(w.cfg.Now())/2, 0))
	k.mu.Lock()
	k.t = time.AfterFunc(first, k.renew)
	k.mu.Unlock()
	return k
}

// keeper is one run's keepAlive.
type keeper struct {
	w      *Worker
	ctx    context.Context
	msg    jetstream.Msg
	c      *Claim
	cancel context.CancelFunc // the run's
	every  time.Duration

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	abort   context.CancelFunc // the renewal under way's, or nil
	running sync.WaitGroup     // the renewal under way
}

func (k *keeper) renew() {
	k.mu.Lock()
	if k.stopped || k.ctx.Err() != nil {
		k.mu.Unlock()
		return
	}
	k.running.Add(1)
	defer k.running.Done()
	sctx, scancel := k.w.storeCtx(k.ctx)
	defer scancel()
	k.abort = scancel
	k.mu.Unlock()
	_ = k.msg.InProgress()
	err := k.w.store.RenewLease(sctx, k.c, k.w.cfg.Now().Add(k.w.cfg.AckWait))
	if errors.Is(err, eventstore.ErrLeaseLost) {
		k.w.log.Warn().Ctx(k.ctx).Str("event_id", event.IDString(k.c.Event.ID)).Msg("lost the lease of a running event; cancelling its handler")
		k.cancel()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.abort = nil
	if !k.stopped && k.ctx.Err() == nil {
		k.t.Reset(k.every)
	}
}

func (k *keeper) stop() {
	k.mu.Lock()
	k.stopped = true
	k.t.Stop()
	if k.abort != nil {
		k.abort()
	}
	k.mu.Unlock()
	k.running.Wait()
}

// busyDelay is how long a message of an event another replica runs waits
// before it looks again.
func busyDelay(msg jetstream.Msg, lease *event.Lease, now time.Time) time.Duration {
	delay := time.Second
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		delay <<= min(md.NumDelivered-1, 10)
	}
	if lease != nil {
		delay = min(delay, max(lease.Until.Sub(now), 0)+100*time.Millisecond)
	}
	return max(delay, 100*time.Millisecond)
}

func (w *Worker) stale(ctx context.Context, msg jetstream.Msg, ref messaging.Ref, why string) {
	w.stats.Stale.Add(1)
	w.cfg.Metrics.Skipped(metrics.SkipStale)
	w.log.Debug().Ctx(ctx).Str("event_id", event.IDString(ref.ID)).Int64("version", ref.Version).Str("why", why).Msg("message acknowledged without running")
	_ = msg.Ack()
}
