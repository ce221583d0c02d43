package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// Producer relays changes of the events collection to JetStream.
type Producer struct {
	cfg         Config
	log         zerolog.Logger
	events      store.Collection
	checkpoints store.Collection
	js          jetstream.JetStream
	maxPayload  int

	sweepNow  chan struct{} // asks the sweeper for a full sweep (history lost)
	ready     chan struct{} // closed once the first change stream is open
	readyOnce sync.Once
	stats     Stats
}

// Stats count what the producer did since it started.
type Stats struct {
	Published  atomic.Int64 // acknowledged by JetStream, duplicates included
	Duplicates atomic.Int64 // acknowledged as duplicates (already in the stream)
	Rejected   atomic.Int64 // malformed or oversized documents sent to the DLQ
	Swept      atomic.Int64 // republished by the sweeper
	Restarts   atomic.Int64 // change stream restarts after an error
	Checkpoint atomic.Int64 // resume tokens saved
	Retired    atomic.Int64 // succeeded events deleted by retention
}

// New builds a producer on db and the NATS connection nc.
func New(cfg Config, db store.Database, nc *nats.Conn) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// The relay keeps at most MaxInFlight futures and a sweep one page: JetStream's own
	// window is sized so a publish never stalls on it.
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxInFlight+cfg.SweepBatch+2),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	return &Producer{
		cfg:         cfg,
		log:         cfg.Logger.With().Str("component", "producer").Logger(),
		events:      db.Collection(cfg.Events),
		checkpoints: db.Collection(cfg.Checkpoints),
		js:          js,
		maxPayload:  int(nc.MaxPayload()),
		sweepNow:    make(chan struct{}, 1),
		ready:       make(chan struct{}),
	}, nil
}

// Stats returns the producer's counters.
func (p *Producer) Stats() *Stats { return &p.stats }

// Ready is closed once the producer watches the collection: a change
// committed after that is relayed by the change stream rather than found by
// a sweep. Without change streams it is closed when Run starts.
func (p *Producer) Ready() <-chan struct{} { return p.ready }

func (p *Producer) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// Setup creates the streams and the sweeper's indexes. Run calls it; it is
// exported for tools that need the streams before the producer runs.
func (p *Producer) Setup(ctx context.Context) error {
	if err := messaging.EnsureStreams(ctx, p.js, p.cfg.Names, p.cfg.Streams); err != nil {
		return err
	}
	return p.events.EnsureIndexes(ctx, []store.Index{
		{Name: "retrigger_state_updated", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldUpdatedAt, Value: 1}}},
		{Name: "retrigger_state_next", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldNextAttemptAt, Value: 1}}},
	})
}

// Run relays and sweeps until ctx ends, then waits for the publishes in
// flight and saves the last acknowledged resume token.
func (p *Producer) Run(ctx context.Context) error {
	if err := p.Setup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.sweepLoop(ctx)
	}()
	if p.cfg.DisableChangeStreams {
		p.markReady()
	} else {
		p.relayLoop(ctx)
	}
	wg.Wait()
	return nil
}

// relayLoop keeps a change stream relay running, restarting it with backoff
// after transient errors and from the present after the history was lost.
func (p *Producer) relayLoop(ctx context.Context) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	bo.MaxElapsedTime = 0
	for ctx.Err() == nil {
		started := time.Now()
		err := p.relay(ctx)
		if ctx.Err() != nil {
			return
		}
		p.stats.Restarts.Add(1)
		if errors.Is(err, store.ErrHistoryLost) {
			p.log.Warn().Err(err).Msg("change stream history lost: restarting from the present and sweeping every event that needs work")
			if err := p.saveToken(context.WithoutCancel(ctx), nil); err != nil {
				p.log.Warn().Err(err).Msg("clearing the lost resume token")
			}
			continue // relay sweeps once its new stream is open
		}
		if time.Since(started) > time.Minute {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		p.log.Warn().Err(err).Dur("retry_in", wait).Msg("change stream relay failed; resuming from the last checkpoint")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
