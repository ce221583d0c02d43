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
)

func idStrings(docs []bson.Raw) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = event.IDString(d.Lookup("_id"))
	}
	return out
}

func testDueAfter(t *testing.T, b *bundle) {
	base := b.now
	// Three share a due time, with ids of three BSON types; pages of 2
	// must still return each once, in due order.
	due := []struct {
		id any
		at time.Time
	}{
		{"late", base.Add(3 * time.Second)}, {int32(1), base.Add(time.Second)}, {"tie", base.Add(2 * time.Second)},
		{int64(2), base.Add(2 * time.Second)}, {bson.NewObjectID(), base.Add(2 * time.Second)},
	}
	for _, d := range due {
		b.insert(t, job(d.id, bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: d.at}))
	}
	b.insert(t, job("new"))
	b.insert(t, job("undated", bson.E{Key: "state", Value: int32(2)}))
	// A delayed first run waits for its due time like a retry.
	b.insert(t, job("delayed", bson.E{Key: "nextAttemptAt", Value: base.Add(4 * time.Second)}))
	var (
		cur  eventstore.Cursor
		seen []string
	)
	for range 10 {
		docs, next, err := b.store.DueAfter(b.ctx, cur, 2)
		require.NoError(t, err)
		seen = append(seen, idStrings(docs)...)
		cur = next
		if len(docs) < 2 {
			break
		}
	}
	require.Len(t, seen, 6, "%v", seen)
	require.Equal(t, "1", seen[0])
	require.Equal(t, "late", seen[4])
	require.Equal(t, "delayed", seen[5])
	require.ElementsMatch(t, []string{"tie", "2", event.IDString(bsonValue(due[4].id))}, seen[1:4])
}

func bsonValue(v any) bson.RawValue {
	raw, _ := bson.Marshal(bson.D{{Key: "v", Value: v}})
	return bson.Raw(raw).Lookup("v")
}

// The sweep finds the events that need work and stalled, by every kind of
// stall, and no other: not those that moved recently, not succeeded ones,
// not those a live lease holds.
func testSweep(t *testing.T, b *bundle) {
	now := b.now
	stall := time.Minute
	old, fresh := now.Add(-2*stall), now.Add(-stall/2)
	leased := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "r"}, {Key: "token", Value: int64(1)}, {Key: "until", Value: now.Add(time.Minute)}}}}
	expired := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "r"}, {Key: "token", Value: int64(1)}, {Key: "until", Value: now.Add(-time.Minute)}}}}
	tests := []struct {
		name string
		doc  bson.D
		want bool
	}{
		{"new, updated long ago", job("a", bson.E{Key: "state", Value: int32(0)}, bson.E{Key: "updatedAt", Value: old}), true},
		{"new, updated recently", job("b", bson.E{Key: "state", Value: int32(0)}, bson.E{Key: "updatedAt", Value: fresh}), false},
		{"bare, created long ago", job("c", bson.E{Key: "createdAt", Value: old}), true},
		{"bare, created recently", job("d", bson.E{Key: "createdAt", Value: fresh}), false},
		{"bare ObjectID from long ago", job(bson.NewObjectIDFromTimestamp(old)), true},
		{"bare ObjectID from now", job(bson.NewObjectIDFromTimestamp(now.Add(time.Second))), false},
		{"bare string id, no times", job("e"), true},
		{"bare int id, no times", job(int64(5)), true},
		{"failed, due long ago", job("f", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: old}, bson.E{Key: "updatedAt", Value: old}), true},
		{"failed, due recently", job("g", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: fresh}, bson.E{Key: "updatedAt", Value: old}), false},
		{"failed, not due", job("h", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: now.Add(time.Hour)}, bson.E{Key: "updatedAt", Value: old}), false},
		{"failed, no due time", job("i", bson.E{Key: "state", Value: int32(2)}), true},
		{"failed, due time not a date", job("j", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: "soon"}), true},
		{"errored, not archived", job("k", bson.E{Key: "state", Value: int32(3)}, bson.E{Key: "updatedAt", Value: old}), true},
		{"errored recently", job("l", bson.E{Key: "state", Value: int32(3)}, bson.E{Key: "updatedAt", Value: fresh}), false},
		{"errored by hand, no time", job("m", bson.E{Key: "state", Value: int32(3)}), true},
		{"success", job("n", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: old}), false},
		{"malformed state", job("o", bson.E{Key: "state", Value: "x"}, bson.E{Key: "updatedAt", Value: old}), true},
		{"state out of range", job("p", bson.E{Key: "state", Value: int32(7)}), true},
		{"running, lease holds", job("q", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: old}, bson.E{Key: "retrigger", Value: leased}), false},
		{"new and running", job("r", bson.E{Key: "createdAt", Value: old}, bson.E{Key: "retrigger", Value: leased}), false},
		{"run never finished", job("s", bson.E{Key: "createdAt", Value: fresh}, bson.E{Key: "retrigger", Value: expired}), true},
	}
	for _, tt := range tests {
		b.insert(t, tt.doc)
	}
	got := map[string]int{}
	require.NoError(t, b.store.Sweep(b.ctx, eventstore.SweepOptions{Now: now, Stall: stall, LeaseGrace: time.Second, Page: 3}, func(doc bson.Raw) error {
		got[event.IDString(doc.Lookup("_id"))]++
		return nil
	}))
	for _, tt := range tests {
		key := event.IDString(bsonValue(tt.doc[0].Value))
		if tt.want {
			require.Equal(t, 1, got[key], "%s: visited once", tt.name)
		} else {
			require.Zero(t, got[key], "%s: not visited", tt.name)
		}
	}
	// With no stall, every event that needs work and is not running.
	all := map[string]int{}
	require.NoError(t, b.store.Sweep(b.ctx, eventstore.SweepOptions{Now: now, LeaseGrace: time.Second, Page: 100}, func(doc bson.Raw) error {
		all[event.IDString(doc.Lookup("_id"))]++
		return nil
	}))
	for _, tt := range tests {
		key := event.IDString(bsonValue(tt.doc[0].Value))
		running := tt.name == "running, lease holds" || tt.name == "new and running"
		if tt.name == "success" || running {
			require.Zero(t, all[key], "%s: not swept", tt.name)
			continue
		}
		if tt.name == "failed, not due" {
			require.Zero(t, all[key], "%s: not due", tt.name)
			continue
		}
		require.Equal(t, 1, all[key], "%s: swept once", tt.name)
	}
}

// Pages advance across ids of every BSON type: none is skipped.
func testSweepPaging(t *testing.T, b *bundle) {
	ids := SampleIDs()
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("s%02d", i), int64(100+i))
	}
	var want []string
	for _, id := range ids {
		b.insert(t, job(id))
		want = append(want, event.IDString(bsonValue(id)))
	}
	var got []string
	require.NoError(t, b.store.Sweep(b.ctx, eventstore.SweepOptions{Now: b.now, Page: 4}, func(doc bson.Raw) error {
		got = append(got, event.IDString(doc.Lookup("_id")))
		return nil
	}))
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got)
}

func testRetire(t *testing.T, b *bundle) {
	old := b.now.Add(-time.Hour)
	for i := range 7 {
		b.insert(t, job(i, bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: old}))
	}
	b.insert(t, job("recent", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: b.now}))
	b.insert(t, job("failed", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "updatedAt", Value: old}))
	var total int64
	for {
		n, err := b.store.Retire(b.ctx, b.now.Add(-time.Minute), 3)
		require.NoError(t, err)
		require.LessOrEqual(t, n, int64(3))
		total += n
		if n < 3 {
			break
		}
	}
	require.EqualValues(t, 7, total)
	left, err := b.events.Count(b.ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 2, left)
}

func testCheckpoints(t *testing.T, b *bundle) {
	token, err := b.store.LoadToken(b.ctx, "producer:events")
	require.NoError(t, err)
	require.Nil(t, token)
	raw, err := bson.Marshal(bson.D{{Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}})
	require.NoError(t, err)
	require.NoError(t, b.store.SaveToken(b.ctx, "producer:events", raw, b.now))
	token, err = b.store.LoadToken(b.ctx, "producer:events")
	require.NoError(t, err)
	require.Equal(t, bson.Raw(raw), token)
	require.NoError(t, b.store.SaveToken(b.ctx, "producer:events", nil, b.now))
	token, err = b.store.LoadToken(b.ctx, "producer:events")
	require.NoError(t, err)
	require.Nil(t, token)
}

func testIndexes(t *testing.T, b *bundle) {
	require.NoError(t, b.store.EnsureIndexes(b.ctx))
	require.NoError(t, b.store.EnsureIndexes(b.ctx))
}

// A failed event the scheduler's cursor passed comes due again later: the
// cursor finds it at its new time.
func testDueAfterMovedLater(t *testing.T, b *bundle) {
	id := b.insert(t, job("a", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "nextAttemptAt", Value: b.now}))
	docs, cur, err := b.store.DueAfter(b.ctx, eventstore.Cursor{}, 10)
	require.NoError(t, err)
	require.Len(t, docs, 1)
	_, err = b.events.UpdateOne(b.ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "nextAttemptAt", Value: b.now.Add(time.Minute)}}}}, false)
	require.NoError(t, err)
	docs, _, err = b.store.DueAfter(b.ctx, cur, 10)
	require.NoError(t, err)
	require.Len(t, docs, 1, "found again at its new due time")
}

// Leadership: one holder at a time; a new holder only after the lease ran
// out; each holder's epoch fences its checkpoint writes.
func testLeadership(t *testing.T, b *bundle) {
	const name = "producer:events"
	a, ok, err := b.store.AcquireLeadership(b.ctx, name, "a", b.now, 15*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 1, a.Epoch)
	held, ok, err := b.store.AcquireLeadership(b.ctx, name, "b", b.now.Add(10*time.Second), 15*time.Second)
	require.NoError(t, err)
	require.False(t, ok, "held by a")
	require.Equal(t, "a", held.Owner)
	require.NoError(t, b.store.RenewLeadership(b.ctx, &a, b.now.Add(10*time.Second), 15*time.Second))
	require.NoError(t, b.store.SaveTokenAsLeader(b.ctx, &a, bson.Raw{5, 0, 0, 0, 0}, b.now))
	_, ok, err = b.store.AcquireLeadership(b.ctx, name, "b", b.now.Add(20*time.Second), 15*time.Second)
	require.NoError(t, err)
	require.False(t, ok, "the renewal holds until now+25s")

	// a pauses past its lease; b takes over; a, awake, is fenced.
	later := b.now.Add(26 * time.Second)
	bl, ok, err := b.store.AcquireLeadership(b.ctx, name, "b", later, 15*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 2, bl.Epoch)
	require.ErrorIs(t, b.store.SaveTokenAsLeader(b.ctx, &a, bson.Raw{5, 0, 0, 0, 0}, later), eventstore.ErrLeaseLost)
	require.ErrorIs(t, b.store.RenewLeadership(b.ctx, &a, later, 15*time.Second), eventstore.ErrLeaseLost)
	token, err := bson.Marshal(bson.D{{Key: "ts", Value: bson.Timestamp{T: 7}}})
	require.NoError(t, err)
	require.NoError(t, b.store.SaveTokenAsLeader(b.ctx, &bl, token, later))
	got, err := b.store.LoadToken(b.ctx, name)
	require.NoError(t, err)
	require.Equal(t, bson.Raw(token), got)

	// A release hands over at once.
	require.NoError(t, b.store.ReleaseLeadership(b.ctx, &bl, later))
	cl, ok, err := b.store.AcquireLeadership(b.ctx, name, "c", later, 15*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 3, cl.Epoch)
}
