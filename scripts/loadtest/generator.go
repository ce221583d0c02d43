package loadtest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// generator inserts the run's events: Count of them, at Rate per second or
// as fast as Inserters goroutines can.
type generator struct {
	o      Options
	tr     *tracker
	events store.Collection
	runID  string
	filler string

	next      atomic.Int64
	firstAt   atomic.Int64 // ns since tracker.base
	lastAt    atomic.Int64 // end of the last insert, ns since tracker.base
	maxLag    atomic.Int64 // rate mode: how far behind schedule an insert started
	abandoned atomic.Int64 // inserts that failed (and did not count as inserted)
}

func newGenerator(o Options, tr *tracker, events store.Collection, runID string) *generator {
	return &generator{o: o, tr: tr, events: events, runID: runID, filler: strings.Repeat("x", o.PayloadSize)}
}

// run inserts until Count events are in or ctx ends; it returns the first
// insert error.
func (g *generator) run(ctx context.Context) error {
	if g.o.Rate > 0 {
		return g.paced(ctx)
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range g.o.Inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(g.next.Add(1) - 1)
				if i >= g.o.Count {
					return
				}
				if err := g.insert(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// paced inserts event i at start + i/Rate, or at once when behind.
func (g *generator) paced(ctx context.Context) error {
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := range g.o.Count {
		due := start.Add(time.Duration(float64(i) / g.o.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else {
			storeMax(&g.maxLag, int64(-wait))
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := g.insert(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) insert(ctx context.Context, i int) error {
	now := time.Now()
	payload := bson.D{{Key: "run", Value: g.runID}, {Key: "i", Value: i}, {Key: "data", Value: g.filler}}
	if g.o.Keys > 0 {
		payload = append(payload, bson.E{Key: keyField, Value: i % g.o.Keys})
	}
	doc := bson.D{
		{Key: event.FieldID, Value: g.tr.ids[i]},
		{Key: event.FieldType, Value: g.o.Type},
		{Key: event.FieldPayload, Value: payload},
		{Key: event.FieldCreatedAt, Value: now},
	}
	g.tr.beginInsert(i)
	g.firstAt.CompareAndSwap(0, g.tr.recs[i].insertedAt.Load())
	if err := g.events.InsertOne(ctx, doc); err != nil {
		// Perhaps not inserted: if it was after all, the scan finds it
		// and the checker counts it.
		g.tr.recs[i].insertedAt.Store(0)
		g.abandoned.Add(1)
		if ctx.Err() != nil {
			return nil // stopped: the run timed out or was interrupted
		}
		return err
	}
	g.tr.inserted.Add(1)
	storeMax(&g.lastAt, g.tr.since())
	return nil
}

// storeMax sets v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
