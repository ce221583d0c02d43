package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// A storage call that times out may have been applied: the database did
// the write, its answer was lost or came too late. A claim or an outcome
// left that way must not pass for a crashed run later (a lease no run
// holds, taken over when it expires, counts a crash). So the worker sends
// the very same claim or outcome again, with backoff, while the lease
// holds, and when it cannot get an answer in time it gives the lease back
// (Abandon), leaving the crash count as it was. DESIGN.md, "Running an
// event", states the rule.

// leaseGrace is how long after its end a lease is left to its holder
// before another replica takes it over: room for clocks that differ, and
// for a release its holder sent late (see giveBack).
const leaseGrace = time.Second

// newToken is a claim's token: random, never 0 (the token a lease
// written by hand may lack).
func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// retryBackoff paces the tries of one storage write: 50ms, 100ms, ...,
// at most 1s apart. It is made at the first failure: most writes need
// none.
type retryBackoff struct{ bo *backoff.ExponentialBackOff }

func (r *retryBackoff) next() time.Duration {
	if r.bo == nil {
		r.bo = backoff.NewExponentialBackOff()
		r.bo.InitialInterval, r.bo.Multiplier, r.bo.MaxInterval, r.bo.MaxElapsedTime = 50*time.Millisecond, 2, time.Second, 0
		r.bo.Reset()
	}
	return r.bo.NextBackOff()
}

// pause waits d, keeping msg alive; false when ctx ended first.
func pause(ctx context.Context, msg jetstream.Msg, d time.Duration) bool {
	_ = msg.InProgress()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// claim sends r and, after a storage error, the very same r again: the
// store finds a claim an earlier try applied by its token, without
// counting anything twice (eventstore.ClaimEvent). The first try has a
// whole store timeout. The others come with backoff, keeping msg alive,
// and end two store timeouts before the lease r may have written ends:
// a release sent then lands before that end even when the database
// applies it only at its own deadline. It returns the last error when no
// try got an answer.
func (w *Worker) claim(ctx context.Context, msg jetstream.Msg, r eventstore.ClaimRequest) (Claim, error) {
	deadline := r.Now.Add(r.TTL - 2*w.cfg.StoreTimeout)
	var bo retryBackoff
	for failed := 0; ; failed++ {
		timeout := w.cfg.StoreTimeout
		if failed > 0 {
			timeout = min(timeout, deadline.Sub(w.cfg.Now()))
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		c, err := w.store.ClaimEvent(sctx, r)
		cancel()
		if err == nil {
			if failed > 0 {
				w.settledAfter(ctx, failed, r.ID, "claim")
				if c.Outcome != eventstore.Claimed && c.Event.Lease != nil && c.Event.Lease.Token == r.Token {
					// An earlier try claimed it, and then the event moved on
					// (an edit): give that lease back.
					_ = w.giveBack(ctx, &Claim{Event: c.Event, Lease: *c.Event.Lease})
				}
			}
			return c, nil
		}
		w.log.Debug().Ctx(ctx).Err(err).Str("event_id", event.IDString(r.ID)).Int("try", failed+1).Msg("claiming an event failed; trying the same claim again")
		wait := bo.next()
		if ctx.Err() != nil || !w.cfg.Now().Add(wait+w.cfg.StoreTimeout/10).Before(deadline) || !pause(ctx, msg, wait) {
			return Claim{}, err
		}
	}
}

// complete writes the outcome t of the run c. After a storage error it
// writes it again, with backoff, for at most an ack wait, keeping msg
// alive, and renewing the lease first whenever less than two store
// timeouts of it are left: the outcome is worth more than the margin a
// claim keeps, since giving up means running the handler again. A
// timeout may hide a write the database applied, so a try that then finds
// nothing to update (ErrStale), or a renewal that finds the lease gone,
// asks whether the outcome is there (Recorded) before taking the event for
// changed. It returns nil once the outcome is written, ErrStale when the
// event changed meanwhile, or the last storage error when neither could be
// told in time (or the worker stops hard).
func (w *Worker) complete(ctx context.Context, msg jetstream.Msg, c *Claim, t eventstore.Transition) error {
	st := w.cfg.StoreTimeout
	giveUp := w.cfg.Now().Add(w.cfg.AckWait)
	var bo retryBackoff
	for failed := 0; ; failed++ {
		// The first try is made even when the worker stops hard: the
		// handler ran, its outcome is worth writing.
		cctx := context.WithoutCancel(ctx)
		if failed > 0 {
			cctx = ctx
		}
		sctx, cancel := w.storeCtx(cctx)
		err := w.store.Complete(sctx, c, t)
		cancel()
		if err == nil || (errors.Is(err, eventstore.ErrStale) && failed == 0) {
			return err
		}
		if errors.Is(err, eventstore.ErrStale) {
			if err = w.recorded(ctx, c, t); err == nil || errors.Is(err, eventstore.ErrStale) {
				w.settledAfter(ctx, failed, c.Event.ID, "outcome")
				return err
			}
		}
		w.log.Debug().Ctx(ctx).Err(err).Str("event_id", event.IDString(c.Event.ID)).Int("try", failed+1).Msg("writing an outcome failed; writing it again")
		wait := bo.next()
		if ctx.Err() != nil || !w.cfg.Now().Add(wait).Before(giveUp) || !pause(ctx, msg, wait) {
			return err
		}
		if c.Lease.Until.Sub(w.cfg.Now()) >= 2*st {
			continue
		}
		sctx, cancel = w.storeCtx(ctx)
		rerr := w.store.RenewLease(sctx, c, w.cfg.Now().Add(w.cfg.AckWait))
		cancel()
		if errors.Is(rerr, eventstore.ErrLeaseLost) {
			// Gone: an earlier try wrote the outcome (which removes the
			// lease), or the lease expired and was taken over.
			if rerr = w.recorded(ctx, c, t); rerr == nil || errors.Is(rerr, eventstore.ErrStale) {
				w.settledAfter(ctx, failed+1, c.Event.ID, "outcome")
				return rerr
			}
		}
	}
}

// recorded is nil when the outcome t of c is in the event, ErrStale when
// it is not, or a storage error.
func (w *Worker) recorded(ctx context.Context, c *Claim, t eventstore.Transition) error {
	sctx, cancel := w.storeCtx(ctx)
	defer cancel()
	ok, err := w.store.Recorded(sctx, c, t)
	switch {
	case err != nil:
		return err
	case !ok:
		return eventstore.ErrStale
	}
	return nil
}

// settledAfter notes a write that got its answer after failed tries.
func (w *Worker) settledAfter(ctx context.Context, failed int, id bson.RawValue, what string) {
	w.log.Debug().Ctx(ctx).Str("event_id", event.IDString(id)).Int("failed_tries", failed).Str("write", what).Msg("a storage write settled after failed tries")
}

// giveBack removes the lease of c if it is still c's, keeping the crash
// count: a storage error is not a crash. It tries again with backoff
// while the lease, with its grace, is not over (once it is, another
// replica may take it over, and a release then changes nothing), unless
// the worker stops hard: then it tries once.
func (w *Worker) giveBack(ctx context.Context, c *Claim) error {
	end := c.Lease.Until.Add(leaseGrace)
	var bo retryBackoff
	for {
		sctx, cancel := w.storeCtx(context.WithoutCancel(ctx))
		err := w.store.Abandon(sctx, c)
		cancel()
		if err == nil {
			return nil
		}
		wait := bo.next()
		if ctx.Err() != nil || !w.cfg.Now().Add(wait).Before(end) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// abandon gives back the lease of c, whose claim or outcome got no
// answer while the lease held, and says so.
func (w *Worker) abandon(ctx context.Context, c *Claim, what string, cause error) {
	err := w.giveBack(ctx, c)
	l := w.log.Warn().Ctx(ctx).Err(cause).Str("event_id", event.IDString(c.Event.ID))
	if err != nil {
		l = l.AnErr("release_error", err)
	}
	l.Msgf("storage error %s the event; its lease is given back and the message will be redelivered", what)
}

// redeliver hands msg back after a storage error.
func (w *Worker) redeliver(msg jetstream.Msg) {
	w.stats.Retried.Add(1)
	_ = msg.NakWithDelay(time.Second)
}
