package eventstoretest

import (
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// The operator's queries and actions.

func (b *bundle) op() eventstore.Operator {
	return eventstore.Operator{Now: b.now, By: "ops@test"}
}

// archive puts an event of type typ into errors the way the pipeline
// does: a failed run, a run that errors, the archiver's move.
func (b *bundle) archive(t *testing.T, id any, typ string, reason event.Reason, msg string, at time.Time) bson.RawValue {
	t.Helper()
	rid := b.insert(t, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: typ}, {Key: "payload", Value: bson.D{{Key: "n", Value: 1}}}})
	b.token++
	c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: rid, Type: typ, Owner: "r1", Token: b.token, Now: at, TTL: time.Minute})
	require.NoError(t, err)
	require.Equal(t, eventstore.Claimed, c.Outcome)
	require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: at, Attempts: 1, Reason: reason,
		LastError: event.LastError{Message: msg, At: at}, Run: event.Attempt{At: at, Outcome: "error", Error: msg, Number: 1, Replica: "r1"}}))
	doc, err := b.store.Find(b.ctx, rid)
	require.NoError(t, err)
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: reason, At: at}))
	return rid
}

func testListAndCount(t *testing.T, b *bundle) {
	t0 := b.now.Add(-time.Hour)
	b.archive(t, "e1", "mail", event.ReasonExhausted, "smtp: 421 try later", t0)
	b.archive(t, "e2", "mail", event.ReasonPermanent, "smtp: 550 no such user", t0.Add(time.Minute))
	b.archive(t, "e3", "partner", event.ReasonExhausted, "partner: 503", t0.Add(2*time.Minute))
	b.archive(t, "e4", "partner", event.ReasonExhausted, "partner: 503", t0.Add(2*time.Minute)) // same time as e3
	b.insert(t, job("n1"))                                                                      // never run: no updatedAt
	b.insert(t, job("f1", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "updatedAt", Value: t0},
		bson.E{Key: "lastError", Value: bson.D{{Key: "message", Value: "timeout"}}}))

	tests := []struct {
		name  string
		where eventstore.Where
		f     eventstore.Filter
		want  []string // newest first
	}{
		{"all errors, newest first", eventstore.InErrors, eventstore.Filter{}, []string{"e3", "e4", "e2", "e1"}},
		{"by type", eventstore.InErrors, eventstore.Filter{Types: []string{"mail"}}, []string{"e2", "e1"}},
		{"by reason", eventstore.InErrors, eventstore.Filter{Reasons: []event.Reason{event.ReasonPermanent}}, []string{"e2"}},
		{"by error text", eventstore.InErrors, eventstore.Filter{Error: regexp.MustCompile(`^smtp: 4\d\d`)}, []string{"e1"}},
		{"by time range", eventstore.InErrors, eventstore.Filter{Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)}, []string{"e2"}},
		{"by ids", eventstore.InErrors, eventstore.Filter{IDs: []bson.RawValue{rawID(t, "e1"), rawID(t, "e4"), rawID(t, "nope")}}, []string{"e4", "e1"}},
		{"by no ids: nothing", eventstore.InErrors, eventstore.Filter{IDs: []bson.RawValue{}}, []string{}},
		{"by no ids, with other fields: nothing", eventstore.InEvents, eventstore.Filter{IDs: []bson.RawValue{}, States: []event.State{event.StateNew}}, []string{}},
		{"events by state, the never-run last", eventstore.InEvents, eventstore.Filter{States: []event.State{event.StateNew, event.StateFailed}}, []string{"f1", "n1"}},
		{"new events", eventstore.InEvents, eventstore.Filter{States: []event.State{event.StateNew}}, []string{"n1"}},
		{"a time range leaves out the never-run", eventstore.InEvents, eventstore.Filter{Since: t0.Add(-time.Minute)}, []string{"f1"}},
	}
	for _, tt := range tests {
		for _, page := range []int{1, 2, 500} {
			docs, err := b.store.List(b.ctx, tt.where, tt.f, 0, eventstore.ScanOptions{Page: page})
			require.NoError(t, err, tt.name)
			got := idStrings(docs)
			if tt.name == "all errors, newest first" || tt.name == "by ids" {
				// e3 and e4 share a time: either order
				sort.Strings(got[:2])
				want := append([]string(nil), tt.want...)
				sort.Strings(want[:2])
				require.Equal(t, want, got, "%s (page %d)", tt.name, page)
			} else {
				require.Equal(t, tt.want, got, "%s (page %d)", tt.name, page)
			}
			n, err := b.store.Count(b.ctx, tt.where, tt.f)
			require.NoError(t, err)
			require.EqualValues(t, len(tt.want), n, "count: %s", tt.name)
		}
	}
	oldest, err := b.store.List(b.ctx, eventstore.InErrors, eventstore.Filter{}, 2, eventstore.ScanOptions{Oldest: true, Page: 1})
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2"}, idStrings(oldest), "oldest first, limited")
	ids, err := b.store.IDs(b.ctx, eventstore.InErrors, eventstore.Filter{Types: []string{"partner"}}, 0)
	require.NoError(t, err)
	require.Len(t, ids, 2)
	// A selection that found nothing, used as the ids of a listing (an
	// action's preview), lists nothing.
	none, err := b.store.IDs(b.ctx, eventstore.InErrors, eventstore.Filter{Types: []string{"nosuch"}}, 0)
	require.NoError(t, err)
	require.Empty(t, none)
	docs, err := b.store.List(b.ctx, eventstore.InErrors, eventstore.Filter{IDs: none[:min(len(none), 5)]}, 5, eventstore.ScanOptions{})
	require.NoError(t, err)
	require.Empty(t, docs, "the ids of an empty selection select nothing")
	events, archived, err := b.store.FindIDs(b.ctx, none)
	require.NoError(t, err)
	require.Empty(t, events)
	require.Empty(t, archived)
}

func rawID(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	require.NoError(t, err)
	return bson.RawValue{Type: typ, Value: data}
}

func testCountByType(t *testing.T, b *bundle) {
	b.insert(t, job(1))
	b.insert(t, job(2, bson.E{Key: "state", Value: int32(2)}))
	b.insert(t, job(3, bson.E{Key: "state", Value: 2.0}))
	b.insert(t, bson.D{{Key: "_id", Value: 4}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}})
	b.insert(t, job(5, bson.E{Key: "state", Value: "two"}))
	b.archive(t, 6, "mail", event.ReasonExhausted, "x", b.now)
	b.archive(t, 7, "mail", event.ReasonExhausted, "x", b.now)
	b.archive(t, 8, "job", event.ReasonCancelled, "x", b.now)

	render := func(gs []eventstore.GroupCount) map[string]int64 {
		out := map[string]int64{}
		for _, g := range gs {
			out[g.Type+"/"+g.State+g.Reason] += g.Count
		}
		return out
	}
	got, err := b.store.CountByType(b.ctx, eventstore.InEvents)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"job/new": 1, "job/failed": 2, "job/invalid": 1, "mail/success": 1}, render(got))
	got, err = b.store.CountByType(b.ctx, eventstore.InErrors)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"mail/exhausted": 2, "job/cancelled": 1}, render(got))
}

func testOldestDue(t *testing.T, b *bundle) {
	due, err := b.store.OldestDue(b.ctx, b.now)
	require.NoError(t, err)
	require.Nil(t, due, "nothing waits")

	b.insert(t, job("later", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: b.now.Add(time.Hour)}))
	b.insert(t, job("created", bson.E{Key: "createdAt", Value: b.now.Add(-time.Minute)}))
	due, err = b.store.OldestDue(b.ctx, b.now)
	require.NoError(t, err)
	require.Equal(t, "created", event.IDString(due.ID))
	require.True(t, due.Since.Equal(b.now.Add(-time.Minute)))

	b.insert(t, job("failed", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: b.now.Add(-2 * time.Minute)}))
	oid := bson.NewObjectIDFromTimestamp(b.now.Add(-3 * time.Minute))
	b.insert(t, job(oid))
	leased := b.insert(t, job("running", bson.E{Key: "createdAt", Value: b.now.Add(-time.Hour)}))
	require.Equal(t, eventstore.Claimed, b.claim(t, leased).Outcome)
	due, err = b.store.OldestDue(b.ctx, b.now)
	require.NoError(t, err)
	require.Equal(t, oid.Hex(), event.IDString(due.ID), "an ObjectID tells when an event without times came; a running event does not wait")
	require.Equal(t, event.StateNew, due.State)
}

func testRetry(t *testing.T, b *bundle) {
	failed := b.insert(t, job("f"))
	c := b.claim(t, failed)
	require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, b.now.Add(time.Hour), 1)))
	later := b.now.Add(time.Second)
	op := eventstore.Operator{Now: later, By: "ops@test"}

	a, why, err := b.store.Retry(b.ctx, failed, op)
	require.NoError(t, err)
	require.Equal(t, eventstore.Applied, a, why)
	ev := b.get(t, b.events, failed)
	require.Equal(t, event.StateFailed, ev.State)
	require.True(t, ev.NextAttemptAt.Equal(later), "due now: %s", ev.NextAttemptAt)
	require.EqualValues(t, 1, ev.Attempts, "attempts are kept")
	require.EqualValues(t, 2, ev.Version, "a retry is a change of its own")
	require.Equal(t, "retried", ev.History[len(ev.History)-1].Outcome)
	require.Equal(t, "ops@test", ev.History[len(ev.History)-1].Replica)
	c = b.claimAt(t, failed, later, "r2")
	require.Equal(t, eventstore.Claimed, c.Outcome, "a consumer runs it now")

	a, why, err = b.store.Retry(b.ctx, failed, op)
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedLeased, a, "a running event is left alone: %s", why)
	require.EqualValues(t, 2, b.get(t, b.events, failed).Version, "nothing written")

	fresh := b.insert(t, job("n"))
	a, _, err = b.store.Retry(b.ctx, fresh, op)
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedState, a, "a new event is due already")
	a, _, err = b.store.Retry(b.ctx, rawID(t, "nope"), op)
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedGone, a)
}

func testCancel(t *testing.T, b *bundle) {
	fresh := b.insert(t, job("n", bson.E{Key: "payload", Value: bson.D{{Key: "k", Value: "v"}}}))
	a, why, err := b.store.Cancel(b.ctx, fresh, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.Applied, a, why)
	require.Nil(t, b.get(t, b.events, fresh), "gone from events")
	arch := b.get(t, b.errs, fresh)
	require.Equal(t, event.ReasonCancelled, arch.Reason)
	require.Equal(t, []string{"cancelled", "archived"}, outcomes(arch.History))
	require.Equal(t, "v", b.raw(t, b.errs, fresh).Lookup("payload", "k").StringValue())

	running := b.insert(t, job("r"))
	require.Equal(t, eventstore.Claimed, b.claim(t, running).Outcome)
	a, _, err = b.store.Cancel(b.ctx, running, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedLeased, a)
	require.Equal(t, event.StateNew, b.get(t, b.events, running).State, "nothing written")

	done := b.insert(t, job("s", bson.E{Key: "state", Value: int32(1)}))
	a, _, err = b.store.Cancel(b.ctx, done, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedState, a)
}

func outcomes(h []event.Attempt) []string {
	out := make([]string, len(h))
	for i, a := range h {
		out[i] = a.Outcome
	}
	return out
}

func testRedrive(t *testing.T, b *bundle) {
	at := b.now.Add(-time.Hour)
	id := b.archive(t, "a", "job", event.ReasonExhausted, "boom", at)
	a, why, err := b.store.Redrive(b.ctx, id, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.Applied, a, why)
	require.Nil(t, b.get(t, b.errs, id), "the archive is removed")
	ev := b.get(t, b.events, id)
	require.Equal(t, event.StateNew, ev.State)
	require.Zero(t, ev.Attempts, "its attempts start again")
	require.EqualValues(t, 2, ev.Version, "the version counts on")
	require.EqualValues(t, 1, ev.Redrives)
	require.True(t, ev.RedrivenAt.Equal(b.now))
	require.Empty(t, ev.Reason)
	require.Equal(t, []string{"error", "archived", "redriven"}, outcomes(ev.History), "the history is kept")
	require.Equal(t, "boom", ev.LastError.Message, "the last error is kept")
	c := b.claim(t, id)
	require.Equal(t, eventstore.Claimed, c.Outcome, "it runs again")
	require.NoError(t, b.store.Release(b.ctx, &c))

	a, _, err = b.store.Redrive(b.ctx, id, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedGone, a, "a second redrive finds nothing to do")

	// Interrupted after writing the events copy: the archive is still there.
	id2 := b.archive(t, "b", "job", event.ReasonExhausted, "boom", at)
	arch := b.raw(t, b.errs, id2)
	a, _, err = b.store.Redrive(b.ctx, id2, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.Applied, a)
	require.NoError(t, b.errs.InsertOne(b.ctx, arch)) // as if the delete never happened
	a, why, err = b.store.Redrive(b.ctx, id2, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.Applied, a, "the rerun finishes it: %s", why)
	require.Nil(t, b.get(t, b.errs, id2))
	require.EqualValues(t, 1, b.get(t, b.events, id2).Redrives, "written once")

	// Another event of the same id in events: left alone, archive kept.
	id3 := b.archive(t, "c", "job", event.ReasonExhausted, "boom", at)
	b.insert(t, job("c"))
	a, _, err = b.store.Redrive(b.ctx, id3, b.op())
	require.NoError(t, err)
	require.Equal(t, eventstore.SkippedExists, a)
	require.NotNil(t, b.get(t, b.errs, id3))
	require.Empty(t, b.get(t, b.events, id3).History, "the other event is untouched")

	// Redriven, failed and archived again: the new archive stays when an
	// old redrive is repeated.
	c = b.claim(t, id)
	require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: b.now, Attempts: 1, Reason: event.ReasonExhausted, Run: event.Attempt{At: b.now, Outcome: "error"}}))
	doc, err := b.store.Find(b.ctx, id)
	require.NoError(t, err)
	require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonExhausted, At: b.now}))
	again := b.get(t, b.errs, id)
	require.EqualValues(t, 1, again.Redrives)
	require.Equal(t, []string{"archived", "redriven", "error", "archived"}, outcomes(again.History), "the last 3 transitions, and the archive")
}

func testPurge(t *testing.T, b *bundle) {
	old := b.archive(t, "old", "job", event.ReasonExhausted, "x", b.now.Add(-48*time.Hour))
	recent := b.archive(t, "recent", "job", event.ReasonExhausted, "x", b.now)
	n, err := b.store.PurgeErrors(b.ctx, []bson.RawValue{old, recent}, b.now.Add(-24*time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Nil(t, b.get(t, b.errs, old))
	require.NotNil(t, b.get(t, b.errs, recent), "archived after the cutoff")
}

// FindIDs finds ids of every BSON type in both collections.
func testFindIDs(t *testing.T, b *bundle) {
	var ids []bson.RawValue
	for i, v := range SampleIDs() {
		if i%2 == 0 {
			ids = append(ids, b.insert(t, job(v)))
		} else {
			ids = append(ids, b.archive(t, v, "job", event.ReasonExhausted, "x", b.now))
		}
	}
	events, archived, err := b.store.FindIDs(b.ctx, ids)
	require.NoError(t, err)
	require.Len(t, events, (len(ids)+1)/2)
	require.Len(t, archived, len(ids)/2)
	require.NoError(t, b.store.Ping(b.ctx))
}
