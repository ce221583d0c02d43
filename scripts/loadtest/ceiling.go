package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

// CeilingResult is the embedded engine's own rate for the pipeline's write
// pattern.
type CeilingResult struct {
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_s"`
	Writes       int64   `json:"writes"`
	Updaters     int     `json:"updaters"`
	// Ratio is the pipeline's throughput over EventsPerSec (set by Run).
	Ratio   float64 `json:"pipeline_ratio,omitempty"`
	PeakRSS int64   `json:"peak_rss_bytes"`
}

// Ceiling measures the embedded engine alone on the writes the pipeline
// makes for each event, with nothing else running: the insert (from the
// same generator: same documents, same pacing or inserters), then what the
// workers would write through the event store, per run the claim of the
// event's lease and the transition (a success; or a failure for each
// injected one, then for an exhausted event the archiver's move into
// errors), then the producer's retention. The engine is opened with the pipeline's options
// and the producer's indexes. Retries are written at once instead of after
// their backoff, and the reads the pipeline makes (the worker's and the
// archiver's look-up of the event) are left out: they are not writes, and
// reads do not take the engine's write lock.
func Ceiling(ctx context.Context, o Options) (CeilingResult, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return CeilingResult{}, err
	}
	res := CeilingResult{Updaters: o.CeilingUpdaters}
	po := pipelineOptions(o, nil)
	var err error
	if po.DataDir, err = runDir(o, "ceiling-"); err != nil {
		return res, err
	}
	p, err := pipeline.Open(ctx, po)
	if err != nil {
		return res, err
	}
	defer p.Close()
	if err := producerSetup(ctx, po.Producer, p); err != nil {
		return res, err
	}
	events := p.DB.Collection(eventstore.DefaultEvents)
	st := eventstore.New(p.DB, eventstore.Options{})
	tr := newTracker(o.Count, 0, 0)
	gen := newGenerator(o, tr, &notify{Collection: events, inserted: make(chan int, o.Count), tr: tr}, bson.NewObjectID().Hex())
	inserted := gen.events.(*notify).inserted
	policy := retry.Policy{InitialInterval: o.RetryInitial, Multiplier: 2, MaxInterval: o.RetryMax, RandomizationFactor: 0.2, MaxAttempts: o.MaxAttempts}

	resetPeakRSS()
	if o.CeilingCPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CeilingCPUProfile); err != nil {
			return res, fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	var (
		writes   atomic.Int64
		done     atomic.Int64
		lastDone atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	retention := o.Retention > 0
	stopRetire := make(chan struct{})
	if retention {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(o.SweepInterval)
			defer tick.Stop()
			for {
				select {
				case <-stopRetire:
					return
				case <-tick.C:
				}
				for ctx.Err() == nil {
					n, err := st.Retire(ctx, time.Now().Add(-o.Retention), producer.DefaultRetentionBatch)
					writes.Add(1)
					if err != nil && ctx.Err() == nil {
						fail(fmt.Errorf("retention: %w", err))
					}
					if err != nil || n < producer.DefaultRetentionBatch {
						break
					}
				}
			}
		}()
	}
	var uwg sync.WaitGroup
	for range o.CeilingUpdaters {
		uwg.Add(1)
		go func() {
			defer uwg.Done()
			for i := range inserted {
				n, err := transitions(ctx, st, o, tr.ids[i], policy)
				writes.Add(n)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				done.Add(1)
				storeMax(&lastDone, tr.since())
			}
		}()
	}
	if err := gen.run(ctx); err != nil {
		fail(err)
	}
	close(inserted)
	uwg.Wait()
	close(stopRetire)
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("the ceiling run did not finish within -timeout %s: %w", o.Timeout, ctx.Err())
	}
	res.Events = int(done.Load())
	res.Writes = writes.Load() + tr.inserted.Load()
	if first := gen.firstAt.Load(); first > 0 && lastDone.Load() > first {
		res.Seconds = round(time.Duration(lastDone.Load()-first).Seconds(), 3)
		res.EventsPerSec = round(float64(res.Events)/res.Seconds, 1)
	}
	res.PeakRSS = peakRSS()
	return res, nil
}

// notify is the events collection, telling the updaters which event was
// inserted.
type notify struct {
	store.Collection
	inserted chan int
	tr       *tracker
}

func (n *notify) InsertOne(ctx context.Context, doc any) error {
	if err := n.Collection.InsertOne(ctx, doc); err != nil {
		return err
	}
	id, _ := doc.(bson.D)[0].Value.(bson.ObjectID)
	n.inserted <- int(n.tr.index[id])
	return nil
}

// transitions writes what the workers and the archiver would for one
// event, through the same event store: per run the claim of its lease and
// the transition, failing each run as the handler would (its first
// Options.FailFirst, or with probability FailureRate), and for
// an exhausted event the archiver's move into errors. It returns the
// number of writes.
func transitions(ctx context.Context, st *eventstore.Store, o Options, oid bson.ObjectID, policy retry.Policy) (int64, error) {
	failureRate := o.FailureRate
	id := bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}
	var writes int64
	for {
		now := time.Now()
		// Retries are claimed at once, however far their due time.
		c, err := st.ClaimEvent(ctx, eventstore.ClaimRequest{ID: id, Type: o.Type, Owner: "ceiling", Token: rand.Int64(), Now: now, TTL: time.Minute, Early: 24 * time.Hour})
		writes++
		if err != nil {
			return writes, fmt.Errorf("claim of %s: %w", oid.Hex(), err)
		}
		if c.Outcome != eventstore.Claimed {
			return writes, fmt.Errorf("claim of %s: %s", oid.Hex(), c.Outcome)
		}
		t := eventstore.Transition{To: event.StateSuccess, At: now, Run: event.Attempt{At: now, Outcome: "success", Replica: "ceiling", Number: c.Event.Attempts + 1}}
		if (o.FailFirst > 0 && c.Event.Attempts < o.FailFirst) || (failureRate > 0 && rand.Float64() < failureRate) {
			d := policy.Decide(c.Event.Attempts+1, 0, errInjected, now, rand.Float64)
			t.To, t.Attempts, t.NextAt, t.Reason = event.StateError, d.Attempts, d.NextAt, event.ReasonExhausted
			t.LastError = event.LastError{Message: errInjected.Error(), Retryable: d.Retry, At: now}
			t.Run.Outcome, t.Run.Error = "error", errInjected.Error()
			if d.Retry {
				t.To, t.Run.Outcome = event.StateFailed, "failed"
			}
		}
		err = st.Complete(ctx, &c, t)
		writes++
		if err != nil {
			return writes, fmt.Errorf("transition of %s: %w", oid.Hex(), err)
		}
		switch t.To {
		case event.StateSuccess:
			return writes, nil
		case event.StateError:
			// The archiver: read the event, move it into errors.
			doc, err := st.Find(ctx, id)
			if err != nil {
				return writes, err
			}
			writes += 2
			return writes, st.MoveToErrors(ctx, doc, eventstore.Archive{Reason: event.ReasonExhausted, At: now})
		}
	}
}
