package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

// publishCopy publishes the event's current document as a message with a
// fresh Nats-Msg-Id, bypassing deduplication: a duplicate delivery.
func publishCopy(t *testing.T, b *bundle, id bson.ObjectID, subject string) {
	t.Helper()
	doc, err := b.events().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	body, err := messaging.Body(doc)
	require.NoError(t, err)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	ev, err := event.Parse(doc)
	require.NoError(t, err)
	_, err = js.PublishMsg(context.Background(), messaging.NewMsg(subject, bson.NewObjectID().Hex(), ev.ID, ev.Version, body))
	require.NoError(t, err)
}

// The same message delivered twice at once (two slots of a replica take
// one copy each; two replicas would do the same): the handler runs once,
// never twice at the same time, and the state and attempts are as if it had
// been delivered once (invariant 2).
func TestDuplicateDeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	var b *bundle
	busy := func() int64 {
		var n int64
		for _, w := range b.Workers() {
			n += w.Stats().Busy.Load()
		}
		return n
	}
	// The handler holds its run until the other copy found the event
	// leased, so both copies are out at once.
	rec := newRecorder(func(_ string, call int) error {
		deadline := time.Now().Add(5 * time.Second)
		for busy() == 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		return errBoom
	})
	b = setup(t, rec, func(o *Options) {
		o.Worker.Policies.Default.InitialInterval = time.Hour // stays failed after one attempt
		o.Worker.Policies.Default.MaxInterval = time.Hour
		o.Replicas = 1
		o.Worker.Concurrency = 2
	})
	require.NoError(t, b.StopProducer()) // the test publishes by hand
	id := b.insertJob(t)
	publishCopy(t, b, id, messaging.DefaultNames().EventSubject("job"))
	publishCopy(t, b, id, messaging.DefaultNames().EventSubject("job"))

	ev := b.waitState(t, id, event.StateFailed, 1)
	require.EqualValues(t, 1, ev.Version)
	require.GreaterOrEqual(t, busy(), int64(1), "the second copy found the event running")
	waitFor(t, 10*time.Second, "the second copy dropped: not due until its retry", func() bool {
		var early int64
		for _, w := range b.Workers() {
			early += w.Stats().Early.Load()
		}
		return early == 1
	})
	require.Len(t, rec.callTimes(id.Hex()), 1, "the handler ran once")
	ev = get(t, b.events(), id)
	require.EqualValues(t, 1, ev.Attempts, "attempts count the failure once")

	// A late duplicate is acknowledged without running.
	publishCopy(t, b, id, messaging.DefaultNames().EventSubject("job"))
	waitFor(t, 5*time.Second, "the late duplicate dropped", func() bool {
		var n int64
		for _, w := range b.Workers() {
			n += w.Stats().Early.Load()
		}
		return n == 2
	})
	require.Len(t, rec.callTimes(id.Hex()), 1, "the late duplicate did not run")
}

// Repeating a dead letter changes nothing.
func TestArchiverIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(always(errBoom)), nil)
	id := b.insertJob(t)
	first := b.waitArchived(t, id)
	// Replay every dead letter of the stream.
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	publishDLQ := func() {
		rid := bson.RawValue{Type: bson.TypeObjectID, Value: id[:]}
		_, err := js.PublishMsg(context.Background(), messaging.NewMsg(messaging.DefaultNames().DLQSubject("job"), "replay-"+bson.NewObjectID().Hex(),
			rid, 3, []byte(`{"note":"a replayed dead letter"}`)))
		require.NoError(t, err)
	}
	publishDLQ()
	publishDLQ()
	arch := b.ArchiverStats()
	waitFor(t, 5*time.Second, "two repeated dead letters", func() bool { return arch.Repeated.Load() == 2 })
	again, err := b.errs().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	require.Equal(t, first, again, "the errors document is unchanged")
	n, err := b.errs().Count(context.Background(), bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// A producer stopped mid-stream and restarted, with events inserted while it
// was down, loses nothing and publishes no effective duplicate (invariant 4).
func TestProducerRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Producer.Relay.CheckpointInterval = 20 * time.Millisecond })
	// The first start sweeps what came before it; let it finish, so the
	// events below only travel by the change stream.
	waitFor(t, 5*time.Second, "the first sweep", func() bool { return b.Producer().Stats().Sweeps.Load() >= 1 })
	const total = 150
	ids := make([]bson.ObjectID, 0, total)
	for range 50 {
		ids = append(ids, b.insertJob(t))
	}
	waitFor(t, 10*time.Second, "some events published", func() bool { return b.Producer().Stats().Published.Load() >= 10 })
	require.NoError(t, b.StopProducer())
	for range 50 {
		ids = append(ids, b.insertJob(t))
	}
	require.NoError(t, b.StartProducer())
	for range 50 {
		ids = append(ids, b.insertJob(t))
	}
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	for _, id := range ids {
		require.Len(t, b.rec.callTimes(id.Hex()), 1, "event %s ran once", id.Hex())
	}
	var stale int64
	for _, w := range b.Workers() {
		stale += w.Stats().Stale.Load()
	}
	require.Zero(t, stale, "no message reached a consumer twice")
}

// History lost: with a tiny oplog and the producer down long enough for its
// resume token to fall off, every event still reaches a terminal state.
func TestHistoryLost(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Store.OplogMinSize, o.Store.OplogMaxSize = 1, 5
		o.Store.OplogMinAge, o.Store.OplogMaxAge = time.Millisecond, time.Second
		o.Producer.Relay.CheckpointInterval = 10 * time.Millisecond
		o.Producer.Sweeper.Interval = time.Hour // only the history-lost sweep may recover
	})
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)
	require.NoError(t, b.StopProducer())

	var ids []bson.ObjectID
	for range 20 {
		ids = append(ids, b.insertJob(t))
	}
	// Keep writing elsewhere until the saved token is out of the history.
	token := savedToken(t, b)
	require.NotNil(t, token)
	filler := b.DB.Collection("filler")
	waitFor(t, 10*time.Second, "the resume token to fall off the oplog", func() bool {
		require.NoError(t, filler.InsertOne(context.Background(), bson.D{{Key: "x", Value: 1}}))
		cs, err := b.events().Watch(context.Background(), store.WatchOptions{ResumeAfter: token})
		if err != nil {
			return errorsIs(err, store.ErrHistoryLost)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err = cs.Next(ctx)
		_ = cs.Close(context.Background())
		return errorsIs(err, store.ErrHistoryLost)
	})

	require.NoError(t, b.StartProducer())
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	require.GreaterOrEqual(t, b.Producer().Stats().Restarts.Load(), int64(1))
}

func savedToken(t *testing.T, b *bundle) bson.Raw {
	doc, err := b.DB.Collection("retrigger_checkpoints").FindOne(context.Background(), bson.D{{Key: "_id", Value: "producer:events"}})
	require.NoError(t, err)
	return doc.Lookup("token").Document()
}

// 1,000 events, 30% random failures, at most 3 attempts, 3 replicas: every
// event ends in exactly one terminal place (invariant 1) with attempts equal
// to the failures the handler saw (invariant 2).
func TestThousandEventsRandomFailures(t *testing.T) {
	t.Parallel()
	const total = 1000
	rnd := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	rec := newRecorder(func(string, int) error {
		mu.Lock()
		defer mu.Unlock()
		if rnd.Float64() < 0.3 {
			return errBoom
		}
		return nil
	})
	b := setup(t, rec, func(o *Options) { o.Replicas = 3 })
	ids := make([]bson.ObjectID, total)
	docs := make([]bson.D, total)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		docs[i] = bson.D{{Key: "_id", Value: ids[i]}, {Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{{Key: "i", Value: i}}}}
	}
	for _, d := range docs {
		require.NoError(t, b.events().InsertOne(context.Background(), d))
	}
	deadline := time.Now().Add(60 * time.Second)
	waitFor(t, 70*time.Second, "every event terminal", func() bool {
		docs, err := b.events().Find(context.Background(), bson.D{{Key: "state", Value: bson.D{{Key: "$ne", Value: event.StateSuccess}}}}, store.FindOptions{})
		require.NoError(t, err)
		if len(docs) > 0 && time.Now().After(deadline) {
			// Say where each straggler is before giving up.
			for _, d := range docs[:min(len(docs), 10)] {
				ev, _ := event.Parse(d)
				t.Logf("not terminal: %s state %s attempts %d lease %+v parked %v due %s history %+v", ev.ID, ev.State, ev.Attempts, ev.Lease, ev.ParkedAt, ev.NextAttemptAt, ev.History)
			}
			t.Fatalf("%d events not terminal after 60s", len(docs))
		}
		return len(docs) == 0
	})
	var succeeded, archived int
	for _, id := range ids {
		ev := get(t, b.events(), id)
		edoc, err := b.errs().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
		inErrors := err == nil
		switch {
		case ev != nil && !inErrors:
			require.Equal(t, event.StateSuccess, ev.State)
			require.Equal(t, rec.failuresOf(id.Hex()), ev.Attempts, "attempts of %s", id.Hex())
			succeeded++
		case ev == nil && inErrors:
			require.EqualValues(t, rec.failuresOf(id.Hex()), edoc.Lookup("attempts").AsInt64(), "attempts of archived %s", id.Hex())
			require.EqualValues(t, 3, edoc.Lookup("attempts").AsInt64())
			archived++
		default:
			t.Fatalf("event %s: in events %v, in errors %v", id.Hex(), ev != nil, inErrors)
		}
	}
	require.Equal(t, total, succeeded+archived)
	require.Greater(t, archived, 0, "with 30%% failures and 3 attempts some events exhaust them")
	t.Logf("%d succeeded, %d archived", succeeded, archived)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// Retries whose due times are written out of their order (replicas finish
// runs in any order, each retry a millisecond or two after its failure):
// the scheduler, whose cursor over due times has passed one of them, still
// publishes it when told of it, instead of leaving it to the sweeper's
// stall (2 minutes). Before, about one in three hundred waited for it.
func TestRetriesDueOutOfOrder(t *testing.T) {
	t.Parallel()
	const total = 3000
	rec := newRecorder(func(id string, call int) error {
		if call <= 2 {
			return retry.EventFault(errBoom)
		}
		return nil
	})
	b := setup(t, rec, func(o *Options) {
		o.Replicas = 2
		o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond, MaxAttempts: 5}}
	})
	batch := make([]any, 0, total)
	for range total {
		batch = append(batch, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "job"}})
	}
	require.NoError(t, b.events().InsertMany(context.Background(), batch))
	waitFor(t, 60*time.Second, "every event succeeded after its two failures", func() bool {
		n, err := b.events().Count(context.Background(), bson.D{{Key: "state", Value: bson.D{{Key: "$ne", Value: int32(event.StateSuccess)}}}})
		require.NoError(t, err)
		return n == 0
	})
}
