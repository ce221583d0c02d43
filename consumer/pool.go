package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/health"
)

// pool runs the handlers of one replica: it pulls from one durable
// consumer per source (an event type, or the DLQ), and runs at most
// concurrency messages at once across all of them.
type pool struct {
	log         zerolog.Logger
	concurrency int
	drain       time.Duration
	ackWait     time.Duration
	sources     []source
	obs         observer
	// gate says what a source's pull loop may do now (flow control);
	// nil: always pull.
	gate func(source string) (flow.Mode, time.Time, <-chan struct{})

	// Handlers run on runners, goroutines that take the next message when
	// they finish one: a message costs neither a goroutine's start nor the
	// growth of a new goroutine's stack. jobs hands a message to an idle
	// runner; quit ends the idle runners when the pool stops.
	jobs    chan job
	quit    chan struct{}
	runners sync.WaitGroup
}

// job is one message to run in a slot it holds.
type job struct {
	ctx      context.Context
	s        *source
	msg      jetstream.Msg
	slots    chan struct{}
	handlers *sync.WaitGroup
	done     chan struct{} // closed when the handler returns; nil: nobody waits
}

// runnerIdle is how long a runner waits for another message before it
// ends.
const runnerIdle = 10 * time.Second

type source struct {
	name   string
	open   func(context.Context) (jetstream.Consumer, error)
	handle func(ctx context.Context, name string, msg jetstream.Msg)
}

func newPool(log zerolog.Logger, concurrency int, drain, ackWait time.Duration) *pool {
	return &pool{log: log, concurrency: concurrency, drain: drain, ackWait: ackWait}
}

func (p *pool) add(name string, open func(context.Context) (jetstream.Consumer, error), handle func(context.Context, string, jetstream.Msg)) {
	p.sources = append(p.sources, source{name: name, open: open, handle: handle})
}

// run pulls until ctx ends. Then it stops pulling, hands messages not yet
// started back (nak) and waits up to drain for the pullers to stop and the
// handlers in flight to finish; after that it cancels the handlers'
// context, which also ends the pullers' wait for their iterators (a drain
// that needs a server that is gone never ends), and waits for both to
// return.
func (p *pool) run(ctx context.Context) error {
	// Handlers run under their own context, cancelled only after the drain
	// deadline, so a shutdown lets in-flight work finish.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	p.jobs, p.quit = make(chan job), make(chan struct{})
	defer func() { close(p.quit); p.runners.Wait() }()
	slots := make(chan struct{}, p.concurrency)
	var handlers, pullers sync.WaitGroup
	for _, s := range p.sources {
		pullers.Add(1)
		go func() {
			defer pullers.Done()
			p.consume(ctx, hctx, s, slots, &handlers)
		}()
	}
	<-ctx.Done()
	deadline := time.NewTimer(p.drain)
	defer deadline.Stop()
	for _, wg := range []*sync.WaitGroup{&pullers, &handlers} {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-deadline.C:
			hcancel()
			<-done
		case <-hctx.Done(): // the deadline passed while waiting for the pullers
			<-done
		}
	}
	return nil
}

// consume pulls from one source until ctx ends, opening its consumer again
// with backoff when that fails or the message iterator fails (the stream or
// consumer was deleted, a long NATS outage): a replica keeps working
// through what it can survive, and says so.
func (p *pool) consume(ctx, hctx context.Context, s source, slots chan struct{}, handlers *sync.WaitGroup) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, 10*time.Second, 0
	for {
		cons, err := s.open(ctx)
		if err == nil {
			err = p.pull(ctx, hctx, s, cons, slots, handlers)
		}
		if ctx.Err() != nil {
			return
		}
		p.obs.failed(s.name)
		wait := bo.NextBackOff()
		p.log.Warn().Err(err).Str("source", s.name).Dur("retry_in", wait).Msg("pulling messages failed; opening the consumer again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// pull delivers the messages of cons to s.handle until ctx ends or the
// pulls fail, pulling as the gate allows: as many as the replica has room
// for, one at a time (each run needs a turn: a rate, a wave, a probe), or
// none while the type is held (paused, its breaker open), with no pull
// request outstanding.
func (p *pool) pull(ctx, hctx context.Context, s source, cons jetstream.Consumer, slots chan struct{}, handlers *sync.WaitGroup) error {
	beat := p.obs.loop(s.name)
	defer beat.Done()
	for ctx.Err() == nil {
		mode, until, changed := flow.Pull, time.Time{}, (<-chan struct{})(nil)
		if p.gate != nil {
			mode, until, changed = p.gate(s.name)
		}
		var err error
		switch mode {
		case flow.Hold:
			beat.Idle() // waiting for a resume is not being stuck
			waitUntil(ctx, until, changed)
		case flow.PullOne:
			err = p.pullOne(ctx, hctx, s, cons, slots, handlers, beat)
		default:
			err = p.iterate(ctx, hctx, s, cons, slots, handlers, beat, changed)
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// waitUntil waits for until (zero: no deadline), changed or ctx.
func waitUntil(ctx context.Context, until time.Time, changed <-chan struct{}) {
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(max(time.Until(until), 0))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
	case <-changed:
	case <-timer:
	}
}

// iterate pulls with a message iterator until ctx ends, the iterator
// fails, or changed says the gate's answer may have changed (it then
// returns nil, and the messages it held come back after the ack wait).
func (p *pool) iterate(ctx, hctx context.Context, s source, cons jetstream.Consumer, slots chan struct{}, handlers *sync.WaitGroup, beat *health.Loop, changed <-chan struct{}) error {
	// A small pull window per source: messages beyond the free slots wait
	// in the server, not here. A 5s expiry (2.5s heartbeats) notices a
	// lost pull request, such as one to a deleted consumer, within 5s.
	window := max(1, p.concurrency/len(p.sources))
	it, err := cons.Messages(jetstream.PullMaxMessages(window), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	if changed != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-changed:
				it.Stop()
			case <-done:
			}
		}()
	}
	// hctx ends when the drain deadline passed: a drain that waits for a
	// server that is gone (Stop cannot end one) ends there.
	next := jetstream.NextContext(hctx)
	for {
		beat.Idle() // waiting for a message is not being stuck
		msg, err := it.Next(next)
		beat.Beat()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			it.Stop()
			return err
		}
		p.dispatch(ctx, hctx, &s, msg, slots, handlers, nil)
	}
}

// pullOne fetches one message, waiting for it at most 2s, and returns
// once its handler says whether it runs (decided): each run of the type
// needs a turn (a rate's, a wave's, the probe), and turns are asked for
// one at a time.
func (p *pool) pullOne(ctx, hctx context.Context, s source, cons jetstream.Consumer, slots chan struct{}, handlers *sync.WaitGroup, beat *health.Loop) error {
	beat.Idle()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		beat.Beat()
		ready, done := make(chan struct{}), make(chan struct{})
		var once sync.Once
		p.dispatch(ctx, context.WithValue(hctx, decidedKey{}, func() { once.Do(func() { close(ready) }) }), &s, msg, slots, handlers, done)
		select {
		case <-ready:
		case <-done:
		case <-ctx.Done():
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// dispatch runs msg in a free slot, on an idle runner or a new one, or
// hands it back when stopping. done, if not nil, is closed when the
// handler returns.
func (p *pool) dispatch(ctx, hctx context.Context, s *source, msg jetstream.Msg, slots chan struct{}, handlers *sync.WaitGroup, done chan struct{}) {
	if !p.acquire(ctx, msg, slots) {
		_ = msg.Nak() // stopping, not started: let another replica take it now
		if done != nil {
			close(done)
		}
		return
	}
	handlers.Add(1)
	j := job{ctx: hctx, s: s, msg: msg, slots: slots, handlers: handlers, done: done}
	select {
	case p.jobs <- j:
	default:
		p.runners.Add(1)
		go p.runner(j)
	}
}

// runner runs j, then the jobs handed to it, until it waited runnerIdle
// for one or the pool stops.
func (p *pool) runner(j job) {
	defer p.runners.Done()
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		j.run()
		idle.Reset(runnerIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

func (j *job) run() {
	defer func() {
		<-j.slots
		j.handlers.Done()
		if j.done != nil {
			close(j.done)
		}
	}()
	j.s.handle(j.ctx, j.s.name, j.msg)
}

type decidedKey struct{}

// decided tells a pull loop that pulls one message at a time (pullOne)
// that the message handled under ctx runs or was handed back, so it may
// pull the next. Safe to call more than once, and under any context.
func decided(ctx context.Context) {
	if f, ok := ctx.Value(decidedKey{}).(func()); ok {
		f()
	}
}

// acquire waits for a free slot, keeping msg alive with progress acks; it
// fails when ctx ends first.
func (p *pool) acquire(ctx context.Context, msg jetstream.Msg, slots chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	tick := time.NewTicker(p.ackWait / 2)
	defer tick.Stop()
	for {
		select {
		case slots <- struct{}{}:
			if ctx.Err() != nil {
				<-slots
				return false
			}
			return true
		case <-tick.C:
			_ = msg.InProgress()
		case <-ctx.Done():
			return false
		}
	}
}
