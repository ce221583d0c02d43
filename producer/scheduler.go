package producer

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
)

// maxSchedulerSleep bounds how long the scheduler sleeps without looking:
// a due time it was not told about (a change it missed) is found by then.
const maxSchedulerSleep = 30 * time.Second

// Scheduler publishes each failed event when it comes due. Waiting events
// are not in NATS at all: a retry an hour away holds no consumer, no slot
// and no ack-pending entry, and delays nothing else. The schedule is the
// events collection itself, read in due order from an index: nothing is
// lost when the producer restarts, and an application that moves an
// event's nextAttemptAt moves its retry.
//
// It keeps a cursor: every event due up to it was published. The relay
// tells it of each failed event that is not due yet (Wake), so it sleeps
// until the earliest due time it knows. A failed event the relay sees
// already due, the relay publishes itself.
type Scheduler struct {
	cfg   SchedulerConfig
	log   zerolog.Logger
	store *eventstore.Store
	pub   *publisher
	now   func() time.Time

	mu       sync.Mutex
	earliest time.Time // the earliest due time told by Wake since the last look
	wake     chan struct{}
	beat     *health.Loop
}

func newScheduler(cfg SchedulerConfig, log zerolog.Logger, st *eventstore.Store, pub *publisher, now func() time.Time) *Scheduler {
	return &Scheduler{cfg: cfg, log: log, store: st, pub: pub, now: now, wake: make(chan struct{}, 1)}
}

// Wake tells the scheduler of a failed event due at due.
func (s *Scheduler) Wake(due time.Time) {
	s.mu.Lock()
	if s.earliest.IsZero() || due.Before(s.earliest) {
		s.earliest = due
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeEarliest returns and clears the earliest due time told by Wake.
func (s *Scheduler) takeEarliest() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.earliest
	s.earliest = time.Time{}
	return t
}

// Run publishes due events until ctx ends. It starts with the cursor at
// the beginning: every failed event already due is published once.
func (s *Scheduler) Run(ctx context.Context) error {
	var cur eventstore.Cursor
	timer := time.NewTimer(0) // look at once
	defer timer.Stop()
	var deadline time.Time // when the timer fires
	s.beat = s.pub.cfg.Health.Loop("producer scheduler", maxSchedulerSleep+stuckAfter)
	defer s.beat.Done()
	for {
		s.beat.Beat()
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			// Told of a due time: sleep less if it is earlier, no query.
			if told := s.takeEarliest(); !told.IsZero() {
				cur = rewind(cur, told)
				if told.Before(deadline) {
					deadline = told // Reset discards a pending fire (Go 1.23 timers)
					timer.Reset(max(told.Sub(s.now()), 0))
				}
			}
			continue
		case <-timer.C:
		}
		if told := s.takeEarliest(); !told.IsZero() {
			cur = rewind(cur, told)
		}
		next, err := s.publishDue(ctx, &cur)
		if ctx.Err() != nil {
			return nil
		}
		deadline = s.now().Add(maxSchedulerSleep)
		if err != nil {
			s.log.Warn().Err(err).Msg("publishing due events failed; trying again")
			deadline = s.now().Add(time.Second)
		} else if !next.IsZero() && next.Before(deadline) {
			deadline = next
		}
		timer.Reset(max(deadline.Sub(s.now()), 0))
	}
}

// rewind moves the cursor back to due, when due is not after it: an event
// written after the cursor passed its due time (transitions finish out of
// their due times' order) would never be found after it. What comes again
// is published under the same message id, which JetStream drops.
func rewind(cur eventstore.Cursor, due time.Time) eventstore.Cursor {
	if due.After(cur.After) {
		return cur
	}
	return eventstore.Cursor{After: due.Truncate(time.Millisecond).Add(-time.Millisecond)}
}

// publishDue publishes the events due now after the cursor, page by page,
// advances the cursor past them, and returns the due time of the next
// event (zero: none).
func (s *Scheduler) publishDue(ctx context.Context, cur *eventstore.Cursor) (time.Time, error) {
	for {
		s.beat.Beat()
		docs, _, err := s.store.DueAfter(ctx, *cur, s.cfg.Batch)
		if err != nil {
			return time.Time{}, err
		}
		now := s.now()
		var due []bson.Raw
		var next time.Time
		for _, doc := range docs {
			ev, _ := s.store.Parse(doc)
			if ev.NextAttemptAt.After(now) {
				next = ev.NextAttemptAt
				break
			}
			due = append(due, doc)
		}
		if err := s.publish(ctx, due, now); err != nil {
			return time.Time{}, err
		}
		*cur = cur.Advance(due, event.FieldNextAttemptAt)
		if !next.IsZero() || len(docs) < s.cfg.Batch {
			return next, nil
		}
	}
}

// publish publishes due events and waits for their acks.
func (s *Scheduler) publish(ctx context.Context, docs []bson.Raw, now time.Time) error {
	type inFlight struct {
		r   routed
		fut jetstream.PubAckFuture
	}
	var out []inFlight
	for _, doc := range docs {
		r := s.pub.route(doc, messaging.Stamp{}, now)
		fut, err := s.pub.publishAsync(ctx, &r)
		if err != nil {
			return err
		}
		if fut != nil {
			out = append(out, inFlight{r, fut})
		}
	}
	for _, f := range out {
		if err := s.pub.acked(ctx, f.r, f.fut); err != nil {
			return err
		}
		s.pub.stats.Scheduled.Add(1)
		s.pub.cfg.Metrics.Scheduled()
	}
	return nil
}
