package pipeline

// What MongoDB's and JetStream's semantics bring that the first milestone
// did not hold up against (issue "Hold up against real MongoDB and NATS
// semantics"): a reset racing the archiver, hand-built failed documents,
// streams deleted at run time, reserved field names, payloads that look
// like extended JSON, a dropped collection, a quiet spell of filtered-out
// changes.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// resetAfterRead is storage whose events collection, once, applies an
// application's reset of an errored event to new right after the
// archiver read it: the race between an application and the archiver.
type resetAfterRead struct {
	store.Database
	armed *atomic.Bool
}

func (r resetAfterRead) Collection(name string) store.Collection {
	c := r.Database.Collection(name)
	if name != "events" {
		return c
	}
	return resetColl{Collection: c, armed: r.armed}
}

type resetColl struct {
	store.Collection
	armed *atomic.Bool
}

func (c resetColl) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	doc, err := c.Collection.FindOne(ctx, filter)
	if state, ok := doc.Lookup("state").AsInt64OK(); err == nil && ok && state == 3 && c.armed.CompareAndSwap(true, false) {
		_, err = c.Collection.UpdateOne(ctx, bson.D{{Key: "_id", Value: doc.Lookup("_id")}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: int32(0)}}}}, false)
	}
	return doc, err
}

// An application that resets an event while the archiver moves it keeps
// it: the archiver's delete pins the state it read, and the event, in
// exactly one place, runs again.
func TestResetRacingTheArchiver(t *testing.T) {
	t.Parallel()
	armed := &atomic.Bool{}
	var calls atomic.Int32
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.WrapStore = func(s store.Database) store.Database { return resetAfterRead{Database: s, armed: armed} }
		o.Worker.Handlers["once"] = func(context.Context, *consumer.Event) error {
			if calls.Add(1) == 1 {
				return consumer.Permanent(errBoom)
			}
			return nil
		}
	})
	armed.Store(true)
	id := b.insert(t, bson.E{Key: "type", Value: "once"})
	b.waitState(t, id, event.StateSuccess, 1)
	require.False(t, armed.Load(), "the reset raced the archiver")
	require.Nil(t, find(t, b.errs(), rawID(t, id)), "not archived: it lives on")
}

// A failed event written by hand, without a due date or with one that is
// not a date, is due: it runs.
func TestHandBuiltFailedEventsRun(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), nil)
	missing := b.insertJob(t, bson.E{Key: "state", Value: 2}, bson.E{Key: "attempts", Value: 1})
	wrong := b.insertJob(t, bson.E{Key: "state", Value: 2.0}, bson.E{Key: "nextAttemptAt", Value: "tomorrow"})
	b.waitState(t, missing, event.StateSuccess, 1)
	b.waitState(t, wrong, event.StateSuccess, 0)
}

// A stream deleted while the pipeline runs is created again, and the
// events after it run.
func TestStreamDeletedAtRunTime(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), nil)
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	names := messaging.DefaultNames()
	for _, s := range []string{names.EventsStream(), names.DLQStream()} {
		require.NoError(t, js.DeleteStream(context.Background(), s))
	}
	next := b.insertJob(t)
	b.waitState(t, next, event.StateSuccess, 0)
	failing := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 3})
	b.waitArchived(t, failing)
}

// retrigger's bookkeeping never collides with the application's fields: a
// document with its own archivedAt (the first milestone's reserved name)
// archives, and so does a copy redriven from errors, bookkeeping and all.
func TestApplicationFieldsNamedLikeBookkeeping(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(always(consumer.Permanent(errBoom))), nil)
	id := b.insertJob(t, bson.E{Key: "archivedAt", Value: "the application's"}, bson.E{Key: "reason", Value: 42})
	doc := b.waitArchived(t, id)
	require.Equal(t, "the application's", doc.Lookup("archivedAt").StringValue())
	require.Equal(t, "permanent", doc.Lookup("retrigger", "reason").StringValue())

	// Redrive: the archived copy goes back into events as new.
	back := bson.D{}
	elems, err := doc.Elements()
	require.NoError(t, err)
	for _, el := range elems {
		if el.Key() != "state" {
			back = append(back, bson.E{Key: el.Key(), Value: el.Value()})
		}
	}
	_, err = b.errs().DeleteOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	require.NoError(t, b.events().InsertOne(context.Background(), back))
	again := b.waitArchived(t, id)
	require.EqualValues(t, 2, again.Lookup("attempts").AsInt64())
}

// Every BSON value survives the trip: a payload that looks like extended
// JSON is never decoded from a message, so it runs.
func TestPayloadThatLooksLikeExtendedJSON(t *testing.T) {
	t.Parallel()
	var got bson.Raw
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["job"] = func(_ context.Context, ev *consumer.Event) error {
			got = ev.Payload
			return nil
		}
	})
	payload := bson.D{{Key: "$numberLong", Value: "x"}, {Key: "n", Value: bson.D{{Key: "$oid", Value: 12}}}}
	id := b.insertJob(t, bson.E{Key: "payload", Value: payload})
	b.waitState(t, id, event.StateSuccess, 0)
	require.Equal(t, "x", got.Lookup("$numberLong").StringValue())
	require.Len(t, b.Workers(), 2)
}

// A drop (or a rename, or a $out) of the events collection ends the
// change stream; the relay starts again from the present and sweeps, and
// the events inserted after run.
func TestEventsCollectionDropped(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Producer.Sweeper.Interval = time.Hour })
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)
	require.NoError(t, b.DB.DropCollection(context.Background(), "events"))
	var ids []bson.ObjectID
	for range 5 {
		ids = append(ids, b.insertJob(t))
	}
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	require.GreaterOrEqual(t, b.Producer().Stats().Restarts.Load(), int64(1))
}

// A quiet spell of changes the relay filters out still moves its
// checkpoint: after it, a restart resumes where it was instead of finding
// its history lost and sweeping everything.
func TestCheckpointMovesPastFilteredChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Store.OplogMinSize, o.Store.OplogMaxSize = 1, 25
		o.Store.OplogMinAge, o.Store.OplogMaxAge = time.Millisecond, time.Hour
		o.Producer.Relay.CheckpointInterval = 10 * time.Millisecond
	})
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)
	waitFor(t, 5*time.Second, "a checkpoint", func() bool { return b.Producer().Stats().Checkpoint.Load() > 0 })
	// Writes the relay does not publish (another collection), ten at a
	// time, until the oplog no longer holds the last change it published.
	filler := b.DB.Collection("filler")
	for batch := range 4 {
		before := savedToken(t, b)
		for i := range 10 {
			require.NoError(t, filler.InsertOne(context.Background(), bson.D{{Key: "i", Value: batch*10 + i}}))
		}
		waitFor(t, 10*time.Second, "the checkpoint past the filler", func() bool {
			return string(savedToken(t, b)) != string(before)
		})
	}
	require.True(t, tokenReadable(t, b))
	require.NoError(t, b.StopProducer())
	require.NoError(t, b.StartProducer())
	next := b.insertJob(t)
	b.waitState(t, next, event.StateSuccess, 0)
	require.Zero(t, b.Producer().Stats().Restarts.Load(), "resumed without losing its history")
}

// tokenReadable reports whether the saved token is still in the history.
func tokenReadable(t *testing.T, b *bundle) bool {
	cs, err := b.events().Watch(context.Background(), store.WatchOptions{ResumeAfter: savedToken(t, b)})
	if err != nil {
		return false
	}
	defer cs.Close(context.Background())
	_, _, err = cs.TryNext(context.Background())
	return err == nil
}
