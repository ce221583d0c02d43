package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// publishTimeout bounds the wait for JetStream's ack of one publish.
const publishTimeout = 10 * time.Second

// Relay publishes each change of the events collection that needs work,
// in change order, and saves the change stream's resume token once
// JetStream acknowledged everything before it (outbox relay). A restart
// resumes after the saved token; the changes between it and the crash are
// published again and dropped by JetStream's deduplication.
type Relay struct {
	cfg   RelayConfig
	log   zerolog.Logger
	store *eventstore.Store
	pub   *publisher
	now   func() time.Time
	// checkpoint names the saved resume token.
	checkpoint string
	// fullSweep asks for a sweep of everything needing work: the relay
	// does not know what happened before its stream (first start, history
	// lost, collection dropped).
	fullSweep func(before time.Time)

	// fence is the leadership whose epoch the checkpoints are written
	// under; lost ends the leadership's term when the fence fails.
	fence *eventstore.Leadership
	lost  context.CancelCauseFunc
	// drain bounds the wait for publishes in flight at shutdown.
	drain time.Duration

	ready     chan struct{}
	readyOnce sync.Once
	beat      *health.Loop
}

// Ready is closed once the relay watches the collection: a change committed
// after that is relayed.
func (r *Relay) Ready() <-chan struct{} { return r.ready }

func (r *Relay) markReady() { r.readyOnce.Do(func() { close(r.ready) }) }

// Run relays until ctx ends, restarting with backoff after errors: from
// the last checkpoint, or from the present (with a full sweep) when the
// history holding the checkpoint is lost or the collection was dropped. On
// a server without change streams it returns ErrNoChangeStreams.
func (r *Relay) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, 10*time.Second, 0
	r.beat = r.pub.cfg.Health.Loop("producer relay", stuckAfter+r.cfg.CheckpointInterval)
	defer r.beat.Done()
	for ctx.Err() == nil {
		r.beat.Beat()
		started := time.Now()
		err := r.relay(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, eventstore.ErrLeaseLost) {
			r.lost(fmt.Errorf("%w: its checkpoint was fenced off", errLeadershipLost))
			return nil
		}
		if errors.Is(err, store.ErrNoChangeStreams) {
			return fmt.Errorf("%w: %w", ErrNoChangeStreams, err)
		}
		r.pub.stats.Restarts.Add(1)
		if errors.Is(err, store.ErrHistoryLost) || errors.Is(err, errInvalidated) {
			r.log.Warn().Err(err).Msg("restarting the change stream from the present and sweeping every event that needs work")
			if err := r.saveToken(context.WithoutCancel(ctx), nil); err != nil {
				r.log.Warn().Err(err).Msg("clearing the resume token")
			}
			continue // relay sweeps once its new stream is open
		}
		if time.Since(started) > time.Minute {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		r.log.Warn().Err(err).Dur("retry_in", wait).Msg("change stream relay failed; resuming from the last checkpoint")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

// saveToken saves the resume token, fenced by the leadership.
func (r *Relay) saveToken(ctx context.Context, token bson.Raw) error {
	if r.fence == nil {
		return r.store.SaveToken(ctx, r.checkpoint, token, r.now())
	}
	return r.store.SaveTokenAsLeader(ctx, r.fence, token, r.now())
}

// drainContext is a context that ends drain after ctx ends: the work in
// flight when a component stops gets that long to finish.
func drainContext(ctx context.Context, drain time.Duration) context.Context {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	context.AfterFunc(ctx, func() { time.AfterFunc(drain, cancel) })
	return dctx
}

// ErrNoChangeStreams: the server has no change streams, so the relay
// cannot run. Run the producer with Config.DisableChangeStreams
// (-disable-change-streams): its sweeper then publishes new events.
var ErrNoChangeStreams = errors.New("the MongoDB server does not support change streams (a standalone mongod, or a server without $changeStream): " +
	"run the producer with -disable-change-streams (producer.Config.DisableChangeStreams), and its sweeper publishes new events instead")

// errInvalidated: the stream ended because the collection was dropped or
// renamed; it cannot resume.
var errInvalidated = errors.New("the events collection was dropped or renamed")

// pending is a change whose publish awaits JetStream's ack. fut is nil
// when the change published nothing.
type pending struct {
	token bson.Raw
	r     routed
	fut   jetstream.PubAckFuture
}

// relay runs one change stream from the saved resume token until ctx ends
// or something fails. A goroutine collects the acks in change order and
// saves the token of the newest change whose publishes (and all before it)
// JetStream acknowledged, at most once per CheckpointInterval.
func (r *Relay) relay(ctx context.Context) error {
	token, err := r.store.LoadToken(ctx, r.checkpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cs, err := r.store.Watch(ctx, token)
	if err != nil {
		return fmt.Errorf("opening change stream: %w", err)
	}
	// The stream delivers what commits from here on; the sweep covers what
	// was inserted or touched before (an event inserted in between may be
	// published by both: a duplicate the consumers recognise).
	opened := r.now()
	defer cs.Close(context.WithoutCancel(ctx))
	r.markReady()
	if token == nil {
		r.pub.sweptBefore.Store(opened.UnixNano())
		r.fullSweep(opened)
	}
	queue := make(chan pending, r.cfg.MaxInFlight)
	acked := make(chan error, 1)
	go func() { acked <- r.collectAcks(ctx, queue, cancel) }()
	err = r.read(ctx, cs, queue)
	close(queue)
	if ackErr := <-acked; ackErr != nil {
		return ackErr
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// read publishes each change and queues it for collectAcks. When no change
// came for a while it queues the stream's resume token alone: it moves the
// checkpoint past the changes the $match filtered out, so a restart after a
// quiet spell does not need history the oplog may have dropped.
func (r *Relay) read(ctx context.Context, cs store.ChangeStream, queue chan<- pending) error {
	var queued bson.Raw
	for {
		ch, ok, err := cs.TryNext(ctx)
		if err != nil {
			return fmt.Errorf("reading change stream: %w", err)
		}
		if !ok {
			if token := cs.ResumeToken(); token != nil && !bytes.Equal(token, queued) {
				queued = token
				select {
				case queue <- pending{token: token}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			continue
		}
		r.pub.stats.Changes.Add(1)
		r.pub.cfg.Metrics.ChangeSeen(ch.ClusterTime)
		switch ch.Op {
		case store.OpInvalidate, "drop", "rename", "dropDatabase":
			return errInvalidated
		}
		pd := pending{token: ch.Token}
		queued = ch.Token
		if ch.Doc != nil {
			pd.r = r.pub.route(ch.Doc, messaging.Stamp{Change: ch.ClusterTime}, r.now())
			pd.fut, err = r.pub.publishAsync(ctx, &pd.r)
			if err != nil {
				return err
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
func (r *Relay) collectAcks(ctx context.Context, queue <-chan pending, cancel context.CancelCauseFunc) error {
	var (
		last     bson.Raw
		saved    bson.Raw
		lastSave = time.Now()
		failed   error
		saveCtx  = drainContext(ctx, r.drain)
		flush    = func() error {
			if last == nil || string(last) == string(saved) {
				return nil
			}
			if err := r.saveToken(saveCtx, last); err != nil {
				return err
			}
			r.pub.stats.Checkpoint.Add(1)
			r.pub.cfg.Metrics.Checkpointed()
			saved, lastSave = last, time.Now()
			return nil
		}
		fail = func(err error) {
			failed = err
			cancel(err)
		}
	)
	ticker := time.NewTicker(r.cfg.CheckpointInterval)
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
				if err := r.pub.acked(saveCtx, pd.r, pd.fut); err != nil {
					fail(err)
					continue
				}
			}
			last = pd.token
			if time.Since(lastSave) >= r.cfg.CheckpointInterval {
				if err := flush(); err != nil {
					fail(err)
				}
			}
		case <-ticker.C:
			r.beat.Beat()
			if failed == nil {
				if err := flush(); err != nil {
					fail(err)
				}
			}
		}
	}
}
