package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
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
// scheduler, the sweeper and retention on one events collection. Several
// producers may run: one holds the collection's leadership and works, the
// others stand by and take over when its lease runs out.
type Producer struct {
	cfg   Config
	log   zerolog.Logger
	store *eventstore.Store
	js    jetstream.JetStream
	pub   *publisher
	stats Stats

	term      atomic.Pointer[term] // the services of the leadership held now; nil: standing by
	ready     chan struct{}
	readyOnce sync.Once
	warnedMu  sync.Mutex
	warned    map[string]time.Time // unserved types, when last warned of
	unserved  map[string]time.Time // unserved types, since when
}

// term is one leadership of the producer and the services it runs.
type term struct {
	lead      eventstore.Leadership
	relay     *Relay
	scheduler *Scheduler
	sweeper   *Sweeper
	retention *Retention
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
	p.pub = &publisher{cfg: cfg, log: log, store: st, js: js, stats: &p.stats, maxPayload: int(nc.MaxPayload())}
	p.pub.ensureStreams = func(ctx context.Context) error {
		_, err := messaging.EnsureStreams(ctx, js, cfg.Names, cfg.Streams, true)
		return err
	}
	cfg.Health.Check("producer", p.checkReady)
	cfg.Health.Status("producer", p.role)
	return p, nil
}

// newTerm builds the services of one leadership.
func (p *Producer) newTerm(lead eventstore.Leadership, lost context.CancelCauseFunc) *term {
	cfg, log := p.cfg, p.log
	t := &term{lead: lead}
	t.scheduler = newScheduler(cfg.Scheduler, log.With().Str("service", "scheduler").Logger(), p.store, p.pub, cfg.Now)
	t.sweeper = newSweeper(cfg.Sweeper, log.With().Str("service", "sweeper").Logger(), p.store, p.pub, cfg.Now, cfg.DisableChangeStreams)
	t.sweeper.after = p.warnUnserved
	t.relay = &Relay{cfg: cfg.Relay, log: log.With().Str("service", "relay").Logger(), store: p.store, pub: p.pub, now: cfg.Now,
		checkpoint: checkpointName(cfg), fullSweep: t.sweeper.SweepAll, ready: make(chan struct{}),
		fence: &t.lead, lost: lost, drain: cfg.DrainTimeout}
	t.retention = &Retention{cfg: cfg.Retention, log: log.With().Str("service", "retention").Logger(), store: p.store, stats: &p.stats, now: cfg.Now, loops: cfg.Health}
	return t
}

// checkpointName names the checkpoint document of the events collection,
// which also holds its leadership.
func checkpointName(cfg Config) string { return "producer:" + cfg.Store.Events }

// Stats returns the producer's counters.
func (p *Producer) Stats() *Stats { return &p.stats }

// Store is the event store the producer works on.
func (p *Producer) Store() *eventstore.Store { return p.store }

// Leader reports whether this producer holds the leadership now.
func (p *Producer) Leader() bool { return p.term.Load() != nil }

// role is "leader" or "standby", as /readyz shows it.
func (p *Producer) role() string {
	if p.Leader() {
		return "leader"
	}
	return "standby"
}

// Ready is closed once the producer, as leader, watches the collection
// (or, without change streams, runs): a change committed after that is
// relayed rather than found by a sweep. A standby is not ready so.
func (p *Producer) Ready() <-chan struct{} { return p.ready }

// Sweep runs one sweep now (see Sweeper.Sweep); only the leader sweeps.
func (p *Producer) Sweep(ctx context.Context, stall time.Duration) (int, error) {
	t := p.term.Load()
	if t == nil {
		return 0, errors.New("sweeping: this producer stands by")
	}
	return t.sweeper.Sweep(ctx, stall)
}

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
	for _, name := range []string{p.cfg.Names.EventsStream(), p.cfg.Names.DLQStream()} {
		s, err := p.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("looking up stream %s: %w", name, err)
		}
		if clustered, replicas := streamReplicas(s.CachedInfo()); clustered && replicas < RecommendedReplicas {
			p.log.Warn().Str("stream", name).Int("replicas", replicas).Str("cluster", s.CachedInfo().Cluster.Name).
				Msg("this stream has fewer than 3 replicas on a JetStream cluster: losing one server can lose its messages; run the producer with -stream-replicas 3 (and sync_interval: always on the servers)")
		}
	}
	return p.store.EnsureIndexes(ctx)
}

// RecommendedReplicas is the replica count of the streams in production:
// Jepsen's 2025 analysis of NATS 2.12 lost acknowledged messages with a
// single replica (and with lazy fsync).
const RecommendedReplicas = 3

// streamReplicas reports whether a stream lives on a JetStream cluster, and
// its replicas.
func streamReplicas(info *jetstream.StreamInfo) (clustered bool, replicas int) {
	if info == nil {
		return false, 0
	}
	return info.Cluster != nil && info.Cluster.Name != "", info.Config.Replicas
}

// Run sets up, then, while it holds the collection's leadership, relays,
// schedules, sweeps and retires, until ctx ends; then it waits for the
// publishes in flight (at most DrainTimeout), saves the last acknowledged
// resume token and hands the leadership over. While another producer leads
// it stands by; while NATS or MongoDB cannot be reached at start it waits,
// saying so. On a server without change streams it stops and returns
// ErrNoChangeStreams (see Config.DisableChangeStreams).
func (p *Producer) Run(ctx context.Context) error {
	if err := p.setupWithRetry(ctx); err != nil {
		return err
	}
	for ctx.Err() == nil {
		lead, ok := p.awaitLeadership(ctx)
		if !ok {
			return nil
		}
		if err := p.lead(ctx, lead); err != nil {
			return err
		}
	}
	return nil
}

// errLeadershipLost ends a term.
var errLeadershipLost = errors.New("lost the leadership")

// awaitLeadership tries to take the leadership every TTL/3 until it does
// or ctx ends.
func (p *Producer) awaitLeadership(ctx context.Context) (eventstore.Leadership, bool) {
	ttl, name := p.cfg.Leader.TTL, checkpointName(p.cfg)
	var announced string
	for {
		lead, ok, err := p.store.AcquireLeadership(ctx, name, p.cfg.Leader.Owner, p.cfg.Now(), ttl)
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.Warn().Err(err).Msg("taking the leadership failed; trying again")
		case ok:
			p.log.Info().Int64("epoch", lead.Epoch).Msg("leading: relaying, scheduling and sweeping")
			return lead, true
		case lead.Owner != announced:
			announced = lead.Owner
			p.log.Info().Str("leader", lead.Owner).Time("until", lead.Until).Msg("another producer leads; standing by")
		}
		select {
		case <-ctx.Done():
			return eventstore.Leadership{}, false
		case <-time.After(ttl / 3):
		}
	}
}

// lead runs the services of one leadership until ctx ends or the
// leadership is lost, renewing it every TTL/3. It stops working when it
// could not renew for TTL minus a margin for clock differences (TTL/5),
// before a standby may take over. A service that cannot go on (a server
// without change streams) ends the term and the producer: lead hands the
// leadership over and returns its error.
func (p *Producer) lead(ctx context.Context, lead eventstore.Leadership) error {
	tctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	t := p.newTerm(lead, lost)
	p.pub.schedule = t.scheduler.Wake
	p.term.Store(t)
	p.cfg.Metrics.Leader(true)
	defer func() {
		p.term.Store(nil)
		p.cfg.Metrics.Leader(false)
	}()

	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		p.renew(tctx, lead, lost)
	}()
	services := []interface{ Run(context.Context) error }{t.scheduler, t.sweeper, t.retention}
	if p.cfg.DisableChangeStreams {
		p.readyOnce.Do(func() { close(p.ready) })
	} else {
		services = append(services, t.relay)
		go func() {
			select {
			case <-t.relay.Ready():
				p.readyOnce.Do(func() { close(p.ready) })
			case <-tctx.Done():
			}
		}()
	}
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failed   error
	)
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(tctx); err != nil {
				failOnce.Do(func() { failed = err; lost(err) })
			}
		}()
	}
	wg.Wait()
	lost(nil)
	<-renewed
	if ctx.Err() != nil || failed != nil {
		// A clean stop, or one no retry helps: hand over at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.store.ReleaseLeadership(rctx, &lead, p.cfg.Now()); err != nil {
			p.log.Warn().Err(err).Msg("handing the leadership over")
		}
		return failed
	}
	p.log.Warn().Err(context.Cause(tctx)).Msg("lost the leadership; standing by")
	return nil
}

// renew renews the leadership every TTL/3 until ctx ends, and calls lost
// when it was taken over or could not be renewed in time.
func (p *Producer) renew(ctx context.Context, lead eventstore.Leadership, lost context.CancelCauseFunc) {
	ttl := p.cfg.Leader.TTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	last := p.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		now := p.cfg.Now()
		err := p.store.RenewLeadership(rctx, &lead, now, ttl)
		cancel()
		switch {
		case err == nil:
			last = now
		case errors.Is(err, eventstore.ErrLeaseLost):
			lost(fmt.Errorf("%w: another producer took it over", errLeadershipLost))
			return
		case ctx.Err() != nil:
			return
		case p.cfg.Now().Sub(last) >= ttl-ttl/5:
			lost(fmt.Errorf("%w: could not renew it for %s: %w", errLeadershipLost, p.cfg.Now().Sub(last).Round(time.Millisecond), err))
			return
		default:
			p.log.Warn().Err(err).Msg("renewing the leadership failed; trying again")
		}
	}
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
