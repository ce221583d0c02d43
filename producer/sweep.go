package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// requestSweep asks the sweeper for a full sweep as soon as it can.
func (p *Producer) requestSweep() {
	select {
	case p.sweepNow <- struct{}{}:
	default:
	}
}

// sweepLoop sweeps every SweepInterval, and fully when asked, until ctx ends.
func (p *Producer) sweepLoop(ctx context.Context) {
	if p.cfg.DisableChangeStreams {
		p.requestSweep()
	}
	ticker := time.NewTicker(p.cfg.SweepInterval)
	defer ticker.Stop()
	for {
		stall := p.cfg.SweepStall
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-p.sweepNow:
			stall = 0
		}
		n, err := p.Sweep(ctx, stall)
		if err != nil && ctx.Err() == nil {
			p.log.Warn().Err(err).Msg("sweep failed; trying again at the next interval")
		}
		if n > 0 && !p.cfg.DisableChangeStreams && stall > 0 {
			p.log.Warn().Int("events", n).Dur("stalled_for", stall).Msg("sweeper republished events that made no progress")
		}
		if err := p.retire(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn().Err(err).Msg("deleting succeeded events past retention")
		}
	}
}

// sweepFilter selects events that need work and made none for stall:
// failed events due before the cutoff, and new or errored (or malformed)
// events last touched before it. An event the application inserted bare has
// no updatedAt: its createdAt counts, or else the time in its ObjectID; an
// event with neither is always swept (JetStream drops the duplicates).
func sweepFilter(now time.Time, stall time.Duration) bson.D {
	cutoff := now.Add(-stall)
	notSuccessOrFailed := bson.E{Key: event.FieldState, Value: bson.D{{Key: "$nin", Value: bson.A{event.StateSuccess, event.StateFailed}}}}
	missing := func(field string) bson.E {
		return bson.E{Key: field, Value: bson.D{{Key: "$exists", Value: false}}}
	}
	before := func(field string, t any) bson.E {
		return bson.E{Key: field, Value: bson.D{{Key: "$lte", Value: t}}}
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: event.FieldState, Value: event.StateFailed}, before(event.FieldNextAttemptAt, cutoff)},
		bson.D{notSuccessOrFailed, before(event.FieldUpdatedAt, cutoff)},
		bson.D{notSuccessOrFailed, missing(event.FieldUpdatedAt), before(event.FieldCreatedAt, cutoff)},
		bson.D{notSuccessOrFailed, missing(event.FieldUpdatedAt), missing(event.FieldCreatedAt),
			before(event.FieldID, bson.NewObjectIDFromTimestamp(cutoff))},
		bson.D{notSuccessOrFailed, missing(event.FieldUpdatedAt), missing(event.FieldCreatedAt),
			{Key: event.FieldID, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "objectId"}}}}}},
	}}}
}

// Sweep publishes again every event that needs work and has made no
// progress for stall, page by page in _id order, and waits for JetStream's
// acks. JetStream drops the republished ones still in its duplicate window.
// It returns how many it published. Pages advance by _id with $gt, which
// compares values of one BSON type: a collection mixing _id types is swept
// for the type of its first page.
func (p *Producer) Sweep(ctx context.Context, stall time.Duration) (int, error) {
	filter := sweepFilter(p.cfg.Now(), stall)
	total := 0
	var after bson.RawValue
	for ctx.Err() == nil {
		f := filter
		if after.Type != 0 {
			f = bson.D{{Key: "$and", Value: bson.A{filter, bson.D{{Key: event.FieldID, Value: bson.D{{Key: "$gt", Value: after}}}}}}}
		}
		docs, err := p.events.Find(ctx, f, store.FindOptions{Sort: bson.D{{Key: event.FieldID, Value: 1}}, Limit: int64(p.cfg.SweepBatch)})
		if err != nil {
			return total, fmt.Errorf("finding events to sweep: %w", err)
		}
		futs := make([]jetstream.PubAckFuture, 0, len(docs))
		for _, doc := range docs {
			after = doc.Lookup(event.FieldID)
			msg, err := p.route(doc)
			if err != nil || msg == nil {
				continue
			}
			fut, err := p.js.PublishMsgAsync(msg)
			if err != nil {
				return total, fmt.Errorf("sweeping %s: %w", msg.Header.Get("Nats-Msg-Id"), err)
			}
			futs = append(futs, fut)
		}
		for _, fut := range futs {
			select {
			case ack := <-fut.Ok():
				if !ack.Duplicate {
					total++
					p.stats.Swept.Add(1)
				}
			case err := <-fut.Err():
				return total, fmt.Errorf("sweep publish of %s not acknowledged: %w", fut.Msg().Header.Get("Nats-Msg-Id"), err)
			case <-ctx.Done():
				return total, ctx.Err() // the next start sweeps again
			}
		}
		if len(docs) < p.cfg.SweepBatch {
			return total, nil
		}
	}
	return total, ctx.Err()
}

// retire deletes succeeded events older than the retention.
func (p *Producer) retire(ctx context.Context) error {
	if p.cfg.Retention <= 0 {
		return nil
	}
	n, err := p.events.DeleteMany(ctx, bson.D{
		{Key: event.FieldState, Value: event.StateSuccess},
		{Key: event.FieldUpdatedAt, Value: bson.D{{Key: "$lt", Value: p.cfg.Now().Add(-p.cfg.Retention)}}},
	})
	p.stats.Retired.Add(n)
	return err
}
