package eventstoretest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// A flow state is written only over the revision it was read at: of two
// writers, the second finds ErrStale and nothing of its write lands.
func testFlowStateIsWrittenOverItsRevision(t *testing.T, b *bundle) {
	st, err := b.store.LoadFlows(b.ctx, []string{"job"})
	require.NoError(t, err)
	require.Empty(t, st, "no document before the first write")

	f := eventstore.FlowState{Type: "job", Breaker: eventstore.Breaker{State: "open", Since: b.now, Trips: 1, Reason: "18 of 20 failed",
		NextProbe: b.now.Add(5 * time.Second), Interval: 5 * time.Second, Probe: &event.Lease{Owner: "r1", Token: 9, Until: b.now.Add(time.Minute)}},
		Window: eventstore.Window{Head: 7, Width: time.Second, Runs: []int64{1, 2}, Fails: []int64{0, 2}},
		Pause:  &eventstore.Pause{By: "ops", At: b.now, Until: b.now.Add(time.Hour), Reason: "partner maintenance", Source: "operator"},
		Limits: "rate 5/s", LimitsBy: "r1", UpdatedAt: b.now}
	require.NoError(t, b.store.SaveFlow(b.ctx, f))
	require.ErrorIs(t, b.store.SaveFlow(b.ctx, f), eventstore.ErrStale, "a second first write finds the document there")

	st, err = b.store.LoadFlows(b.ctx, []string{"job", "other"})
	require.NoError(t, err)
	require.Len(t, st, 1)
	got := st[0]
	require.EqualValues(t, 1, got.Rev)
	require.Equal(t, "open", got.Breaker.State)
	require.True(t, got.Breaker.NextProbe.Equal(f.Breaker.NextProbe))
	require.Equal(t, 5*time.Second, got.Breaker.Interval)
	require.Equal(t, int64(9), got.Breaker.Probe.Token)
	require.Equal(t, []int64{0, 2}, got.Window.Fails)
	require.Equal(t, "partner maintenance", got.Pause.Reason)
	require.True(t, got.Pause.Until.Equal(f.Pause.Until))

	next := got
	next.Pause = nil
	require.NoError(t, b.store.SaveFlow(b.ctx, next))
	require.ErrorIs(t, b.store.SaveFlow(b.ctx, got), eventstore.ErrStale, "a write over an old revision lands nothing")
	all, err := b.store.LoadFlows(b.ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 1, "every type's state, and no other document")
	require.Nil(t, all[0].Pause)
	require.EqualValues(t, 2, all[0].Rev)
}

// Concurrency slots: at most limit holders, each released by its token; a
// holder whose run ended without a release makes room once its bound
// passes; the last release leaves no document behind.
func testSlots(t *testing.T, b *bundle) {
	name := eventstore.FlowID("slot", "job", "k1")
	take := func(token int64, until time.Time) bool {
		ok, err := b.store.AcquireSlot(b.ctx, name, 2, eventstore.Slot{Owner: "r1", Token: token, Until: until}, b.now)
		require.NoError(t, err)
		return ok
	}
	require.True(t, take(1, b.now.Add(time.Minute)))
	require.True(t, take(2, b.now.Add(-time.Second))) // its run's bound already passed
	require.True(t, take(3, b.now.Add(time.Minute)), "a holder past its bound makes room")
	require.False(t, take(4, b.now.Add(time.Minute)), "two live holders fill two slots")
	require.NoError(t, b.store.ReleaseSlot(b.ctx, name, 1))
	require.NoError(t, b.store.ReleaseSlot(b.ctx, name, 1), "a second release is a no-op")
	require.True(t, take(4, b.now.Add(time.Minute)))
	require.NoError(t, b.store.ReleaseSlot(b.ctx, name, 3))
	require.NoError(t, b.store.ReleaseSlot(b.ctx, name, 4))
	n, err := b.db.Collection(eventstore.DefaultFlow).Count(b.ctx, bson.D{})
	require.NoError(t, err)
	require.Zero(t, n, "a key that goes quiet leaves nothing")
}

// ReapSlots drops the holders past their bound from a type's key slots,
// and names each key once per holder dropped; live holders, the type's
// recovery slot and other types' slots stay.
func testReapSlots(t *testing.T, b *bundle) {
	take := func(name string, limit int, token int64, until time.Time) { // a minute ago, when each was live
		ok, err := b.store.AcquireSlot(b.ctx, name, limit, eventstore.Slot{Owner: "r1", Token: token, Until: until}, b.now.Add(-time.Minute))
		require.NoError(t, err)
		require.True(t, ok)
	}
	past, live := b.now.Add(-time.Second), b.now.Add(time.Minute)
	take(eventstore.FlowID("slot", "job", "k1"), 3, 1, past)
	take(eventstore.FlowID("slot", "job", "k1"), 3, 2, past)
	take(eventstore.FlowID("slot", "job", "k1"), 3, 3, live)
	take(eventstore.FlowID("slot", "job", "k2"), 1, 4, live)
	take(eventstore.FlowID("slot", "job"), 1, 5, past)         // the recovery wave's
	take(eventstore.FlowID("slot", "jobs", "k1"), 1, 6, past)  // another type's
	take(eventstore.FlowID("slot", "job-x", "k1"), 1, 7, past) // another type's
	keys, err := b.store.ReapSlots(b.ctx, "job", b.now)
	require.NoError(t, err)
	require.Equal(t, []string{"k1", "k1"}, keys)
	keys, err = b.store.ReapSlots(b.ctx, "job", b.now)
	require.NoError(t, err)
	require.Empty(t, keys, "nothing left to drop")
	ok, err := b.store.AcquireSlot(b.ctx, eventstore.FlowID("slot", "job", "k1"), 2, eventstore.Slot{Owner: "r1", Token: 8, Until: live}, b.now)
	require.NoError(t, err)
	require.True(t, ok, "the live holder stayed: one of two slots held")
	n, err := b.db.Collection(eventstore.DefaultFlow).Count(b.ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 5, n, "the other slots untouched")
}

func testSlotsAreExclusive(t *testing.T, b *bundle) {
	name := eventstore.FlowID("slot", "job")
	var (
		wg  sync.WaitGroup
		won atomic.Int32
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := b.store.AcquireSlot(b.ctx, name, 3, eventstore.Slot{Owner: "r", Token: int64(i + 1), Until: b.now.Add(time.Minute)}, b.now)
			require.NoError(t, err)
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 3, won.Load(), "8 concurrent takers of 3 slots: 3 win")
}

// The rate limit hands out one turn per interval, a burst of them at once,
// reserves turns up to a wait, and says when to come back beyond it.
func testRate(t *testing.T, b *bundle) {
	name := eventstore.FlowID("rate", "job")
	take := func(now time.Time) (bool, time.Duration) {
		ok, at, err := b.store.TakeRate(b.ctx, name, now, 100*time.Millisecond, 200*time.Millisecond, 150*time.Millisecond) // 10/s, burst 3
		require.NoError(t, err)
		return ok, at.Sub(now)
	}
	for i := range 3 {
		ok, wait := take(b.now)
		require.True(t, ok, "turn %d of a burst of 3", i+1)
		require.Zero(t, wait)
	}
	ok, wait := take(b.now)
	require.True(t, ok, "the fourth reserves the next turn")
	require.Equal(t, 100*time.Millisecond, wait)
	ok, back := take(b.now)
	require.False(t, ok, "the fifth would wait longer than 150ms")
	require.Equal(t, 50*time.Millisecond, back, "it may reserve 50ms from now")
	ok, wait = take(b.now.Add(back))
	require.True(t, ok)
	require.Equal(t, 150*time.Millisecond, wait, "the turn at 200ms")
	ok, wait = take(b.now.Add(time.Hour))
	require.True(t, ok, "after a quiet hour, a turn at once")
	require.Zero(t, wait)
}

// An ordered key's event sees the unfinished events before it: stamped
// with a smaller order, or not stamped yet and holding the same value.
func testEarlierOfKey(t *testing.T, b *bundle) {
	key := func(v any) bson.E { return bson.E{Key: "payload", Value: bson.D{{Key: "customer", Value: v}}} }
	stamp := func(k string, seq int64) bson.E {
		return bson.E{Key: "retrigger", Value: bson.D{{Key: "key", Value: k}, {Key: "seq", Value: seq}}}
	}
	me := b.insert(t, job("me", key("c1"), stamp("h1", 20)))
	q := eventstore.KeyQuery{Type: "job", ID: me, Path: "payload.customer", Value: b.raw(t, b.events, me).Lookup("payload", "customer"), Key: "h1", Seq: 20}
	earlier := func() bool {
		e, err := b.store.EarlierOfKey(b.ctx, q)
		require.NoError(t, err)
		if e.Found {
			doc := b.raw(t, b.events, e.ID)
			ev, err := event.Parse(doc)
			require.NoError(t, err)
			require.True(t, ev.State.Runnable(), "the one found is unfinished")
			_, stamped := doc.Lookup("retrigger", "key").StringValueOK()
			require.Equal(t, stamped, e.Placed)
		}
		return e.Found
	}
	require.False(t, earlier(), "alone")
	b.insert(t, job("later", key("c1"), stamp("h1", 30)))
	b.insert(t, job("done", key("c1"), stamp("h1", 10), bson.E{Key: "state", Value: int32(1)}))
	b.insert(t, job("other key", key("c2"), stamp("h2", 5)))
	b.insert(t, bson.D{{Key: "_id", Value: "other type"}, {Key: "type", Value: "x"}, key("c1"), stamp("h1", 5)})
	require.False(t, earlier(), "later, finished, other keys and types do not count")
	b.insert(t, job("unstamped", key("c1")))
	require.True(t, earlier(), "an unclaimed event of the same value may come first")
	_, err := b.events.DeleteOne(b.ctx, bson.D{{Key: "_id", Value: "unstamped"}})
	require.NoError(t, err)
	b.insert(t, job("failed", key("c1"), stamp("h1", 15), bson.E{Key: "state", Value: int32(2)}))
	require.True(t, earlier(), "a failed event before it holds the key")
}

// A parked event gives back its lease, keeps its crash count, is stamped
// with its key, and is woken by WakeNext in its key's order; a wake clears
// the mark, which the claim of a parked event does not need.
func testParkAndWake(t *testing.T, b *bundle) {
	id1 := b.insert(t, job("p1", bson.E{Key: "retrigger", Value: bson.D{{Key: "crashes", Value: int64(2)}}}))
	id2 := b.insert(t, job("p2"))
	c1, c2 := b.claim(t, id1), b.claim(t, id2)
	require.Equal(t, eventstore.Claimed, c1.Outcome)
	require.NoError(t, b.store.Park(b.ctx, &c2, b.now, "k", 20))
	require.NoError(t, b.store.Park(b.ctx, &c1, b.now.Add(time.Second), "k", 10))
	require.ErrorIs(t, b.store.Park(b.ctx, &c1, b.now, "k", 10), eventstore.ErrLeaseLost, "a park needs the lease")
	ev := b.get(t, b.events, id1)
	require.Nil(t, ev.Lease)
	require.EqualValues(t, 2, ev.Crashes, "a park is no outcome: the crash count stays")
	require.Equal(t, "k", ev.Key)
	require.EqualValues(t, 10, ev.Seq)
	require.True(t, ev.ParkedAt.Equal(b.now.Add(time.Second)))

	woke, err := b.store.WakeNext(b.ctx, "job", "k", true, b.now)
	require.NoError(t, err)
	require.True(t, woke)
	require.True(t, b.get(t, b.events, id1).ParkedAt.IsZero(), "ordered: the first of the key wakes")
	require.True(t, b.get(t, b.events, id1).WokenAt.Equal(b.now), "stamped with its wake")
	require.False(t, b.get(t, b.events, id2).ParkedAt.IsZero())
	woke, err = b.store.WakeNext(b.ctx, "job", "k", true, b.now)
	require.NoError(t, err)
	require.False(t, woke, "the first of the key is not parked: its message is on its way")

	woke, err = b.store.WakeNext(b.ctx, "job", "k", false, b.now)
	require.NoError(t, err)
	require.True(t, woke, "unordered: the one parked longest")
	require.True(t, b.get(t, b.events, id2).ParkedAt.IsZero())

	// A claimed parked event runs and its outcome clears the mark.
	c := b.claim(t, id2)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Park(b.ctx, &c, b.now, "k", 20))
	c = b.claim(t, id2)
	require.Equal(t, eventstore.Claimed, c.Outcome, "a parked event can be claimed")
	tr := success(b.now)
	tr.Key, tr.Seq = "k", 25
	require.NoError(t, b.store.Complete(b.ctx, &c, tr))
	ev = b.get(t, b.events, id2)
	require.True(t, ev.ParkedAt.IsZero())
	require.EqualValues(t, 20, ev.Seq, "the order only ever goes down")
}

// A new event inserted with a nextAttemptAt ahead runs at that time, and
// not before; one the application reset from failed runs at once.
func testClaimDelayedFirstRun(t *testing.T, b *bundle) {
	later := b.now.Add(time.Minute)
	delayed := b.insert(t, job("delayed", bson.E{Key: "nextAttemptAt", Value: later}))
	c := b.claim(t, delayed)
	require.Equal(t, eventstore.NotDue, c.Outcome)
	require.True(t, c.Event.NextAttemptAt.Equal(later))
	c = b.claimAt(t, delayed, later, "r1")
	require.Equal(t, eventstore.Claimed, c.Outcome, "due at its time")

	reset := b.insert(t, job("reset", bson.E{Key: "nextAttemptAt", Value: later}, bson.E{Key: "version", Value: int64(3)}))
	require.Equal(t, eventstore.Claimed, b.claim(t, reset).Outcome, "a reset event (version past 0) runs at once")
}
