package eventstoretest

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store"
)

// writeCase is one kind of write to an event and whether the relay's
// change stream delivers its change.
type writeCase struct {
	name    string
	setup   func(t *testing.T, b *bundle, id bson.RawValue) // before the stream opens
	write   func(t *testing.T, b *bundle, id bson.RawValue) // the write under test
	relayed bool
}

// The relay's change stream (Store.Watch) delivers every change the relay
// acts on, and none of those that only take, renew or give up a lease to
// park: every kind of write retrigger and applications make, each on an
// event of its own, each once.
func testChangeStreamDropsWhatTheRelayIgnores(t *testing.T, b *bundle) {
	noHistory := eventstore.New(b.db, eventstore.Options{History: -1})
	claimed := func(t *testing.T, b *bundle, id bson.RawValue) { b.claimed(t, id) }
	claimedAgo := func(t *testing.T, b *bundle, id bson.RawValue) {
		b.token++
		c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: "gone", Token: b.token, Now: b.now.Add(-time.Hour), TTL: time.Minute})
		require.NoError(t, err)
		require.Equal(t, eventstore.Claimed, c.Outcome)
	}
	failed := func(t *testing.T, b *bundle, id bson.RawValue) {
		c := b.claimed(t, id)
		require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, b.now.Add(-time.Millisecond), 1)))
	}
	parked := func(key string) func(t *testing.T, b *bundle, id bson.RawValue) {
		return func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.claimed(t, id)
			require.NoError(t, b.store.Park(b.ctx, &c, b.now, key, 7))
		}
	}
	app := func(update bson.D) func(t *testing.T, b *bundle, id bson.RawValue) {
		return func(t *testing.T, b *bundle, id bson.RawValue) {
			n, err := b.events.UpdateOne(b.ctx, bson.D{{Key: "_id", Value: id}}, update, false)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		}
	}
	complete := func(st *eventstore.Store, tr func(*bundle) eventstore.Transition) func(t *testing.T, b *bundle, id bson.RawValue) {
		return func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, st.Complete(b.ctx, &c, tr(b)))
		}
	}
	keyed := func(tr eventstore.Transition) eventstore.Transition { tr.Key, tr.Seq = "k", 7; return tr }
	set := func(fields ...bson.E) bson.D { return bson.D{{Key: "$set", Value: bson.D(fields)}} }

	cases := []writeCase{
		// a claim, a renewal, a takeover: the event is leased after each
		{"claim of a new event, creating retrigger", nil, func(t *testing.T, b *bundle, id bson.RawValue) { b.claimed(t, id) }, false},
		{"claim of a failed event, retrigger there", failed, func(t *testing.T, b *bundle, id bson.RawValue) { b.claimed(t, id) }, false},
		{"claim after a release left retrigger empty", func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.claimed(t, id)
			require.NoError(t, b.store.Release(b.ctx, &c))
		}, func(t *testing.T, b *bundle, id bson.RawValue) { b.claimed(t, id) }, false},
		{"renewal", claimed, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.RenewLease(b.ctx, &c, b.now.Add(time.Hour)))
		}, false},
		{"takeover of an expired lease", claimedAgo, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.claimed(t, id)
			require.EqualValues(t, 1, c.Event.Crashes)
		}, false},
		// a park: the relay publishes nothing for it; a release and a
		// wake bring the event back
		{"park, held by its type", claimed, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Park(b.ctx, &c, b.now, "", 0))
		}, false},
		{"park, waiting for its key", claimed, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Park(b.ctx, &c, b.now, "k", 7))
		}, false},
		{"park again after a wake, key and order as they were", func(t *testing.T, b *bundle, id bson.RawValue) {
			parked("again")(t, b, id)
			woke, err := b.store.WakeNext(b.ctx, "job", "again", true, b.now)
			require.NoError(t, err)
			require.True(t, woke)
			b.claimed(t, id)
		}, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Park(b.ctx, &c, b.now.Add(time.Second), "again", 7))
		}, false},
		{"wake", parked("w"), func(t *testing.T, b *bundle, id bson.RawValue) {
			woke, err := b.store.WakeNext(b.ctx, "job", "w", true, b.now)
			require.NoError(t, err)
			require.True(t, woke)
		}, true},
		{"release after a stale run", claimed, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Release(b.ctx, &c))
		}, true},
		{"abandon: a claim that never ran", claimed, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Abandon(b.ctx, &c))
		}, true},
		{"release of a crashed, parked run", func(t *testing.T, b *bundle, id bson.RawValue) {
			parked("r")(t, b, id)
			claimedAgo(t, b, id)
			b.claimed(t, id) // a takeover: crashes 1
		}, func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.lastClaim[id.String()]
			require.NoError(t, b.store.Release(b.ctx, &c))
		}, true},
		// outcomes
		{"success", claimed, complete(b.store, func(b *bundle) eventstore.Transition { return success(b.now) }), false},
		{"failure", claimed, complete(b.store, func(b *bundle) eventstore.Transition { return failure(b.now, b.now.Add(time.Minute), 1) }), true},
		{"error", claimed, complete(b.store, func(b *bundle) eventstore.Transition {
			tr := failure(b.now, time.Time{}, 1)
			tr.To, tr.Reason = event.StateError, event.ReasonPermanent
			return tr
		}), true},
		{"failure of a keyed event, with its key and order", claimed, complete(b.store, func(b *bundle) eventstore.Transition {
			return keyed(failure(b.now, b.now.Add(time.Minute), 1))
		}), true},
		{"failure of a keyed event, histories off", claimed, complete(noHistory, func(b *bundle) eventstore.Transition {
			return keyed(failure(b.now, b.now.Add(time.Minute), 1))
		}), true},
		{"failure of a parked event, histories off", parked("p"), func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.claimed(t, id)
			require.NoError(t, noHistory.Complete(b.ctx, &c, keyed(failure(b.now, b.now.Add(time.Minute), 1))))
		}, true},
		// an operator's actions
		{"retry now", func(t *testing.T, b *bundle, id bson.RawValue) {
			c := b.claimed(t, id)
			require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, b.now.Add(time.Hour), 1)))
		}, func(t *testing.T, b *bundle, id bson.RawValue) {
			a, why, err := b.store.Retry(b.ctx, id, b.op())
			require.NoError(t, err)
			require.Equal(t, eventstore.Applied, a, why)
		}, true},
		// the application's edits
		{"reset to new", failed, app(set(bson.E{Key: "state", Value: int32(0)})), true},
		{"due earlier", failed, app(set(bson.E{Key: "nextAttemptAt", Value: b.now})), true},
		{"more attempts", failed, app(set(bson.E{Key: "maxAttempts", Value: int64(9)})), true},
		{"a field of the payload", nil, app(set(bson.E{Key: "payload.to", Value: "ada@example.com"})), true},
		{"set to error", failed, app(set(bson.E{Key: "state", Value: int32(3)})), true},
		{"set to success", failed, app(set(bson.E{Key: "state", Value: int32(1)})), false},
		{"retrigger's bookkeeping removed", failed, app(bson.D{{Key: "$unset", Value: bson.D{{Key: "retrigger", Value: ""}}}}), true},
		{"replaced", nil, func(t *testing.T, b *bundle, id bson.RawValue) {
			n, err := b.events.ReplaceOne(b.ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{}}}, false)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		}, true},
		{"deleted", nil, func(t *testing.T, b *bundle, id bson.RawValue) {
			n, err := b.events.DeleteOne(b.ctx, bson.D{{Key: "_id", Value: id}})
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		}, false},
	}
	ids := make([]bson.RawValue, len(cases))
	for i, c := range cases {
		ids[i] = b.insert(t, job(fmt.Sprintf("w%02d", i)))
		if c.setup != nil {
			c.setup(t, b, ids[i])
		}
	}
	cs, err := b.store.Watch(b.ctx, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close(b.ctx) })
	for i, c := range cases {
		c.write(t, b, ids[i])
	}
	b.insert(t, job("last"))
	relayed := map[string][]string{}
	for {
		ch, err := cs.Next(b.ctx)
		require.NoError(t, err)
		id, _ := ch.ID.StringValueOK()
		if id == "last" {
			break
		}
		relayed[id] = append(relayed[id], ch.Op)
	}
	var wrong []string
	for i, c := range cases {
		ops, got := relayed[fmt.Sprintf("w%02d", i)]
		if got != c.relayed || len(ops) > 1 {
			wrong = append(wrong, fmt.Sprintf("%s: relayed %v (%v), want %v", c.name, got, ops, c.relayed))
		}
	}
	sort.Strings(wrong)
	require.Empty(t, wrong)
}

// claimed claims an event of type job at b.now and remembers the claim.
func (b *bundle) claimed(t *testing.T, id bson.RawValue) eventstore.Claim {
	t.Helper()
	c := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c.Outcome, "claiming %s", id)
	if b.lastClaim == nil {
		b.lastClaim = map[string]eventstore.Claim{}
	}
	b.lastClaim[id.String()] = c
	return c
}

// changeEvent is a change event as MongoDB writes it, for the fixtures of
// testChangeMatchOnChangeEvents.
func changeEvent(op string, state any, updated bson.D, removed ...string) bson.D {
	d := bson.D{{Key: "operationType", Value: op}}
	if updated != nil {
		r := bson.A{}
		for _, s := range removed {
			r = append(r, s)
		}
		d = append(d, bson.E{Key: "updateDescription", Value: bson.D{
			{Key: "updatedFields", Value: updated}, {Key: "removedFields", Value: r}, {Key: "truncatedArrays", Value: bson.A{}}}})
	}
	if state != nil {
		d = append(d, bson.E{Key: "fullDocument", Value: bson.D{{Key: "type", Value: "job"}, {Key: "state", Value: state}}})
	}
	return d
}

// The change stream's $match (eventstore.ChangeMatch) applied as a query
// to change events written as MongoDB writes them, in both formats of the
// update description: MongoDB 5.0+ (a created subdocument listed whole,
// fields in the order the update applied them) and 4.x (every path as
// the update named it, in name order). This runs the predicate through a
// server's query engine where the server has no change streams (the wire
// suite), and shows why the order of the fields does not matter.
func testChangeMatchOnChangeEvents(t *testing.T, b *bundle) {
	var (
		at    = bson.NewDateTimeFromTime(b.now)
		lease = bson.D{{Key: "owner", Value: "r1"}, {Key: "token", Value: int64(7)}, {Key: "until", Value: at}}
		hist  = bson.A{bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "failed"}}}
		upd   = store.OpUpdate
		st0   = int32(0)
		st2   = int32(2)
	)
	u := func(kv ...any) bson.D {
		var d bson.D
		for i := 0; i < len(kv); i += 2 {
			d = append(d, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return d
	}
	fixtures := []struct {
		name    string
		event   bson.D
		relayed bool
		// byFirstField: dropped by the comparison of the first field
		// (Features.NoDocumentOrder)
		byFirstField bool
	}{
		{"insert", changeEvent(store.OpInsert, st0, nil), true, false},
		{"insert of a succeeded event", changeEvent(store.OpInsert, int32(1), nil), false, false},
		{"insert of an event without a state", bson.D{{Key: "operationType", Value: store.OpInsert}, {Key: "fullDocument", Value: bson.D{{Key: "type", Value: "job"}}}}, true, false},
		{"replace", changeEvent(store.OpReplace, st0, nil), true, false},
		{"delete", changeEvent(store.OpDelete, nil, nil), false, false},
		{"drop", changeEvent("drop", nil, nil), true, false},
		{"invalidate", changeEvent(store.OpInvalidate, nil, nil), true, false},
		{"claim creating retrigger (5.0+)", changeEvent(upd, st0, u("retrigger", u("lease", lease))), false, true},
		{"claim creating retrigger (4.x)", changeEvent(upd, st0, u("retrigger.lease", lease)), false, true},
		{"claim", changeEvent(upd, st2, u("retrigger.lease", lease)), false, true},
		{"takeover, lease first", changeEvent(upd, st2, u("retrigger.lease", lease, "retrigger.crashes", int64(1))), false, true},
		{"takeover, crashes first", changeEvent(upd, st2, u("retrigger.crashes", int64(1), "retrigger.lease", lease)), false, true},
		{"renewal", changeEvent(upd, st2, u("retrigger.lease.until", at)), false, true},
		{"park", changeEvent(upd, st2, u("retrigger.parkedAt", at), "retrigger.lease"), false, true},
		{"keyed park (4.x)", changeEvent(upd, st2, u("retrigger.key", "k", "retrigger.parkedAt", at, "retrigger.seq", int64(7)), "retrigger.lease"), false, true},
		{"keyed park, parkedAt first", changeEvent(upd, st2, u("retrigger.parkedAt", at, "retrigger.key", "k", "retrigger.seq", int64(7)), "retrigger.lease"), false, true},
		{"keyed park, order first", changeEvent(upd, st2, u("retrigger.seq", int64(7), "retrigger.parkedAt", at, "retrigger.key", "k"), "retrigger.lease"), false, true},
		{"release", changeEvent(upd, st2, u(), "retrigger.lease"), true, false},
		{"release of a crashed, parked run", changeEvent(upd, st2, u(), "retrigger.lease", "retrigger.crashes", "retrigger.parkedAt"), true, false},
		{"abandon", changeEvent(upd, st2, u(), "retrigger.lease"), true, false},
		{"wake", changeEvent(upd, st2, u("retrigger.wokenAt", at), "retrigger.parkedAt"), true, false},
		{"failure", changeEvent(upd, st2, u("state", st2, "version", int64(1), "updatedAt", at, "attempts", int64(1), "nextAttemptAt", at, "retrigger.history", hist), "retrigger.lease"), true, false},
		{"failure (4.x)", changeEvent(upd, st2, u("attempts", int64(1), "nextAttemptAt", at, "retrigger.history", hist, "state", st2, "updatedAt", at, "version", int64(1)), "retrigger.lease"), true, false},
		{"keyed failure, histories off (4.x)", changeEvent(upd, st2, u("attempts", int64(1), "nextAttemptAt", at, "retrigger.key", "k", "retrigger.seq", int64(7), "state", st2, "version", int64(1)), "retrigger.lease"), true, false},
		{"keyed failure, key first", changeEvent(upd, st2, u("retrigger.key", "k", "retrigger.seq", int64(7), "state", st2, "version", int64(1)), "retrigger.lease"), true, false},
		{"success", changeEvent(upd, int32(1), u("state", int32(1), "version", int64(1)), "retrigger.lease"), false, false},
		{"success, looked up after a reset", changeEvent(upd, st0, u("state", int32(1), "version", int64(1)), "retrigger.lease"), false, false},
		{"error", changeEvent(upd, int32(3), u("state", int32(3), "version", int64(1)), "retrigger.lease"), true, false},
		{"retry now", changeEvent(upd, st2, u("nextAttemptAt", at, "version", int64(2), "updatedAt", at, "retrigger.history", hist)), true, false},
		{"reset to new", changeEvent(upd, st0, u("state", st0)), true, false},
		{"due earlier", changeEvent(upd, st2, u("nextAttemptAt", at)), true, false},
		{"a field of the payload", changeEvent(upd, st0, u("payload.to", "ada@example.com")), true, false},
		{"a field of a succeeded event", changeEvent(upd, int32(1), u("payload.to", "ada@example.com")), false, false},
		{"retrigger's bookkeeping removed", changeEvent(upd, st2, u(), "retrigger"), true, false},
		// By the first field: whatever else it sets, an update that sets
		// a lease leaves the event leased, and the relay publishes nothing
		// for a leased event.
		{"lease and state, lease first", changeEvent(upd, st0, u("retrigger.lease", lease, "state", st0)), false, true},
		{"lease and state, state first", changeEvent(upd, st0, u("state", st0, "retrigger.lease", lease)), true, false},
	}
	coll := b.db.Collection("change_events")
	for i, f := range fixtures {
		require.NoError(t, coll.InsertOne(b.ctx, append(bson.D{{Key: "_id", Value: int32(i)}}, f.event...)), f.name)
	}
	docs, err := coll.Find(b.ctx, eventstore.ChangeMatch(), store.FindOptions{})
	require.NoError(t, err)
	got := map[int32]bool{}
	for _, d := range docs {
		got[d.Lookup("_id").Int32()] = true
	}
	var wrong, unordered []string
	for i, f := range fixtures {
		switch {
		case f.byFirstField && b.features.NoDocumentOrder:
			if got[int32(i)] {
				unordered = append(unordered, f.name)
			}
		case got[int32(i)] != f.relayed:
			wrong = append(wrong, fmt.Sprintf("%s: relayed %v, want %v", f.name, got[int32(i)], f.relayed))
		}
	}
	require.Empty(t, wrong)
	if b.features.NoDocumentOrder {
		require.NotEmpty(t, unordered, "Features.NoDocumentOrder is declared, but the comparisons of whole documents work: remove the declaration")
		t.Logf("not checked, the backend does not order documents (Features.NoDocumentOrder): %v", unordered)
	}
}
