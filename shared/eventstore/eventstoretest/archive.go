package eventstoretest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// errored inserts an event in the error state, as a transition leaves it,
// with an application field that looks like an operator.
func (b *bundle) errored(t *testing.T, id any) bson.RawValue {
	rid := b.insert(t, job(id, bson.E{Key: "payload", Value: bson.D{{Key: "$numberLong", Value: "x"}}}))
	c := b.claim(t, rid)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: b.now, Attempts: 1, Reason: event.ReasonPermanent,
		LastError: event.LastError{Message: "invalid address", At: b.now}, Run: event.Attempt{At: b.now, Outcome: "error", Error: "invalid address"}}))
	return rid
}

func testMoveToErrors(t *testing.T, b *bundle) {
	id := b.errored(t, "a")
	doc, err := b.store.Find(b.ctx, id)
	require.NoError(t, err)
	at := b.now.Add(time.Second)
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonPermanent, At: at}))
	require.Nil(t, b.get(t, b.events, id), "gone from events")
	arch := b.get(t, b.errs, id)
	require.NotNil(t, arch)
	require.Equal(t, event.ReasonPermanent, arch.Reason)
	require.Equal(t, "invalid address", arch.LastError.Message)
	require.Len(t, arch.History, 2, "the run, then the archive")
	require.Equal(t, "archived", arch.History[1].Outcome)
	raw := b.raw(t, b.errs, id)
	require.Equal(t, "x", raw.Lookup("payload", "$numberLong").StringValue(), "the payload is kept as it was")
	archivedAt, ok := raw.Lookup("retrigger", "archivedAt").DateTimeOK()
	require.True(t, ok)
	require.Equal(t, at.UnixMilli(), archivedAt)

	// Repeating the move (a redelivered dead letter) changes nothing.
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonPermanent, At: at.Add(time.Minute)}))
	n, err := b.errs.Count(b.ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	// A rejected document gets the reason as its last error.
	bad := b.insert(t, job("bad", bson.E{Key: "attempts", Value: "two"}))
	badDoc := b.raw(t, b.events, bad)
	require.NoError(t, b.store.MoveToErrors(b.ctx, badDoc, eventstore.Archive{Reason: event.ReasonRejected, Message: "attempts must be a number", At: at}))
	badArch := b.raw(t, b.errs, bad)
	require.Equal(t, "attempts must be a number", badArch.Lookup("lastError", "message").StringValue())
	require.Equal(t, "two", badArch.Lookup("attempts").StringValue(), "the document is kept as it was")
}

// An application that resets an event while it is being archived keeps it:
// the move takes back its copy, and the event is in exactly one place.
func testMoveChanged(t *testing.T, b *bundle) {
	id := b.errored(t, "a")
	doc, err := b.store.Find(b.ctx, id)
	require.NoError(t, err)
	_, err = b.events.UpdateOne(b.ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: int32(0)}}}}, false)
	require.NoError(t, err)
	require.ErrorIs(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonPermanent, At: b.now}), eventstore.ErrStale)
	require.NotNil(t, b.get(t, b.events, id), "the reset event lives on")
	require.Nil(t, b.get(t, b.errs, id), "and is not archived")
}

// A copy moved back from errors, bookkeeping and all, archives again.
func testRearchive(t *testing.T, b *bundle) {
	id := b.errored(t, "a")
	doc, err := b.store.Find(b.ctx, id)
	require.NoError(t, err)
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonPermanent, At: b.now}))
	// An operator moves it back as new, with its history.
	arch := b.raw(t, b.errs, id)
	elems, err := arch.Elements()
	require.NoError(t, err)
	back := bson.D{}
	for _, el := range elems {
		if el.Key() != "state" {
			back = append(back, bson.E{Key: el.Key(), Value: el.Value()})
		}
	}
	_, err = b.errs.DeleteOne(b.ctx, bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	require.NoError(t, b.events.InsertOne(b.ctx, back))
	c := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: b.now, Attempts: 2, Reason: event.ReasonExhausted}))
	doc, err = b.store.Find(b.ctx, id)
	require.NoError(t, err)
	later := b.now.Add(time.Hour)
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonExhausted, At: later}))
	again := b.get(t, b.errs, id)
	require.Equal(t, event.ReasonExhausted, again.Reason)
	raw := b.raw(t, b.errs, id)
	ms, _ := raw.Lookup("retrigger", "archivedAt").DateTimeOK()
	require.Equal(t, later.UnixMilli(), ms, "archived anew")
	require.Nil(t, b.get(t, b.events, id))
}
