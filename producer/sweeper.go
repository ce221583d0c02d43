package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
)

// Sweeper republishes events that should be moving but are not: a
// message lost between the producer and the consumers, a change the relay
// never saw (its resume token fell off the history, the collection was
// dropped), a run that never finished (its consumer crashed and its lease
// expired), a dead letter not archived. Without change streams it alone
// publishes new events. It skips every event a live lease holds, so a
// handler running longer than the stall is never run twice at once.
type Sweeper struct {
	cfg     SweeperConfig
	log     zerolog.Logger
	store   *eventstore.Store
	pub     *publisher
	now     func() time.Time
	full    chan time.Time // asks for a sweep of everything needing work from before a time
	after   func(ctx context.Context)
	onlyOne bool // no change streams: sweep everything each time
	beat    *health.Loop
}

func newSweeper(cfg SweeperConfig, log zerolog.Logger, st *eventstore.Store, pub *publisher, now func() time.Time, sweepOnly bool) *Sweeper {
	return &Sweeper{cfg: cfg, log: log, store: st, pub: pub, now: now, full: make(chan time.Time, 1), onlyOne: sweepOnly}
}

// SweepAll asks for a sweep, as soon as possible, of every event that
// needs work and was last touched before before (zero: whenever), stalled
// or not. The relay asks for one when it opens a stream with no history
// behind it: the stream delivers what comes after, the sweep what came
// before.
func (s *Sweeper) SweepAll(before time.Time) {
	select {
	case s.full <- before:
	default:
	}
}

// Run sweeps every Interval, and fully when asked, until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	if s.onlyOne {
		s.SweepAll(time.Time{})
	}
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	s.beat = s.pub.cfg.Health.Loop("producer sweeper", s.cfg.Interval+stuckAfter)
	defer s.beat.Done()
	for {
		s.beat.Beat()
		o := eventstore.SweepOptions{Stall: s.cfg.Stall}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case before := <-s.full:
			o = eventstore.SweepOptions{Before: before}
		}
		stall := o.Stall
		n, err := s.sweep(ctx, o)
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("sweep failed; trying again at the next interval")
		}
		if n > 0 && !s.onlyOne && stall > 0 {
			s.log.Warn().Int("events", n).Dur("stalled_for", stall).Msg("sweeper republished events that made no progress")
		}
		if s.after != nil {
			s.after(ctx)
		}
	}
}

// Sweep publishes again every event that needs work and has shown no
// progress for stall (0: every one), and waits for JetStream's acks. It
// returns how many it published that were not duplicates. An event it
// cannot publish is logged and skipped: one such event never stops a
// sweep.
func (s *Sweeper) Sweep(ctx context.Context, stall time.Duration) (int, error) {
	return s.sweep(ctx, eventstore.SweepOptions{Stall: stall})
}

func (s *Sweeper) sweep(ctx context.Context, o eventstore.SweepOptions) (int, error) {
	now := s.now()
	o.Now, o.LeaseGrace, o.Page = now, s.cfg.LeaseGrace, s.cfg.Batch
	// The events of a type flow control holds (paused, its breaker open)
	// wait where they are: sweeping them would pile duplicates into the
	// stream for as long as the hold lasts.
	held, err := flow.Held(ctx, s.store, now)
	if err != nil {
		return 0, fmt.Errorf("reading which types are held: %w", err)
	}
	o.Held = held
	type inFlight struct {
		r   routed
		fut jetstream.PubAckFuture
	}
	var (
		batch []inFlight
		total int
	)
	wait := func() error {
		for _, f := range batch {
			before := s.pub.stats.Duplicates.Load()
			if err := s.pub.acked(ctx, f.r, f.fut); err != nil {
				if ctx.Err() != nil {
					return ctx.Err() // the next start sweeps again
				}
				s.log.Warn().Err(err).Msg("sweeping an event failed; the next sweep tries again")
				continue
			}
			if s.pub.stats.Duplicates.Load() == before {
				total++
				s.pub.stats.Swept.Add(1)
				s.pub.cfg.Metrics.Swept()
			}
		}
		batch = batch[:0]
		return nil
	}
	err = s.store.Sweep(ctx, o,
		func(doc bson.Raw) error {
			s.beat.Beat()
			r := s.pub.route(doc, messaging.Stamp{}, now)
			fut, err := s.pub.publishAsync(ctx, &r)
			if err != nil {
				s.log.Warn().Err(err).Msg("sweeping an event failed; the next sweep tries again")
				return ctx.Err()
			}
			if fut != nil {
				batch = append(batch, inFlight{r, fut})
			}
			if len(batch) >= s.cfg.Batch {
				return wait()
			}
			return nil
		})
	if werr := wait(); err == nil {
		err = werr
	}
	if err == nil {
		s.pub.stats.Sweeps.Add(1)
	}
	return total, err
}
