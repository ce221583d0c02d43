package loadtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
)

// errInjected is the failure the load handler returns.
var errInjected = errors.New("loadtest: injected failure")

// record is what the run saw of one event. Handlers and transitions of
// different events run concurrently, so every field is atomic.
type record struct {
	insertedAt atomic.Int64 // ns since tracker.base when the insert began; 0: not inserted
	runs       atomic.Int32 // handler executions
	failures   atomic.Int64 // handler executions that returned an error
	successes  atomic.Int32 // success transitions written by a worker
	archives   atomic.Int32 // archive transitions written by the archiver
	// terminalAt (ns since base) and terminalAttempts are those of the
	// first terminal transition.
	terminalAt       atomic.Int64
	terminalAttempts atomic.Int64
	// startedAt (ns since base) is the first handler start.
	startedAt atomic.Int64
	// failedRuns counts the workers' transitions of failed runs (to new,
	// failed or error), and topAttempts the most attempts one wrote. A run
	// that spends its attempt raises them by one; a failed probe spends
	// none, so failedRuns - topAttempts are the event's failed probes,
	// whatever order the callbacks came in.
	failedRuns  atomic.Int64
	topAttempts atomic.Int64
}

// probes are the event's failed runs that spent no attempt.
func (r *record) probes() int64 { return max(r.failedRuns.Load()-r.topAttempts.Load(), 0) }

// tracker holds a record per event of the run, under ids generated before
// the run, so the handler and the transition callbacks look them up without
// a lock.
type tracker struct {
	base        time.Time
	ids         []bson.ObjectID
	index       map[bson.ObjectID]int32 // read-only once the run starts
	recs        []record
	failureRate float64
	failFirst   int64 // fail each event's first runs (Options.FailFirst)
	latency     time.Duration

	inserted    atomic.Int64
	firstInsert atomic.Int64 // ns since base when the first insert began
	terminal    atomic.Int64
	lastDoneAt  atomic.Int64 // ns since base of the newest terminal transition
	foreign     atomic.Int64 // handler runs and transitions of ids this run did not insert
	archived    atomic.Int64 // archiver transitions (embedded) or errors documents seen (external)

	mu       sync.Mutex
	lateness []time.Duration // retry start minus its due time

	flood *flood       // a backoff flood (Options.BackoffFlood), or nil
	fl    *flowTracker // the flow modes' records, or nil
}

func newTracker(n int, failureRate float64, latency time.Duration) *tracker {
	t := &tracker{
		base:        time.Now(),
		ids:         make([]bson.ObjectID, n),
		index:       make(map[bson.ObjectID]int32, n),
		recs:        make([]record, n),
		failureRate: failureRate,
		latency:     latency,
	}
	for i := range t.ids {
		t.ids[i] = bson.NewObjectID()
		t.index[t.ids[i]] = int32(i)
	}
	return t
}

func (t *tracker) since() int64 { return int64(time.Since(t.base)) + 1 } // never 0

func (t *tracker) lookup(id bson.ObjectID) *record {
	i, ok := t.index[id]
	if !ok {
		return nil
	}
	return &t.recs[i]
}

// beginInsert marks event i as being inserted, before the insert is sent:
// its transitions may be observed before InsertOne returns.
func (t *tracker) beginInsert(i int) {
	at := t.since()
	t.recs[i].insertedAt.Store(at)
	t.firstInsert.CompareAndSwap(0, at)
}

// handle is the consumer handler of the load test: it records the run and
// the retry's lateness, works for the configured latency, and fails at the
// configured rate.
func (t *tracker) handle(ctx context.Context, ev *consumer.Event) error {
	now := time.Now()
	id, _ := ev.ID.ObjectIDOK()
	i, ok := t.index[id]
	if !ok {
		// Left over from an earlier run (external mode): let it succeed,
		// and count it, rather than fail someone's event.
		t.foreign.Add(1)
		return nil
	}
	r := &t.recs[i]
	r.runs.Add(1)
	at := t.since()
	r.startedAt.CompareAndSwap(0, at)
	down := false
	if t.fl != nil {
		down = t.fl.call(int(i), at)
		defer t.fl.end(int(i))
	}
	if ev.Attempts > 0 && !ev.NextAttemptAt.IsZero() {
		// A retry: how late it started after it was due. nextAttemptAt is
		// stored with millisecond precision, so a retry up to 1ms early
		// shows as slightly negative.
		t.mu.Lock()
		t.lateness = append(t.lateness, now.Sub(ev.NextAttemptAt))
		t.mu.Unlock()
	}
	if t.latency > 0 {
		timer := time.NewTimer(t.latency)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
	if down {
		// The partner is down (Options.Outage): every call fails, for
		// every event, as a 503 would.
		r.failures.Add(1)
		return errPartnerDown
	}
	if t.failFirst > 0 && int64(r.runs.Load()) <= t.failFirst {
		// Each event's own failures, whatever the partner does: they
		// never trip its type's breaker.
		r.failures.Add(1)
		return consumer.EventFault(errInjected)
	}
	if t.failureRate > 0 && rand.Float64() < t.failureRate {
		r.failures.Add(1)
		return errInjected
	}
	if t.fl != nil {
		t.fl.succeeded(int(i))
	}
	return nil
}

// onTransition observes the transitions written by the workers and the
// archiver. Success and archive are terminal; failed and error are not (an
// event in error still has to be archived).
func (t *tracker) onTransition(tr consumer.Transition) {
	if t.flood != nil && tr.Type == t.flood.typ {
		return // the flood's events are not the load's
	}
	id, err := bson.ObjectIDFromHex(tr.ID)
	r := t.lookup(id)
	if err != nil || r == nil {
		t.foreign.Add(1)
		return
	}
	switch {
	case tr.Archived:
		r.archives.Add(1)
		t.archived.Add(1)
	case tr.To == event.StateSuccess:
		r.successes.Add(1)
	default:
		// A failed run: it spent its attempt, or it was a probe that
		// spent none (its state unchanged).
		r.failedRuns.Add(1)
		storeMax(&r.topAttempts, tr.Attempts)
		return
	}
	t.terminated(r, tr.Attempts)
}

// terminated records a terminal state of r with its attempts.
func (t *tracker) terminated(r *record, attempts int64) {
	at := t.since()
	if r.terminalAt.CompareAndSwap(0, at) {
		r.terminalAttempts.Store(attempts)
	}
	t.terminal.Add(1)
	storeMax(&t.lastDoneAt, at)
}

// startDelays are how long each event took from its insert to the first
// start of its handler.
func (t *tracker) startDelays() []time.Duration {
	var out []time.Duration
	for i := range t.recs {
		r := &t.recs[i]
		if in, st := r.insertedAt.Load(), r.startedAt.Load(); in > 0 && st > 0 {
			out = append(out, time.Duration(st-in))
		}
	}
	return out
}

func (t *tracker) retryLateness() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Duration(nil), t.lateness...)
}
