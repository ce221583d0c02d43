package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// publishTimeout bounds the wait for JetStream's ack of one publish.
const publishTimeout = 10 * time.Second

// changeMatch selects the changes that may need work: inserts, updates and
// replaces of events that have not succeeded. $nin also lets through a
// missing state (a new event) and a malformed one, which must reach errors.
var changeMatch = bson.D{
	{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInsert, store.OpUpdate, store.OpReplace}}}},
	{Key: "fullDocument." + event.FieldState, Value: bson.D{{Key: "$nin", Value: bson.A{event.StateSuccess}}}},
}

// pending is a change whose publish awaits JetStream's ack. fut is nil when
// the change published nothing.
type pending struct {
	token bson.Raw
	fut   jetstream.PubAckFuture
}

// relay runs one change stream from the saved resume token until ctx ends
// or something fails. A goroutine collects the acks in change order and
// saves the token of the newest change whose publishes (and all before it)
// JetStream acknowledged, at most once per CheckpointInterval.
func (p *Producer) relay(ctx context.Context) error {
	token, err := p.loadToken(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cs, err := p.events.Watch(ctx, store.WatchOptions{Match: changeMatch, ResumeAfter: token})
	if err != nil {
		return fmt.Errorf("opening change stream: %w", err)
	}
	defer cs.Close(context.WithoutCancel(ctx))
	p.markReady()
	if token == nil {
		// Nothing says what happened before this stream: events inserted
		// before the first start, or while the history was lost.
		p.requestSweep()
	}

	queue := make(chan pending, p.cfg.MaxInFlight)
	acked := make(chan error, 1)
	go func() { acked <- p.collectAcks(ctx, queue, cancel) }()

	err = p.read(ctx, cs, queue)
	close(queue)
	if ackErr := <-acked; ackErr != nil {
		return ackErr
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// read publishes each change and queues it for collectAcks.
func (p *Producer) read(ctx context.Context, cs store.ChangeStream, queue chan<- pending) error {
	for {
		ch, err := cs.Next(ctx)
		if err != nil {
			return fmt.Errorf("reading change stream: %w", err)
		}
		pd := pending{token: ch.Token}
		if ch.Doc != nil {
			msg, err := p.route(ch.Doc)
			if err != nil {
				p.log.Warn().Err(err).Msg("skipping a change that cannot be routed")
			} else if msg != nil {
				pd.fut, err = p.js.PublishMsgAsync(msg)
				if err != nil {
					return fmt.Errorf("publishing %s: %w", msg.Header.Get("Nats-Msg-Id"), err)
				}
				p.log.Debug().Str("subject", msg.Subject).Str("msg_id", msg.Header.Get("Nats-Msg-Id")).Msg("published")
			}
		}
		select {
		case queue <- pd:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// collectAcks waits for each publish in order and checkpoints. After a
// failed publish it stops advancing the token and cancels the relay, which
// then resumes from the last saved token: the failed change and those after
// it are published again (and deduplicated by JetStream where they landed).
func (p *Producer) collectAcks(ctx context.Context, queue <-chan pending, cancel context.CancelCauseFunc) error {
	var (
		last     bson.Raw
		saved    bson.Raw
		lastSave = time.Now()
		failed   error
		saveCtx  = context.WithoutCancel(ctx)
		flush    = func() error {
			if last == nil || bytesEqual(last, saved) {
				return nil
			}
			if err := p.saveToken(saveCtx, last); err != nil {
				return err
			}
			saved, lastSave = last, time.Now()
			return nil
		}
	)
	ticker := time.NewTicker(p.cfg.CheckpointInterval)
	defer ticker.Stop()
	for {
		select {
		case pd, ok := <-queue:
			if !ok {
				if failed != nil {
					return failed
				}
				return flush()
			}
			if failed != nil {
				continue // drain; the relay is stopping
			}
			if pd.fut != nil {
				select {
				case ack := <-pd.fut.Ok():
					p.stats.Published.Add(1)
					if ack.Duplicate {
						p.stats.Duplicates.Add(1)
					}
				case err := <-pd.fut.Err():
					failed = fmt.Errorf("publish of %s not acknowledged: %w", pd.fut.Msg().Header.Get("Nats-Msg-Id"), err)
					cancel(failed)
					continue
				}
			}
			last = pd.token
			if time.Since(lastSave) >= p.cfg.CheckpointInterval {
				if err := flush(); err != nil {
					failed = err
					cancel(err)
				}
			}
		case <-ticker.C:
			if failed == nil {
				if err := flush(); err != nil {
					failed = err
					cancel(err)
				}
			}
		}
	}
}

func bytesEqual(a, b bson.Raw) bool { return string(a) == string(b) }
