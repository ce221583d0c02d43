package eventstoretest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

func testComplete(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	c := b.claim(t, id)
	next := b.now.Add(time.Minute + 500*time.Microsecond)
	require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, next, 1)))
	ev := b.get(t, b.events, id)
	require.Equal(t, event.StateFailed, ev.State)
	require.EqualValues(t, 1, ev.Attempts)
	require.EqualValues(t, 1, ev.Version)
	require.Equal(t, "boom", ev.LastError.Message)
	require.False(t, ev.NextAttemptAt.Before(next), "the stored due time is never before the one asked for")
	require.Nil(t, ev.Lease, "the transition releases the lease")

	c = b.claimAt(t, id, next.Add(time.Millisecond), "r1")
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: b.now, Attempts: 2, Reason: event.ReasonExhausted,
		LastError: event.LastError{Message: "boom again", At: b.now}, Run: event.Attempt{At: b.now, Outcome: "error"}}))
	ev = b.get(t, b.events, id)
	require.Equal(t, event.StateError, ev.State)
	require.Equal(t, event.ReasonExhausted, ev.Reason)
	require.True(t, ev.NextAttemptAt.IsZero(), "nothing is due any more")
}

func testCompleteHistory(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	at := b.now
	long := strings.Repeat("é", 1000)
	for i := int64(1); i <= 4; i++ {
		c := b.claimAt(t, id, at, "r1")
		require.Equal(t, eventstore.Claimed, c.Outcome, "attempt %d", i)
		tr := failure(at, at.Add(time.Second), i)
		tr.Run.Error = long
		tr.Run.Took = 1500 * time.Millisecond
		require.NoError(t, b.store.Complete(b.ctx, &c, tr))
		at = at.Add(2 * time.Second)
	}
	ev := b.get(t, b.events, id)
	require.Len(t, ev.History, 3, "the history keeps the configured number of entries")
	require.Equal(t, []int64{2, 3, 4}, []int64{ev.History[0].Number, ev.History[1].Number, ev.History[2].Number}, "oldest dropped first, in order")
	require.Equal(t, 1500*time.Millisecond, ev.History[0].Took)
	require.Equal(t, "r1", ev.History[0].Replica)
	require.LessOrEqual(t, len(ev.History[0].Error), 520, "errors are truncated")
	require.True(t, strings.HasSuffix(ev.History[0].Error, "…"))
}

// The concurrency rule: a transition pinned on the claim matches nothing
// once the event changed, whoever changed it.
func testCompleteStale(t *testing.T, b *bundle) {
	edits := []struct {
		name   string
		update bson.D
	}{
		{"application reset the state", bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: int32(3)}}}}},
		{"application bumped the version", bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}}},
		{"another replica took the lease", bson.D{{Key: "$set", Value: bson.D{{Key: "retrigger.lease.token", Value: int64(-1)}}}}},
	}
	for i, e := range edits {
		id := b.insert(t, job(i))
		c := b.claim(t, id)
		require.Equal(t, eventstore.Claimed, c.Outcome)
		_, err := b.events.UpdateOne(b.ctx, bson.D{{Key: "_id", Value: id}}, e.update, false)
		require.NoError(t, err)
		before := b.raw(t, b.events, id)
		require.ErrorIs(t, b.store.Complete(b.ctx, &c, success(b.now)), eventstore.ErrStale, e.name)
		require.Equal(t, before, b.raw(t, b.events, id), "%s: nothing written", e.name)
	}
	// A payload edit does not stop the run's outcome from being written.
	id := b.insert(t, job("payload"))
	c := b.claim(t, id)
	_, err := b.events.UpdateOne(b.ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "payload", Value: bson.D{{Key: "v", Value: 2}}}}}}, false)
	require.NoError(t, err)
	require.NoError(t, b.store.Complete(b.ctx, &c, success(b.now)))
}

func testRenewRelease(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	c := b.claim(t, id)
	until := b.now.Add(time.Hour)
	require.NoError(t, b.store.RenewLease(b.ctx, &c, until))
	require.True(t, b.get(t, b.events, id).Lease.Until.Equal(until))
	require.Equal(t, eventstore.Leased, b.claimAt(t, id, b.now.Add(40*time.Minute), "r2").Outcome, "a renewed lease holds")
	require.NoError(t, b.store.Release(b.ctx, &c))
	require.Nil(t, b.get(t, b.events, id).Lease)
	require.ErrorIs(t, b.store.RenewLease(b.ctx, &c, until), eventstore.ErrLeaseLost)
	c2 := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c2.Outcome, "a released event can be claimed again")
}
