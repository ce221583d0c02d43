package eventstoretest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

func testClaimNew(t *testing.T, b *bundle) {
	id := b.insert(t, job("a", bson.E{Key: "payload", Value: bson.D{{Key: "x", Value: 1}}}))
	c := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.Equal(t, "job", c.Event.Type)
	require.EqualValues(t, 1, c.Event.Payload.Lookup("x").AsInt64())
	require.Equal(t, "r1", c.Lease.Owner)
	ev := b.get(t, b.events, id)
	require.NotNil(t, ev.Lease, "the lease is stored")
	require.Equal(t, c.Lease.Token, ev.Lease.Token)
	require.True(t, ev.Lease.Until.Equal(b.now.Add(30*time.Second)))
	require.Equal(t, event.StateNew, ev.State, "a claim changes nothing else")

	again := b.claimAt(t, id, b.now.Add(time.Second), "r2")
	require.Equal(t, eventstore.Leased, again.Outcome, "a held lease keeps others out")
	require.True(t, again.Event.Lease.Until.Equal(b.now.Add(30*time.Second)))
}

func testClaimExclusive(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed int
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r", Token: int64(i + 1), Now: b.now, TTL: time.Minute})
			require.NoError(t, err)
			if c.Outcome == eventstore.Claimed {
				mu.Lock()
				claimed++
				mu.Unlock()
			} else {
				require.Equal(t, eventstore.Leased, c.Outcome)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, claimed, "exactly one of 8 concurrent claims wins")
}

func testClaimDue(t *testing.T, b *bundle) {
	due := b.now.Add(time.Minute)
	id := b.insert(t, job("a", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "attempts", Value: int64(1)}, bson.E{Key: "nextAttemptAt", Value: due}))
	c := b.claim(t, id)
	require.Equal(t, eventstore.NotDue, c.Outcome)
	require.True(t, c.Event.NextAttemptAt.Equal(due))
	require.Nil(t, b.get(t, b.events, id).Lease, "a refused claim writes nothing")

	early, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r", Token: 9, Now: b.now, TTL: time.Minute, Early: time.Minute})
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, early.Outcome, "Early lets a claim come that much before the due time")
	require.NoError(t, b.store.Release(b.ctx, &early))

	c = b.claimAt(t, id, due, "r1")
	require.Equal(t, eventstore.Claimed, c.Outcome, "due at its due time")
}

// A hand-built failed document without a usable due time is due.
func testClaimNoDueDate(t *testing.T, b *bundle) {
	missing := b.insert(t, job("a", bson.E{Key: "state", Value: int32(2)}))
	wrong := b.insert(t, job("b", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: "tomorrow"}))
	null := b.insert(t, job("c", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: nil}))
	for _, id := range []bson.RawValue{missing, wrong, null} {
		require.Equal(t, eventstore.Claimed, b.claim(t, id).Outcome, id.String())
	}
}

func testClaimNothing(t *testing.T, b *bundle) {
	succeeded := b.insert(t, job("done", bson.E{Key: "state", Value: int32(1)}))
	errored := b.insert(t, job("err", bson.E{Key: "state", Value: int32(3)}))
	other := b.insert(t, bson.D{{Key: "_id", Value: "other"}, {Key: "type", Value: "mail"}})
	bad := b.insert(t, job("bad", bson.E{Key: "attempts", Value: "two"}))
	taken := b.insert(t, job("taken", bson.E{Key: "retrigger", Value: "mine"}))
	gone := bson.RawValue{Type: bson.TypeString, Value: bsonString("gone")}
	for _, tt := range []struct {
		id   bson.RawValue
		want eventstore.Outcome
	}{
		{succeeded, eventstore.Done}, {errored, eventstore.Done}, {other, eventstore.Done},
		{bad, eventstore.Invalid}, {taken, eventstore.Invalid}, {gone, eventstore.Gone},
	} {
		c := b.claim(t, tt.id)
		require.Equal(t, tt.want, c.Outcome, tt.id.String())
		if tt.want == eventstore.Invalid {
			require.Error(t, c.Err)
		}
	}
}

func bsonString(s string) []byte {
	_, v, _ := bson.MarshalValue(s)
	return v
}

// A lease that expired belonged to a run that never finished: the next
// claim takes it over and counts a crash.
func testClaimTakeover(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	first := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, first.Outcome)
	require.Zero(t, first.Event.Crashes)
	later := b.now.Add(31 * time.Second)
	second := b.claimAt(t, id, later, "r2")
	require.Equal(t, eventstore.Claimed, second.Outcome)
	require.EqualValues(t, 1, second.Event.Crashes)
	third := b.claimAt(t, id, later.Add(31*time.Second), "r3")
	require.EqualValues(t, 2, third.Event.Crashes)
	// The crashed runs cannot write their outcome any more.
	require.ErrorIs(t, b.store.Complete(b.ctx, &first, success(later)), eventstore.ErrStale)
	require.ErrorIs(t, b.store.Complete(b.ctx, &second, success(later)), eventstore.ErrStale)
	require.NoError(t, b.store.Complete(b.ctx, &third, success(later)))
	ev := b.get(t, b.events, id)
	require.Equal(t, event.StateSuccess, ev.State)
	require.Zero(t, ev.Crashes, "an outcome clears the crash count")
	require.Nil(t, ev.Lease)
}

func testTakeoverExclusive(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	require.Equal(t, eventstore.Claimed, b.claim(t, id).Outcome)
	later := b.now.Add(time.Minute)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed int
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r", Token: int64(100 + i), Now: later, TTL: time.Minute})
			require.NoError(t, err)
			if c.Outcome == eventstore.Claimed {
				mu.Lock()
				claimed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, claimed, "exactly one of 8 concurrent takeovers wins")
	require.EqualValues(t, 1, b.get(t, b.events, id).Crashes)
}

// Documents written by hand hold doubles (mongosh's default number) and
// explicit nulls; they are claimed and transitioned like any other.
func testClaimDoubles(t *testing.T, b *bundle) {
	id := b.insert(t, job("a", bson.E{Key: "state", Value: 2.0}, bson.E{Key: "attempts", Value: 1.0}, bson.E{Key: "version", Value: 3.0},
		bson.E{Key: "nextAttemptAt", Value: b.now.Add(-time.Second)}))
	c := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, success(b.now)))
	ev := b.get(t, b.events, id)
	require.Equal(t, event.StateSuccess, ev.State)
	require.EqualValues(t, 4, ev.Version)

	nulls := b.insert(t, job("n", bson.E{Key: "state", Value: nil}, bson.E{Key: "attempts", Value: nil}, bson.E{Key: "version", Value: nil}))
	c = b.claim(t, nulls)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, b.now.Add(time.Hour), 1)))
	raw := b.raw(t, b.events, nulls)
	require.Equal(t, bson.TypeInt32, raw.Lookup("state").Type, "state is written as int32")
	require.Equal(t, bson.TypeInt64, raw.Lookup("version").Type, "version is written as int64")
	require.Equal(t, bson.TypeInt64, raw.Lookup("attempts").Type, "attempts are written as int64")
}

func testClaimDefaultType(t *testing.T, b *bundle) {
	st := eventstore.New(b.db, eventstore.Options{Schema: event.Schema{DefaultType: "job", AttemptsField: "count"}})
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: "seed"}, {Key: "state", Value: int32(0)}, {Key: "count", Value: int32(0)}})
	require.NoError(t, err)
	require.NoError(t, b.events.InsertOne(b.ctx, bson.Raw(raw)))
	id := bson.Raw(raw).Lookup("_id")
	c, err := st.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r", Token: 1, Now: b.now, TTL: time.Minute})
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, c.Outcome, "a document without a type is of the default type")
	require.NoError(t, st.Complete(b.ctx, &c, failure(b.now, b.now.Add(time.Hour), 1)))
	doc := b.raw(t, b.events, id)
	require.EqualValues(t, 1, doc.Lookup("count").AsInt64(), "the schema's counter is written")
	_, err = doc.LookupErr("attempts")
	require.Error(t, err)
	_, err = doc.LookupErr("type")
	require.Error(t, err, "the type stays unset")
}

// A claim whose answer was lost (the server applied it, the client timed
// out) is sent again, the very same request: it finds its own lease and
// returns the event as claimed, counting nothing. Another claim still
// finds the event leased.
func testClaimRetriedWithItsToken(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	r := eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r1", Token: 77, Now: b.now, TTL: 30 * time.Second}
	first, err := b.store.ClaimEvent(b.ctx, r)
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, first.Outcome)
	again, err := b.store.ClaimEvent(b.ctx, r) // the answer of the first was lost
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, again.Outcome, "the very same claim, sent again, finds its own lease")
	require.Zero(t, again.Event.Crashes, "a retried claim is not a crash")
	ev := b.get(t, b.events, id)
	require.EqualValues(t, 77, ev.Lease.Token)
	require.True(t, ev.Lease.Until.Equal(b.now.Add(30*time.Second)), "the same lease, written again")
	require.Zero(t, ev.Crashes)
	require.Equal(t, eventstore.Leased, b.claimAt(t, id, b.now.Add(time.Second), "r2").Outcome, "others still find it leased")
	require.NoError(t, b.store.Complete(b.ctx, &again, success(b.now)))
	require.Equal(t, event.StateSuccess, b.get(t, b.events, id).State)
	done, err := b.store.ClaimEvent(b.ctx, r)
	require.NoError(t, err)
	require.Equal(t, eventstore.Done, done.Outcome, "once its run recorded an outcome, the token claims nothing")
}

// A takeover whose answer was lost, sent again, counts its crash once.
func testTakeoverRetriedWithItsToken(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	require.Equal(t, eventstore.Claimed, b.claim(t, id).Outcome)
	r := eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r2", Token: 99, Now: b.now.Add(31 * time.Second), TTL: 30 * time.Second}
	first, err := b.store.ClaimEvent(b.ctx, r)
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, first.Outcome)
	require.EqualValues(t, 1, first.Event.Crashes)
	for range 2 {
		again, err := b.store.ClaimEvent(b.ctx, r)
		require.NoError(t, err)
		require.Equal(t, eventstore.Claimed, again.Outcome)
		require.EqualValues(t, 1, again.Event.Crashes, "a retried takeover counts its crash once")
	}
	require.EqualValues(t, 1, b.get(t, b.events, id).Crashes)
}

// Abandoning a claim removes its lease if it is still the claim's, and
// keeps the crashes counted before it: the next claim runs the event
// without counting a crash, and one more real crash still adds up.
func testAbandon(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	require.Equal(t, eventstore.Claimed, b.claim(t, id).Outcome)
	later := b.now.Add(31 * time.Second)
	taken := b.claimAt(t, id, later, "r2")
	require.EqualValues(t, 1, taken.Event.Crashes)
	require.NoError(t, b.store.Abandon(b.ctx, &taken))
	ev := b.get(t, b.events, id)
	require.Nil(t, ev.Lease, "the lease is gone")
	require.EqualValues(t, 1, ev.Crashes, "the crash before it is kept")
	require.NoError(t, b.store.Abandon(b.ctx, &taken), "abandoning twice, or a claim never applied, is harmless")

	next := b.claimAt(t, id, later, "r3")
	require.Equal(t, eventstore.Claimed, next.Outcome, "claimed at once, not taken over")
	require.EqualValues(t, 1, next.Event.Crashes, "an abandoned claim is not a crash")
	require.NoError(t, b.store.Abandon(b.ctx, &taken), "a stale claim's abandon leaves the new lease alone")
	require.EqualValues(t, next.Lease.Token, b.get(t, b.events, id).Lease.Token)
}

// Recorded finds whether a transition whose answer was lost was applied:
// in the event, after it moved on, and in the archive for an error.
func testRecorded(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	c := b.claim(t, id)
	fail := failure(b.now, b.now.Add(-time.Second), 1)
	ok, err := b.store.Recorded(b.ctx, &c, fail)
	require.NoError(t, err)
	require.False(t, ok, "nothing written yet")
	require.NoError(t, b.store.Complete(b.ctx, &c, fail))
	require.ErrorIs(t, b.store.Complete(b.ctx, &c, fail), eventstore.ErrStale, "the try after a lost answer finds nothing")
	ok, err = b.store.Recorded(b.ctx, &c, fail)
	require.NoError(t, err)
	require.True(t, ok, "the first try was applied")

	// The event runs again and errors; the archive holds it.
	c2 := b.claimAt(t, id, b.now.Add(time.Second), "r1")
	require.Equal(t, eventstore.Claimed, c2.Outcome)
	ok, err = b.store.Recorded(b.ctx, &c, fail)
	require.NoError(t, err)
	require.True(t, ok, "found after the event moved on")
	at := b.now.Add(2 * time.Second)
	errored := eventstore.Transition{To: event.StateError, At: at, Attempts: 2, Reason: event.ReasonExhausted,
		LastError: event.LastError{Message: "boom", At: at},
		Run:       event.Attempt{At: at, Outcome: "error", Error: "boom", Number: 2, Replica: "r1"}}
	require.NoError(t, b.store.Complete(b.ctx, &c2, errored))
	require.NoError(t, b.store.MoveToErrors(b.ctx, b.raw(t, b.events, id), eventstore.Archive{Reason: event.ReasonExhausted, At: at}))
	require.Nil(t, b.get(t, b.events, id))
	ok, err = b.store.Recorded(b.ctx, &c2, errored)
	require.NoError(t, err)
	require.True(t, ok, "an error found in the archive")
	ok, err = b.store.Recorded(b.ctx, &c, fail)
	require.NoError(t, err)
	require.True(t, ok, "a failure found in the archive of the event it moved on to")

	other := b.insert(t, job("b"))
	c3 := b.claim(t, other)
	require.NoError(t, b.store.Release(b.ctx, &c3)) // changed meanwhile: never written
	ok, err = b.store.Recorded(b.ctx, &c3, success(b.now))
	require.NoError(t, err)
	require.False(t, ok)
}

// An expired lease is left to its holder for the claim's Grace: a claim
// inside it finds the event leased, one after it takes it over.
func testTakeoverAfterGrace(t *testing.T, b *bundle) {
	id := b.insert(t, job("a"))
	require.Equal(t, eventstore.Claimed, b.claim(t, id).Outcome)
	claim := func(now time.Time, token int64) eventstore.Claim {
		c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "r2", Token: token, Now: now, TTL: 30 * time.Second, Grace: time.Second})
		require.NoError(t, err)
		return c
	}
	require.Equal(t, eventstore.Leased, claim(b.now.Add(30500*time.Millisecond), 50).Outcome, "expired, inside its grace")
	taken := claim(b.now.Add(31500*time.Millisecond), 51)
	require.Equal(t, eventstore.Claimed, taken.Outcome, "expired, past its grace")
	require.EqualValues(t, 1, taken.Event.Crashes)
}
