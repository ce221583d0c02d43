package flow

import (
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/retry"
)

// Reasons an event is held back (retrigger_flow_waits_total's reason).
const (
	WaitPaused   = "paused"   // the type is paused, by hand or by a Retry-After
	WaitBreaker  = "breaker"  // the type's breaker is open
	WaitRate     = "rate"     // the type's rate limit has no turn free
	WaitRecovery = "recovery" // the type recovers, and its wave is full
	WaitKey      = "key"      // the event's key is busy, or an earlier event of it is unfinished
)

// maxRequeue bounds how long a held message is handed back for: a pause
// without an end, or a long one, looks again this often, so a resume takes
// effect within it even for the few messages a replica held.
const maxRequeue = 10 * time.Second

// Options build a Controller.
type Options struct {
	// Types are the event types the replica runs.
	Types []string
	// Owner names the replica in probes, slots and pauses.
	Owner string
	// RunTTL bounds a run that holds a probe or a slot: after it, a
	// replica that died holding one no longer does (the handler timeout
	// plus the ack wait).
	RunTTL time.Duration
	// StoreTimeout bounds each refresh of the shared state (its reads and
	// writes), so that one storage call that never answers does not stop
	// the replica learning of pauses and trips; 0: unbounded.
	StoreTimeout time.Duration
	Now          func() time.Time
	Log          zerolog.Logger
	// Metrics records the breakers, probes and waits; nil: none.
	Metrics *metrics.Metrics
}

// Controller is flow control in one replica. It answers the one question
// the worker asks of each claimed event, Admit: may it run now, and if
// not, until when? It owns the breakers, the pauses, the rate limits and
// the keys of the replica's types, and their shared documents, which it
// reads every Config.Refresh (Run). A type with no limits set pays for
// none of it on its runs: no round trip, no allocation.
type Controller struct {
	st    *eventstore.Store
	cfg   Config
	opts  Options
	log   zerolog.Logger
	types map[string]*gate
	kick  chan struct{}
	ready chan struct{} // closed after the first read of the shared state
	once  sync.Once
}

// gate is one type's flow control in this replica.
type gate struct {
	typ    string
	rules  Breaker
	rate   *Rate
	key    *Key
	limits string // the type's rules as operators read them

	mu             sync.Mutex
	shared         eventstore.FlowState // as last read or written
	local          counts               // runs not yet written to the shared window
	unflushedFails int64
	lastErr        string
	probe          *event.Lease // the probe this replica holds
	probeBusy      bool         // its run is under way
	hold           time.Time    // a local hold: the rate's next turn, a full wave
	holdWhy        string
	retryAfter     time.Time // a partner's Retry-After to write as a pause
	retryWhy       string
	published      bool // the limits were written to the shared document
	changed        chan struct{}
}

// New returns the flow control of a replica running opts.Types; cfg must
// have passed Validate(opts.Types).
func New(st *eventstore.Store, cfg Config, opts Options) *Controller {
	cfg = cfg.WithDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{st: st, cfg: cfg, opts: opts, log: opts.Log, types: map[string]*gate{},
		kick: make(chan struct{}, 1), ready: make(chan struct{})}
	for _, typ := range opts.Types {
		g := &gate{typ: typ, rules: cfg.breakerOf(typ), changed: make(chan struct{})}
		g.local = newCounts(g.rules.Window / windowBuckets)
		if r, ok := cfg.Rates[typ]; ok {
			g.rate = &r
		}
		if k, ok := cfg.Keys[typ]; ok {
			g.key = &k
		}
		parts := []string{"breaker " + g.rules.String()}
		if g.rate != nil {
			parts = append(parts, "rate "+g.rate.String())
		}
		if g.key != nil {
			parts = append(parts, g.key.String())
		}
		g.limits = strings.Join(parts, "; ")
		c.types[typ] = g
	}
	return c
}

// Ready is closed once the replica has read its types' shared state: a
// replica that joins or restarts obeys an open breaker or a pause from
// its first run.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Mode is what a type's pull loop may do.
type Mode int

const (
	Pull    Mode = iota // pull as many messages as the replica has room for
	PullOne             // pull one at a time: each run needs a turn (a rate, a wave, a probe)
	Hold                // pull nothing until the time given, or until changed
)

// Pulling says what the pull loop of typ may do now, without I/O: pull,
// pull one message at a time, or hold until the time given (zero: until
// changed is closed). changed is closed when the answer may have changed.
func (c *Controller) Pulling(typ string) (Mode, time.Time, <-chan struct{}) {
	g := c.types[typ]
	if g == nil {
		return Pull, time.Time{}, nil
	}
	select {
	case <-c.ready:
	default:
		return Hold, time.Time{}, c.ready
	}
	now := c.opts.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if ok, until := paused(&g.shared, now); ok {
		return Hold, until, g.changed
	}
	switch state(&g.shared, g.rules, now) {
	case Open:
		if g.probe != nil && !g.probeBusy {
			return PullOne, time.Time{}, g.changed
		}
		return Hold, g.shared.Breaker.NextProbe, g.changed
	case Recovering:
		if g.hold.After(now) {
			return Hold, g.hold, g.changed
		}
		return PullOne, time.Time{}, g.changed
	}
	if g.hold.After(now) {
		return Hold, g.hold, g.changed
	}
	if g.rate != nil {
		return PullOne, time.Time{}, g.changed
	}
	return Pull, time.Time{}, g.changed
}

// Permit is Admit's answer for one claimed event.
type Permit struct {
	// Run: the event may run now. Otherwise it was parked (its lease given
	// back, the producer leaving it be) and Until says when to look again:
	// hand its message back until then; zero Until means it waits for its
	// key, which wakes it: acknowledge its message.
	Run    bool
	Until  time.Time
	Reason string // why it may not run: WaitPaused, WaitBreaker, ...

	c       *Controller
	g       *gate
	probe   bool
	slot    string // a concurrency slot held: the type's wave, or the key's
	keySlot bool
	token   int64
	key     string
	seq     int64
	ordered bool
}

// Admit answers whether the claimed event c may run now, and if not,
// until when. seq is the event's place in insertion order as its message
// tells it (0: unknown). When it may not, Admit has parked the event.
// A type with no limits set costs no I/O here, unless its breaker is open
// or recovering.
func (c *Controller) Admit(ctx context.Context, cl *eventstore.Claim, seq int64) (Permit, error) {
	g := c.types[cl.Event.Type]
	if g == nil {
		return Permit{Run: true}, nil
	}
	now := c.opts.Now()
	p := Permit{Run: true, c: c, g: g}
	g.mu.Lock()
	why, until := "", time.Time{}
	if ok, end := paused(&g.shared, now); ok {
		why, until = WaitPaused, end
	} else {
		switch state(&g.shared, g.rules, now) {
		case Open:
			if g.probe != nil && !g.probeBusy {
				g.probeBusy, p.probe = true, true
			} else {
				why, until = WaitBreaker, g.shared.Breaker.NextProbe
			}
		case Recovering:
			if g.hold.After(now) {
				why, until = g.holdWhy, g.hold
			} else {
				p.slot = eventstore.FlowID("slot", g.typ)
			}
		default:
			if g.hold.After(now) {
				why, until = g.holdWhy, g.hold
			}
		}
	}
	limit := waveLimit(&g.shared, g.rules, now)
	g.mu.Unlock()
	if why != "" {
		return c.deny(ctx, cl, p, why, until, now)
	}
	if p.slot != "" {
		p.token = rand.Int64()
		ok, err := c.st.AcquireSlot(ctx, p.slot, limit, eventstore.Slot{Owner: c.opts.Owner, Token: p.token, Until: now.Add(c.opts.RunTTL)}, now)
		if err != nil || !ok {
			p.slot = ""
			c.holdFor(g, WaitRecovery, now.Add(200*time.Millisecond))
			return c.deny(ctx, cl, p, WaitRecovery, now.Add(200*time.Millisecond), now, err)
		}
	}
	if g.rate != nil {
		ok, at, err := c.st.TakeRate(ctx, eventstore.FlowID("rate", g.typ), c.opts.Now(), g.rate.interval(), g.rate.tolerance()-rateMargin(g.rate), maxRateWait(g.rate))
		if err != nil || !ok {
			if err == nil {
				c.holdFor(g, WaitRate, at)
			}
			return c.deny(ctx, cl, p, WaitRate, at, now, err)
		}
		// The turn is reserved: wait for it (at most maxRateWait).
		if wait := at.Sub(c.opts.Now()); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return c.deny(ctx, cl, p, WaitRate, now, now, ctx.Err())
			}
		}
	}
	if g.key != nil {
		ok, err := c.admitKey(ctx, cl, &p, seq, now)
		switch {
		case err != nil:
			// Undecided (a storage error, a contended slot): look again
			// soon, not at a wake that may never come.
			return c.deny(ctx, cl, p, WaitKey, now.Add(100*time.Millisecond), now, err)
		case !ok:
			return c.deny(ctx, cl, p, WaitKey, time.Time{}, now)
		}
	}
	return p, nil
}

// admitKey takes the event's key: for an ordered key, no unfinished event
// of it comes first; otherwise a slot of the key is free.
func (c *Controller) admitKey(ctx context.Context, cl *eventstore.Claim, p *Permit, seq int64, now time.Time) (bool, error) {
	k := p.g.key
	val, hash, ok := KeyOf(cl.Doc, k.Path)
	if !ok {
		return true, nil // no key: a key of its own
	}
	p.key, p.ordered = hash, k.Ordered
	p.seq = orderOf(cl.Event.Seq, seq, now)
	limit := k.Concurrency
	if k.Ordered {
		q := eventstore.KeyQuery{Type: p.g.typ, ID: cl.Event.ID, Path: k.Path, Value: val, Key: hash, Seq: p.seq}
		earlier, err := c.st.EarlierOfKey(ctx, q)
		if err != nil || earlier.Found {
			return false, err
		}
		// Its turn by the order; and the key's one slot, so that one run
		// at a time holds whatever the order says (an event's place can
		// move earlier when its insert's message comes after a sweep's).
		limit = 1
	}
	if p.token == 0 {
		p.token = rand.Int64()
	}
	name := eventstore.FlowID("slot", p.g.typ, hash)
	ok, err := c.st.AcquireSlot(ctx, name, limit, eventstore.Slot{Owner: c.opts.Owner, Token: p.token, Until: now.Add(c.opts.RunTTL)}, now)
	if ok {
		p.keySlot = true
	}
	return ok, err
}

// orderOf is an event's place in its key's order: the smallest it was
// given, by its own stamp or its message's; without either, the time it
// is first seen, after every event placed before it.
func orderOf(stamped, fromMsg int64, now time.Time) int64 {
	seq := stamped
	if fromMsg > 0 && (seq == 0 || fromMsg < seq) {
		seq = fromMsg
	}
	if seq == 0 {
		seq = now.Unix()<<32 | 0xffffffff
	}
	return seq
}

// rateMargin is taken off a rate's tolerance: a turn granted at t starts
// its handler a little later (the rest of the admission, a busy CPU), and
// without it two turns an interval apart could start closer. The steady
// rate stays the limit; only the first turn after a quiet spell waits it.
func rateMargin(r *Rate) time.Duration { return min(r.interval()/2, 50*time.Millisecond) }

// maxRateWait is how far ahead a run reserves its rate's turn and waits
// for it, holding its claim and its slot: two turns, at most 2s. Beyond
// it the event is handed back, and the type's pulls hold until then.
func maxRateWait(r *Rate) time.Duration { return min(2*r.interval(), 2*time.Second) }

// holdFor holds the type's pulls in this replica until t.
func (c *Controller) holdFor(g *gate, why string, t time.Time) {
	g.mu.Lock()
	if t.After(g.hold) {
		g.hold, g.holdWhy = t, why
	}
	g.mu.Unlock()
}

// deny parks the claimed event and undoes what the permit took.
func (c *Controller) deny(ctx context.Context, cl *eventstore.Claim, p Permit, why string, until time.Time, now time.Time, errs ...error) (Permit, error) {
	err := errors.Join(errs...)
	if errors.Is(err, eventstore.ErrContended) {
		err = nil // nothing wrong: another replica won the race, look again soon
	}
	p.release(ctx, false)
	c.opts.Metrics.FlowWait(p.g.typ, why)
	wake := why == WaitKey && until.IsZero() // its key wakes it
	if !wake {
		if until.IsZero() || until.Sub(now) > maxRequeue {
			until = now.Add(maxRequeue)
		}
		until = maxTime(until, now.Add(50*time.Millisecond))
	}
	perr := c.st.Park(ctx, cl, now, p.key, p.seq)
	if err == nil && wake {
		// The key may have come free between the look and the park, and
		// its wake found nothing parked: look once more, and wake the
		// key's next event (maybe this one) if so.
		err = c.recheck(ctx, cl, p, now)
	}
	if perr != nil && !errors.Is(perr, eventstore.ErrLeaseLost) {
		err = errors.Join(err, perr)
	}
	return Permit{Until: until, Reason: why}, err
}

func (c *Controller) recheck(ctx context.Context, cl *eventstore.Claim, p Permit, now time.Time) error {
	if p.key == "" {
		return nil
	}
	k := p.g.key
	free := false
	if k.Ordered {
		// The first unfinished event of the key in its order must never
		// stay parked. Now that this event is placed (the park stamped
		// it), look again: the one it waited for may have finished and
		// woken nobody before the park, or be parked itself behind this
		// one, which it saw unplaced (two events that look at each other
		// at once). Unless an earlier event is still unplaced (it looks
		// again once placed, and sees this one), wake the first.
		val, _, _ := KeyOf(cl.Doc, k.Path)
		earlier, err := c.st.EarlierOfKey(ctx, eventstore.KeyQuery{Type: p.g.typ, ID: cl.Event.ID, Path: k.Path, Value: val, Key: p.key, Seq: p.seq})
		if err != nil {
			return err
		}
		free = !earlier.Found || earlier.Placed
	} else {
		name := eventstore.FlowID("slot", p.g.typ, p.key)
		token := rand.Int64()
		ok, err := c.st.AcquireSlot(ctx, name, k.Concurrency, eventstore.Slot{Owner: c.opts.Owner, Token: token, Until: now.Add(c.opts.RunTTL)}, now)
		if errors.Is(err, eventstore.ErrContended) {
			ok, err = true, nil // the others writing it are releasing, or taking: wake the next to look
		}
		if err != nil {
			return err
		}
		if ok {
			free = true
			if err := c.st.ReleaseSlot(ctx, name, token); err != nil && !errors.Is(err, eventstore.ErrContended) {
				return err
			}
		}
	}
	if !free {
		return nil
	}
	_, err := c.st.WakeNext(ctx, p.g.typ, p.key, k.Ordered, now)
	return err
}

// Stamp is the key and the place in its order the event's outcome is
// written with, so the later events of its key find it ("": not keyed).
func (p *Permit) Stamp() (string, int64) { return p.key, p.seq }

// Settle records the result of the permit's run, before its outcome is
// written, and says whether the run spends the event's attempt: a probe
// that failed for its partner does not (the event goes back to wait, as
// if the breaker had held it).
func (p *Permit) Settle(herr error) (spend bool) {
	g, c := p.g, p.c
	if g == nil {
		return true
	}
	counted := retry.CountsTowardBreaker(herr)
	now := c.opts.Now()
	g.mu.Lock()
	var fails int64
	if counted {
		fails = 1
		g.unflushedFails++
		g.lastErr = herr.Error()
	}
	g.local.add(g.local.bucket(now), 1, fails)
	kick := false
	if counted && !g.rules.Off {
		runs, f := g.local.total(g.local.bucket(now))
		kick = runs >= int64(g.rules.MinRuns) && float64(f) >= g.rules.Ratio*float64(runs)
	}
	if d, ok := retry.Throttled(herr); ok && d > 0 {
		if until := now.Add(d); until.After(g.retryAfter) {
			g.retryAfter, g.retryWhy = until, herr.Error()
		}
		kick = true
	}
	g.mu.Unlock()
	if kick {
		c.Kick()
	}
	return !(p.probe && counted)
}

// Release ends the permit after the run's outcome was written (or not):
// it gives back the slots it holds, wakes the next event of its key when
// the event finished (finished: it succeeded or errored) or its slot came
// free, and judges the partner by a probe's result (probe: counted
// failure, success or neither).
func (p *Permit) Release(ctx context.Context, finished bool, herr error) {
	if p.g == nil {
		return
	}
	if p.probe {
		p.c.judgeProbe(ctx, p.g, herr)
		p.probe = false
	}
	p.release(ctx, finished)
}

// Stores says whether Release makes storage calls (so needs a bounded
// context): a probe to judge, a slot to give back, a key to wake. A
// permit of a type with no limits set, of a closed breaker, makes none.
func (p *Permit) Stores() bool {
	return p.g != nil && (p.probe || p.slot != "" || p.key != "")
}

func (p *Permit) release(ctx context.Context, finished bool) {
	g, c := p.g, p.c
	if p.probe { // not run: the probe stays this replica's, free again
		g.mu.Lock()
		g.probeBusy = false
		g.mu.Unlock()
	}
	if p.slot != "" {
		if err := c.st.ReleaseSlot(ctx, p.slot, p.token); err != nil {
			c.log.Debug().Err(err).Str("type", g.typ).Msg("releasing a recovery slot; it ends with its run's bound")
		}
	}
	if p.key == "" {
		return
	}
	wake := false
	if p.keySlot {
		if err := c.st.ReleaseSlot(ctx, eventstore.FlowID("slot", g.typ, p.key), p.token); err != nil {
			c.log.Debug().Err(err).Str("type", g.typ).Msg("releasing a key's slot; it ends with its run's bound")
		}
		wake = true // a woken event that finds the key still busy parks again
	} else if p.ordered {
		wake = finished
	}
	if wake {
		if _, err := c.st.WakeNext(ctx, g.typ, p.key, p.ordered, c.opts.Now()); err != nil {
			c.log.Debug().Err(err).Str("type", g.typ).Msg("waking the next event of a key; the sweeper brings it back after the stall")
		}
	}
}

// judgeProbe writes what a probe's run says of the partner.
func (c *Controller) judgeProbe(ctx context.Context, g *gate, herr error) {
	now := c.opts.Now()
	outcome := "inconclusive"
	switch {
	case herr == nil:
		outcome = "success"
	case retry.CountsTowardBreaker(herr):
		outcome = "failure"
	}
	_, wrote, err := c.update(ctx, g, func(f *eventstore.FlowState) bool {
		if state(f, g.rules, now) != Open {
			return false
		}
		switch outcome {
		case "success":
			recovered(f, g.rules, now)
		case "failure":
			probeFailed(f, g.rules, now, herr.Error())
		default:
			probeInconclusive(f, now)
		}
		return true
	})
	g.mu.Lock()
	g.probe, g.probeBusy = nil, false
	g.mu.Unlock()
	c.opts.Metrics.Probed(g.typ, outcome)
	if err != nil {
		c.log.Warn().Err(err).Str("type", g.typ).Msg("recording a probe's outcome; the probe ends with its bound and another replica probes")
		return
	}
	if outcome == "success" && wrote { // not when an operator's resume closed it first
		c.log.Info().Str("type", g.typ).Int("first_wave", 1).Dur("doubling_every", DefaultWave).
			Msg("breaker: the probe succeeded, the type recovers; its backlog is let out in waves")
	}
	c.signal(g)
}

// Kick asks the refresh loop to look now.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run reads and writes the shared state of the replica's types every
// Config.Refresh until ctx ends: it learns of trips and pauses, writes its
// runs' counts when they hold failures (tripping the breaker when they
// meet its rules), takes the probe when one is due, and ends recoveries.
func (c *Controller) Run(ctx context.Context) error {
	if len(c.types) == 0 {
		c.once.Do(func() { close(c.ready) })
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(c.cfg.Refresh)
	defer tick.Stop()
	for {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if c.opts.StoreTimeout > 0 {
			rctx, cancel = context.WithTimeout(ctx, c.opts.StoreTimeout)
		}
		c.refresh(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-c.kick:
		}
	}
}

func (c *Controller) refresh(ctx context.Context) {
	types := make([]string, 0, len(c.types))
	for t := range c.types {
		types = append(types, t)
	}
	sort.Strings(types)
	states, err := c.st.LoadFlows(ctx, types)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Debug().Err(err).Msg("reading flow control's state; keeping the last one read")
		}
		return
	}
	byType := make(map[string]eventstore.FlowState, len(states))
	for _, f := range states {
		byType[f.Type] = f
	}
	for _, typ := range types {
		g := c.types[typ]
		f, ok := byType[typ]
		if !ok {
			f = eventstore.FlowState{Type: typ}
		}
		c.set(g, f)
		c.maintain(ctx, g)
		c.reap(ctx, g)
	}
	c.once.Do(func() { close(c.ready) })
}

// reap gives the key slots of dead holders back, and wakes the events
// that wait for those keys: nothing else would (a key's waiting events
// are woken by a release).
func (c *Controller) reap(ctx context.Context, g *gate) {
	if g.key == nil {
		return
	}
	now := c.opts.Now()
	keys, err := c.st.ReapSlots(ctx, g.typ, now)
	for _, k := range keys {
		if _, werr := c.st.WakeNext(ctx, g.typ, k, g.key.Ordered, now); werr != nil {
			err = errors.Join(err, werr)
			break
		}
	}
	if err != nil && ctx.Err() == nil {
		c.log.Debug().Err(err).Str("type", g.typ).Msg("giving back the key slots of runs past their bound; trying again at the next refresh")
	}
}

// set takes f as the type's shared state, and wakes the pull loop when
// what it may do changed.
func (c *Controller) set(g *gate, f eventstore.FlowState) {
	now := c.opts.Now()
	g.mu.Lock()
	before, beforePaused := state(&g.shared, g.rules, now), g.shared.Pause
	g.shared = f
	after := state(&f, g.rules, now)
	pausedNow, _ := paused(&f, now)
	changed := before != after || (beforePaused == nil) != (f.Pause == nil) || (f.Pause != nil && beforePaused != nil && !f.Pause.Until.Equal(beforePaused.Until))
	if g.probe != nil && (after != Open || f.Breaker.Probe == nil || f.Breaker.Probe.Token != g.probe.Token) {
		g.probe, changed = nil, true // the probe ended, or another replica took it over
	}
	g.mu.Unlock()
	code := metrics.BreakerClosed
	switch after {
	case Open:
		code = metrics.BreakerOpen
	case Recovering:
		code = metrics.BreakerRecovering
	}
	c.opts.Metrics.FlowState(g.typ, code, pausedNow)
	if changed {
		c.signal(g)
	}
}

// signal wakes whoever waits on the type's changes.
func (c *Controller) signal(g *gate) {
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// maintain writes what this replica owes the type's shared state.
func (c *Controller) maintain(ctx context.Context, g *gate) {
	now := c.opts.Now()
	g.mu.Lock()
	publish := !g.published && (g.shared.Limits != g.limits)
	g.published = true
	// The counts go to the shared window only with a failure among them:
	// a type that only succeeds writes nothing.
	flush, local, fails, lastErr := g.unflushedFails > 0, g.local, g.unflushedFails, g.lastErr
	if flush {
		g.local, g.unflushedFails = newCounts(g.rules.Window/windowBuckets), 0
	}
	retryAfter, retryWhy := g.retryAfter, g.retryWhy
	st := state(&g.shared, g.rules, now)
	probeDue := st == Open && g.probe == nil && !g.shared.Breaker.NextProbe.After(now) &&
		(g.shared.Breaker.Probe == nil || !g.shared.Breaker.Probe.Until.After(now))
	end := g.shared.Breaker.State == Open && st == Closed || g.shared.Breaker.State == Recovering && st == Closed
	g.mu.Unlock()

	if publish {
		c.write(ctx, g, "publishing the type's limits", func(f *eventstore.FlowState) bool {
			if f.Limits == g.limits {
				return false
			}
			f.Limits, f.LimitsBy = g.limits, c.opts.Owner
			return true
		})
	}
	if flush {
		var tripped bool
		var why string
		ok := c.write(ctx, g, "writing the runs' counts", func(f *eventstore.FlowState) bool {
			tripped, why = record(f, g.rules, local, now, lastErr)
			return true
		})
		if !ok { // keep them for the next refresh
			g.mu.Lock()
			g.local.merge(local)
			g.unflushedFails += fails
			g.mu.Unlock()
		} else {
			if tripped {
				c.opts.Metrics.BreakerTripped(g.typ)
				c.log.Warn().Str("type", g.typ).Str("why", why).Dur("first_probe_in", g.rules.Probe).
					Msg("breaker tripped: no event of this type runs, and none spends an attempt, until a probe succeeds")
			}
		}
	}
	if !retryAfter.IsZero() {
		ok := c.write(ctx, g, "pausing the type for a Retry-After", func(f *eventstore.FlowState) bool {
			if p := f.Pause; p != nil && (p.Source != SourceRetryAfter || p.Until.IsZero() || !p.Until.Before(retryAfter)) {
				return false // a longer pause, or an operator's, stands
			}
			f.Pause = &eventstore.Pause{By: c.opts.Owner, At: now, Until: retryAfter, Source: SourceRetryAfter,
				Reason: "the partner asked to retry after " + retryAfter.Sub(now).Round(time.Millisecond).String() + ": " + truncate(retryWhy, 300)}
			return true
		})
		if ok {
			g.mu.Lock()
			if !g.retryAfter.After(retryAfter) {
				g.retryAfter, g.retryWhy = time.Time{}, ""
			}
			g.mu.Unlock()
		}
	}
	if probeDue {
		lease := event.Lease{Owner: c.opts.Owner, Token: rand.Int64(), Until: now.Add(c.opts.RunTTL)}
		var taken bool
		c.write(ctx, g, "taking the probe", func(f *eventstore.FlowState) bool {
			taken = takeProbe(f, g.rules, lease, now)
			return taken
		})
		if taken {
			g.mu.Lock()
			g.probe, g.probeBusy = &lease, false
			g.mu.Unlock()
			c.signal(g)
		}
	}
	if end {
		c.write(ctx, g, "closing the breaker", func(f *eventstore.FlowState) bool {
			if f.Breaker.State == Closed || state(f, g.rules, now) != Closed {
				return false
			}
			closeBreaker(f, now)
			return true
		})
	}
}

// write applies fn to the type's shared state and saves it, over the
// revision it read, reading again and retrying when another replica wrote
// first. It reports whether it wrote.
func (c *Controller) write(ctx context.Context, g *gate, what string, fn func(*eventstore.FlowState) bool) bool {
	_, ok, err := c.update(ctx, g, fn)
	if err != nil && ctx.Err() == nil {
		c.log.Debug().Err(err).Str("type", g.typ).Msg(what + " failed; trying again at the next refresh")
	}
	return ok
}

func (c *Controller) update(ctx context.Context, g *gate, fn func(*eventstore.FlowState) bool) (eventstore.FlowState, bool, error) {
	g.mu.Lock()
	f := g.shared
	g.mu.Unlock()
	for try := 0; try < 5; try++ {
		f = copyState(f)
		if !fn(&f) {
			return f, false, nil
		}
		f.UpdatedAt = c.opts.Now()
		err := c.st.SaveFlow(ctx, f)
		if err == nil {
			f.Rev++
			c.set(g, f)
			return f, true, nil
		}
		if !errors.Is(err, eventstore.ErrStale) {
			return f, false, err
		}
		states, err := c.st.LoadFlows(ctx, []string{g.typ})
		if err != nil {
			return f, false, err
		}
		f = eventstore.FlowState{Type: g.typ}
		if len(states) == 1 {
			f = states[0]
		}
	}
	return f, false, errors.New("another replica kept writing the same flow state")
}

func copyState(f eventstore.FlowState) eventstore.FlowState {
	f.Window.Runs = append([]int64(nil), f.Window.Runs...)
	f.Window.Fails = append([]int64(nil), f.Window.Fails...)
	if f.Pause != nil {
		p := *f.Pause
		f.Pause = &p
	}
	if f.Breaker.Probe != nil {
		p := *f.Breaker.Probe
		f.Breaker.Probe = &p
	}
	return f
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
