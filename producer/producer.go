package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// Producer is retrigger's only publisher: it runs the relay, the
// scheduler, the sweeper and retention on one events collection.
type Producer struct {
	cfg   Config
	log   zerolog.Logger
	store *eventstore.Store
	js    jetstream.JetStream
	stats Stats

	Relay     *Relay
	Scheduler *Scheduler
	Sweeper   *Sweeper
	Retention *Retention

	ready    chan struct{}
	warnedMu sync.Mutex
	warned   map[string]time.Time // unserved types, when last warned of
	unserved map[string]time.Time // unserved types, since when
}

// New builds a producer on db and the NATS connection nc.
func New(cfg Config, db store.Database, nc *nats.Conn) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// The relay keeps at most MaxInFlight futures and a sweep or a
	// schedule one page each: JetStream's own window is sized so a
	// publish never stalls on it.
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.Relay.MaxInFlight+cfg.Sweeper.Batch+cfg.Scheduler.Batch+2),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	log := cfg.Logger.With().Str("component", "producer").Logger()
	st := eventstore.New(db, cfg.Store)
	p := &Producer{cfg: cfg, log: log, store: st, js: js, ready: make(chan struct{}), warned: map[string]time.Time{}, unserved: map[string]time.Time{}}
	pub := &publisher{cfg: cfg, log: log, store: st, js: js, stats: &p.stats, maxPayload: int(nc.MaxPayload())}
	pub.ensureStreams = func(ctx context.Context) error {
		_, err := messaging.EnsureStreams(ctx, js, cfg.Names, cfg.Streams, true)
		return err
	}
	p.Scheduler = newScheduler(cfg.Scheduler, log.With().Str("service", "scheduler").Logger(), st, pub, cfg.Now)
	pub.schedule = p.Scheduler.Wake
	p.Sweeper = newSweeper(cfg.Sweeper, log.With().Str("service", "sweeper").Logger(), st, pub, cfg.Now, cfg.DisableChangeStreams)
	p.Sweeper.after = p.warnUnserved
	p.Relay = &Relay{cfg: cfg.Relay, log: log.With().Str("service", "relay").Logger(), store: st, pub: pub, now: cfg.Now,
		checkpoint: "producer:" + cfg.Store.Events, fullSweep: p.Sweeper.SweepAll, ready: make(chan struct{})}
	p.Retention = &Retention{cfg: cfg.Retention, log: log.With().Str("service", "retention").Logger(), store: st, stats: &p.stats, now: cfg.Now, loops: cfg.Health}
	cfg.Health.Check("producer", p.checkReady)
	return p, nil
}

// Stats returns the producer's counters.
func (p *Producer) Stats() *Stats { return &p.stats }

// Store is the event store the producer works on.
func (p *Producer) Store() *eventstore.Store { return p.store }

// Ready is closed once the producer watches the collection (or, without
// change streams, once it runs): a change committed after that is relayed
// rather than found by a sweep.
func (p *Producer) Ready() <-chan struct{} { return p.ready }

// Setup creates the streams, or brings them to this configuration, and
// the indexes. Run calls it; it is exported for tools that need the
// streams before the producer runs.
func (p *Producer) Setup(ctx context.Context) error {
	changed, err := messaging.EnsureStreams(ctx, p.js, p.cfg.Names, p.cfg.Streams, true)
	for _, c := range changed {
		p.log.Info().Msg(c)
	}
	if err != nil {
		return err
	}
	return p.store.EnsureIndexes(ctx)
}

// Run sets up, then relays, schedules, sweeps and retires until ctx ends,
// and then waits for the publishes in flight and saves the last
// acknowledged resume token. While NATS or MongoDB cannot be reached at
// start it waits, saying so.
func (p *Producer) Run(ctx context.Context) error {
	if err := p.setupWithRetry(ctx); err != nil {
		return err
	}
	p.cfg.Metrics.Leader(true) // one producer per deployment, until the leader lease
	defer p.cfg.Metrics.Leader(false)
	services := []interface{ Run(context.Context) error }{p.Scheduler, p.Sweeper, p.Retention}
	if p.cfg.DisableChangeStreams {
		close(p.ready)
	} else {
		services = append(services, p.Relay)
		go func() {
			select {
			case <-p.Relay.Ready():
				close(p.ready)
			case <-ctx.Done():
			}
		}()
	}
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// setupWithRetry runs Setup until it succeeds or ctx ends, with backoff.
func (p *Producer) setupWithRetry(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 200*time.Millisecond, 5*time.Second, 0
	for {
		err := p.Setup(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		p.log.Warn().Err(err).Dur("retry_in", wait).Msg("setting up the streams and indexes failed; trying again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Warnings of event types no replica handles: after unservedFor (a
// replica starting up, or a rolling deploy, is not worth a warning), then
// every unservedWarnEvery.
const (
	unservedFor       = 30 * time.Second
	unservedWarnEvery = 5 * time.Minute
)

// warnUnserved warns of event types whose events wait in the stream with
// no replica to run them.
func (p *Producer) warnUnserved(ctx context.Context) {
	waiting, err := messaging.Unserved(ctx, p.js, p.cfg.Names)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.log.Debug().Err(err).Msg("looking for event types without a handler")
		}
		return
	}
	types := make([]string, 0, len(waiting))
	for typ := range waiting {
		types = append(types, typ)
	}
	sort.Strings(types)
	p.warnedMu.Lock()
	defer p.warnedMu.Unlock()
	for typ := range p.unserved {
		if _, still := waiting[typ]; !still {
			delete(p.unserved, typ)
		}
	}
	for _, typ := range types {
		since, ok := p.unserved[typ]
		if !ok {
			p.unserved[typ] = time.Now()
			continue
		}
		if time.Since(since) < unservedFor {
			continue
		}
		if last, ok := p.warned[typ]; ok && time.Since(last) < unservedWarnEvery {
			continue
		}
		p.warned[typ] = time.Now()
		p.log.Warn().Str("type", typ).Uint64("waiting", waiting[typ]).
			Msg("events of this type wait: no consumer replica has a handler for it; start one with it")
	}
}
