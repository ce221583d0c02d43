package consumer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// A worker's world: an embedded engine and an in-process nats-server; the
// tests publish the messages a producer would.
type bundle struct {
	events store.Collection
	db     *embedded.DB
	nc     *nats.Conn
	js     jetstream.JetStream
	w      *Worker
	names  messaging.Names
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	w, err := NewWorker(cfg, db, nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return &bundle{events: db.Collection("events"), db: db, nc: nc, js: js, w: w, names: messaging.DefaultNames()}
}

// event inserts an event and publishes its message, as the producer would.
func (b *bundle) event(t *testing.T, fields ...bson.E) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, fields...))
	require.NoError(t, err)
	require.NoError(t, b.events.InsertOne(context.Background(), bson.Raw(raw)))
	ev, err := event.Parse(raw)
	require.NoError(t, err)
	b.publish(t, ev.ID, ev.Type)
	return ev.ID
}

func (b *bundle) publish(t *testing.T, id bson.RawValue, typ string) {
	t.Helper()
	_, err := b.js.PublishMsg(context.Background(), messaging.NewMsg(b.names.EventSubject(typ), bson.NewObjectID().Hex(), id, 0, []byte("{}")))
	require.NoError(t, err)
}

func (b *bundle) get(t *testing.T, id bson.RawValue) event.Event {
	t.Helper()
	doc, err := b.events.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	ev, err := event.Parse(doc)
	require.NoError(t, err)
	return ev
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// The outcomes of a run, as written: success, a retry with its due time
// and history, an error (permanent, or a panic recorded as a failure).
func TestWorkerOutcomes(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := setup(t, Config{Handlers: map[string]Handler{
		"ok":    func(context.Context, *Event) error { return nil },
		"flaky": func(context.Context, *Event) error { calls.Add(1); return errors.New("boom") },
		"perm":  func(context.Context, *Event) error { return Permanent(errors.New("bad address")) },
		"panic": func(context.Context, *Event) error { panic("nil map") },
	}, Policies: retryHourly(), Replica: "r1"})
	ok := b.event(t, bson.E{Key: "type", Value: "ok"})
	flaky := b.event(t, bson.E{Key: "type", Value: "flaky"})
	perm := b.event(t, bson.E{Key: "type", Value: "perm"})
	pan := b.event(t, bson.E{Key: "type", Value: "panic"})
	waitFor(t, "four outcomes", func() bool {
		st := b.w.Stats()
		return st.Succeeded.Load() == 1 && st.Failed.Load() == 2 && st.Errored.Load() == 1
	})
	ev := b.get(t, ok)
	require.Equal(t, event.StateSuccess, ev.State)
	require.Equal(t, "success", ev.History[0].Outcome)
	require.Equal(t, "r1", ev.History[0].Replica)
	ev = b.get(t, flaky)
	require.Equal(t, event.StateFailed, ev.State)
	require.EqualValues(t, 1, ev.Attempts)
	require.WithinDuration(t, time.Now().Add(time.Hour), ev.NextAttemptAt, time.Minute)
	require.Nil(t, ev.Lease, "the lease is released with the outcome")
	ev = b.get(t, perm)
	require.Equal(t, event.StateError, ev.State)
	require.Equal(t, event.ReasonPermanent, ev.Reason)
	ev = b.get(t, pan)
	require.Equal(t, event.StateFailed, ev.State)
	require.Contains(t, ev.LastError.Message, "handler panicked: nil map")
}

// A message of an event that cannot run now is not run: gone, done, or
// due later (dropped; the scheduler publishes it when due).
func TestWorkerSkips(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	b := setup(t, Config{Handlers: map[string]Handler{"job": func(context.Context, *Event) error { runs.Add(1); return nil }}})
	done := b.event(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 1})
	later := b.event(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 2}, bson.E{Key: "nextAttemptAt", Value: time.Now().Add(time.Hour)})
	b.publish(t, bson.RawValue{Type: bson.TypeString, Value: []byte{5, 0, 0, 0, 'g', 'o', 'n', 'e', 0}}, "job")
	waitFor(t, "three skipped", func() bool { return b.w.Stats().Stale.Load() == 2 && b.w.Stats().Early.Load() == 1 })
	require.Zero(t, runs.Load())
	require.Equal(t, event.StateSuccess, b.get(t, done).State)
	require.Equal(t, event.StateFailed, b.get(t, later).State)
}

// An event another replica runs is handed back, not run; when that
// replica's lease expires without an outcome, the run counts as a crash,
// and after MaxCrashes the event is archived without running again.
func TestWorkerLeases(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	b := setup(t, Config{Handlers: map[string]Handler{"job": func(context.Context, *Event) error { runs.Add(1); return nil }},
		AckWait: 2 * time.Second, MaxCrashes: 2})
	leased := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "other"}, {Key: "token", Value: int64(7)}, {Key: "until", Value: time.Now().Add(time.Hour)}}}}
	busy := b.event(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "retrigger", Value: leased})
	waitFor(t, "handed back", func() bool { return b.w.Stats().Busy.Load() >= 1 })
	require.Zero(t, runs.Load())
	require.EqualValues(t, 7, b.get(t, busy).Lease.Token)

	crashed := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "dead"}, {Key: "token", Value: int64(9)}, {Key: "until", Value: time.Now().Add(-time.Minute)}}},
		{Key: "crashes", Value: int64(1)}}
	id := b.event(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "retrigger", Value: crashed})
	waitFor(t, "archived as crashed", func() bool { return b.get(t, id).State == event.StateError })
	ev := b.get(t, id)
	require.Equal(t, event.ReasonCrashed, ev.Reason)
	require.Zero(t, runs.Load(), "not run a third time")
}

// A replica binds one consumer per type it handles, and receives nothing
// else.
func TestWorkerBindsItsTypes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Handlers: map[string]Handler{"a": func(context.Context, *Event) error { return nil }}})
	b.event(t, bson.E{Key: "type", Value: "a"})
	b.event(t, bson.E{Key: "type", Value: "b"})
	waitFor(t, "a done", func() bool { return b.w.Stats().Succeeded.Load() == 1 })
	_, err := b.js.Consumer(context.Background(), b.names.EventsStream(), b.names.WorkersConsumer("a"))
	require.NoError(t, err)
	_, err = b.js.Consumer(context.Background(), b.names.EventsStream(), b.names.WorkersConsumer("b"))
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
	waiting, err := messaging.Unserved(context.Background(), b.js, b.names)
	require.NoError(t, err)
	require.EqualValues(t, map[string]uint64{"b": 1}, waiting)
}

func retryHourly() retry.Policies {
	return retry.Policies{Default: retry.Policy{InitialInterval: time.Hour, MaxInterval: time.Hour, RandomizationFactor: -1}}
}

// A running event whose lease another replica took over has its handler
// cancelled at the next renewal; its outcome is not written over the new
// holder's. A run that ends first renews nothing.
func TestWorkerLeaseLostCancelsTheRun(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	b := setup(t, Config{AckWait: 2 * time.Second, Handlers: map[string]Handler{
		"slow": func(ctx context.Context, _ *Event) error {
			started <- struct{}{}
			select {
			case <-ctx.Done():
				cancelled.Store(true)
				return ctx.Err()
			case <-time.After(time.Minute):
				return nil
			}
		},
		"quick": func(context.Context, *Event) error { return nil },
	}})
	quick := b.event(t, bson.E{Key: "type", Value: "quick"})
	waitFor(t, "the quick run", func() bool { return b.get(t, quick).State == event.StateSuccess })
	id := b.event(t, bson.E{Key: "type", Value: "slow"})
	<-started
	_, err := b.events.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "retrigger.lease.token", Value: int64(1)}, {Key: "retrigger.lease.owner", Value: "other"}}}}, false)
	require.NoError(t, err)
	waitFor(t, "the run cancelled", cancelled.Load)
	waitFor(t, "the outcome dropped", func() bool { return b.w.Stats().Changed.Load() == 1 })
	ev := b.get(t, id)
	require.Equal(t, "other", ev.Lease.Owner, "the new holder's lease stands")
	require.Zero(t, ev.Attempts)
}
