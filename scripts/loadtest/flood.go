package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
)

// floodBackoff is how long the events of a backoff flood wait between
// attempts: longer than any run.
const floodBackoff = time.Hour

// freshFlood is how many new events of the flood's own type are inserted
// after the load, to see how soon they start.
const freshFlood = 100

// FloodResult is what a run with a backoff flood saw: its events waited in
// a long backoff during the whole load, and new events of their type were
// inserted afterwards.
type FloodResult struct {
	Events    int    `json:"events"`     // events kept in backoff during the load
	InBackoff int64  `json:"in_backoff"` // of them, failed once and waiting when the load began
	Type      string `json:"type"`       // their type
	// FreshStartDelay: insert to first handler start of new events of the
	// flood's own type, inserted after the load.
	FreshStartDelay Summary `json:"fresh_start_delay"`
}

// flood is a backoff flood: events of their own type whose handler always
// fails with a retry an hour away.
type flood struct {
	typ      string
	runID    string
	failed   atomic.Int64 // first failures seen
	mu       sync.Mutex
	inserted map[string]time.Time // fresh events: when their insert began
	started  map[string]time.Time // fresh events: their first handler start
}

func newFlood(o Options, runID string) *flood {
	return &flood{typ: o.Type + "-backoff", runID: runID, inserted: map[string]time.Time{}, started: map[string]time.Time{}}
}

// handle is the flood type's handler: it records a fresh event's start and
// fails with a retry an hour away.
func (f *flood) handle(_ context.Context, ev *consumer.Event) error {
	now := time.Now()
	key := event.Key(ev.ID)
	f.mu.Lock()
	if _, fresh := f.inserted[key]; fresh {
		if _, seen := f.started[key]; !seen {
			f.started[key] = now
		}
	}
	f.mu.Unlock()
	if ev.Attempts == 0 {
		f.failed.Add(1)
	}
	return consumer.After(floodBackoff, errors.New("loadtest: backoff flood, retried in an hour"))
}

func (f *flood) doc(id bson.ObjectID, i int) bson.D {
	return bson.D{
		{Key: event.FieldID, Value: id},
		{Key: event.FieldType, Value: f.typ},
		{Key: event.FieldPayload, Value: bson.D{{Key: "flood", Value: f.runID}, {Key: "i", Value: i}}},
		{Key: event.FieldCreatedAt, Value: time.Now()},
	}
}

// fill inserts n flood events and waits until each failed once and waits
// in its backoff.
func (f *flood) fill(ctx context.Context, t *target, n int) error {
	for i := range n {
		if err := t.events.InsertOne(ctx, f.doc(bson.NewObjectID(), i)); err != nil {
			return fmt.Errorf("inserting the backoff flood: %w", err)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for f.failed.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the backoff flood to fail once (%d of %d): %w", f.failed.Load(), n, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// fresh inserts new events of the flood's type, 10ms apart, and returns
// how long each took from insert to its first handler start.
func (f *flood) fresh(ctx context.Context, t *target) ([]time.Duration, error) {
	ids := make([]bson.ObjectID, freshFlood)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		key := event.Key(bson.RawValue{Type: bson.TypeObjectID, Value: ids[i][:]})
		f.mu.Lock()
		f.inserted[key] = time.Now()
		f.mu.Unlock()
		if err := t.events.InsertOne(ctx, f.doc(ids[i], -1-i)); err != nil {
			return nil, fmt.Errorf("inserting fresh events of the flood's type: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond): // pacing of the inserts
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		f.mu.Lock()
		n := len(f.started)
		f.mu.Unlock()
		if n == freshFlood {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("fresh events of the flood's type: %d of %d started within a minute", n, freshFlood)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]time.Duration, 0, freshFlood)
	for key, at := range f.inserted {
		out = append(out, f.started[key].Sub(at))
	}
	return out, nil
}
