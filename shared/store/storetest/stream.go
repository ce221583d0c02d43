package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

func watch(t *testing.T, ctx context.Context, coll store.Collection, opts store.WatchOptions) store.ChangeStream {
	t.Helper()
	cs, err := coll.Watch(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close(context.Background()) })
	return cs
}

func next(t *testing.T, ctx context.Context, cs store.ChangeStream) store.Change {
	t.Helper()
	c, err := cs.Next(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, c.Token, "every change carries a resume token")
	return c
}

// expect reads one change and checks its operation and document id.
func expect(t *testing.T, ctx context.Context, cs store.ChangeStream, op, id string) store.Change {
	t.Helper()
	c := next(t, ctx, cs)
	require.Equal(t, op, c.Op, "operation of the change to %q", id)
	got, ok := c.ID.StringValueOK()
	require.True(t, ok, "change id %s is not a string", c.ID)
	require.Equal(t, id, got, "document of the %s", op)
	return c
}

func doc(id, kind string) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "kind", Value: kind}, {Key: "n", Value: 0}}
}

func setN(n int) bson.D {
	return bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: n}}}}
}

func testChangeStreamOrder(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll, doc("before", "a")) // before the stream: not delivered
	cs := watch(t, ctx, coll, store.WatchOptions{})

	insert(t, ctx, coll, doc("e1", "a"))
	_, err := coll.FindOneAndUpdate(ctx, bson.M{"_id": "e1"}, setN(7))
	require.NoError(t, err)

	ins := expect(t, ctx, cs, store.OpInsert, "e1")
	require.NotNil(t, ins.Doc)
	assert.Equal(t, int64(0), num(t, ins.Doc, "n"))
	// read before the delete: MongoDB's updateLookup reads the document when
	// it sends the event, and finds none once it is deleted
	upd := expect(t, ctx, cs, store.OpUpdate, "e1")
	require.NotNil(t, upd.Doc, "an update carries the full document")
	assert.Equal(t, int64(7), num(t, upd.Doc, "n"), "the document after the update")
	assert.Equal(t, "a", str(t, upd.Doc, "kind"))

	deleted, err := coll.DeleteOne(ctx, bson.M{"_id": "e1"})
	require.NoError(t, err)
	require.Equal(t, int64(1), deleted)
	del := expect(t, ctx, cs, store.OpDelete, "e1")
	assert.Nil(t, del.Doc, "a delete has no document")

	assert.NotEqual(t, ins.Token, upd.Token)
	assert.NotEqual(t, upd.Token, del.Token)
}

func testChangeStreamMatch(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	cs := watch(t, ctx, coll, store.WatchOptions{Match: bson.D{
		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInsert, store.OpUpdate}}}},
		{Key: "fullDocument.kind", Value: "a"},
	}})

	insert(t, ctx, coll, doc("a1", "a"), doc("b1", "b"))
	_, err := coll.FindOneAndUpdate(ctx, bson.M{"_id": "b1"}, setN(1)) // kind b: skipped
	require.NoError(t, err)
	_, err = coll.FindOneAndUpdate(ctx, bson.M{"_id": "a1"}, setN(2))
	require.NoError(t, err)
	// a delete is skipped by operationType (b1, not a1: on MongoDB the
	// update's fullDocument is read when the event is sent, and a deleted
	// a1 would leave it null)
	_, err = coll.DeleteOne(ctx, bson.M{"_id": "b1"})
	require.NoError(t, err)
	insert(t, ctx, db.Collection("other"), doc("o1", "a")) // another collection
	insert(t, ctx, coll, doc("a2", "a"))                   // the last one proves the skips

	expect(t, ctx, cs, store.OpInsert, "a1")
	upd := expect(t, ctx, cs, store.OpUpdate, "a1")
	assert.Equal(t, int64(2), num(t, upd.Doc, "n"))
	expect(t, ctx, cs, store.OpInsert, "a2")
}

func testChangeStreamResume(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	cs := watch(t, ctx, coll, store.WatchOptions{})
	insert(t, ctx, coll, doc("c1", "a"), doc("c2", "a"), doc("c3", "a"))
	expect(t, ctx, cs, store.OpInsert, "c1")
	token := expect(t, ctx, cs, store.OpInsert, "c2").Token
	expect(t, ctx, cs, store.OpInsert, "c3")
	require.NoError(t, cs.Close(ctx))

	insert(t, ctx, coll, doc("c4", "a"))
	_, err := coll.FindOneAndUpdate(ctx, bson.M{"_id": "c1"}, setN(5))
	require.NoError(t, err)

	resumed := watch(t, ctx, coll, store.WatchOptions{ResumeAfter: token})
	expect(t, ctx, resumed, store.OpInsert, "c3")
	expect(t, ctx, resumed, store.OpInsert, "c4")
	upd := expect(t, ctx, resumed, store.OpUpdate, "c1")
	assert.Equal(t, int64(5), num(t, upd.Doc, "n"))
	insert(t, ctx, coll, doc("c5", "a"))
	expect(t, ctx, resumed, store.OpInsert, "c5") // nothing repeated in between

	// a resume with a Match filters the same way
	filtered := watch(t, ctx, coll, store.WatchOptions{
		ResumeAfter: token,
		Match:       bson.D{{Key: "operationType", Value: store.OpUpdate}},
	})
	expect(t, ctx, filtered, store.OpUpdate, "c1")
}

func testChangeStreamNextHonoursContext(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	cs := watch(t, ctx, coll, store.WatchOptions{})

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := cs.Next(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = cs.Next(canceled)
	require.ErrorIs(t, err, context.Canceled)
}

func testCloseTwice(t *testing.T, db store.Database) {
	ctx := testContext(t)
	cs, err := db.Collection("events").Watch(ctx, store.WatchOptions{})
	require.NoError(t, err)
	require.NoError(t, cs.Close(ctx))
	require.NoError(t, cs.Close(ctx))
	require.NoError(t, db.Close(ctx))
	require.NoError(t, db.Close(ctx))
}

// testChangeStreamHistoryLost writes until the history no longer holds a
// token, then checks both ways of noticing: a new stream resuming after it,
// and the open stream that read it. A backend may trim its history by time
// (the embedded engine drops entries only once their second is over), so the test polls
// with a deadline.
func testChangeStreamHistoryLost(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	cs := watch(t, ctx, coll, store.WatchOptions{})
	insert(t, ctx, coll, doc("first", "a"))
	token := expect(t, ctx, cs, store.OpInsert, "first").Token

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		insert(t, ctx, coll, bson.D{{Key: "n", Value: i}})
		resumed, err := coll.Watch(ctx, store.WatchOptions{ResumeAfter: token})
		if err != nil {
			require.ErrorIs(t, err, store.ErrHistoryLost, "from Watch")
			break
		}
		// changes follow the token, so Next does not wait unless the history is lost
		c, err := resumed.Next(ctx)
		require.NoError(t, resumed.Close(ctx))
		if err != nil {
			require.ErrorIs(t, err, store.ErrHistoryLost, "from the first Next")
			break
		}
		require.Equal(t, int64(0), num(t, c.Doc, "n"), "a resume starts right after its token")
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the history still holds the token after %d changes", i+1)
		}
	}

	_, err := cs.Next(ctx)
	require.ErrorIs(t, err, store.ErrHistoryLost, "the open stream lost its position")
}

// testNoChangeStreams checks a declared lack of change streams: Watch, or
// the first Next, fails with an error other than a timeout, and the
// database still closes.
func testNoChangeStreams(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll, doc("e1", "a"))
	cs, err := coll.Watch(ctx, store.WatchOptions{})
	if err == nil {
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		insert(t, ctx, coll, doc("e2", "a"))
		_, err = cs.Next(short)
		_ = cs.Close(ctx)
		require.NotErrorIs(t, err, context.DeadlineExceeded,
			"Features.NoChangeStreams is declared, but a stream opened and waited: does the backend have change streams now?")
	}
	require.Error(t, err, "Features.NoChangeStreams is declared, but a change stream works: remove the declaration")
	// what CloseTwice checks besides the stream
	require.NoError(t, db.Close(ctx))
	require.NoError(t, db.Close(ctx))
}

// testChangeStreamUpdateDescription checks what a $match on an update's
// description sees, as MongoDB 5.0+ writes it: updatedFields names each
// path an update set to a new value (a field set to the value it had, of
// the same type, is left out), except that a $set that creates a
// subdocument names the subdocument it created, with all of it;
// removedFields names each path it removed (one that was not there is not
// named); a field name holds dots ("a.c"), which the query language
// reaches only by comparing the whole document. Each case passes the stream's $match only if its
// description is exactly the one expected.
func testChangeStreamUpdateDescription(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	tests := []struct {
		name    string
		doc     bson.D // the document before, without _id
		update  bson.D
		updated bson.D
		removed bson.A
	}{
		{"a top-level field", bson.D{{Key: "n", Value: 0}}, setN(1), bson.D{{Key: "n", Value: int32(1)}}, bson.A{}},
		{"a subdocument created", bson.D{{Key: "n", Value: 0}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1}}}},
			bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}}}}, bson.A{}},
		{"a subdocument created two levels deep", bson.D{{Key: "n", Value: 0}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b.c", Value: 1}}}},
			bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.D{{Key: "c", Value: int32(1)}}}}}}, bson.A{}},
		{"a field added to a subdocument", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.c", Value: 2}}}},
			bson.D{{Key: "a.c", Value: int32(2)}}, bson.A{}},
		{"a field of a subdocument changed", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.D{{Key: "c", Value: 1}, {Key: "d", Value: 1}}}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b.c", Value: 2}}}},
			bson.D{{Key: "a.b.c", Value: int32(2)}}, bson.A{}},
		{"a subdocument set whole", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.l", Value: bson.D{{Key: "o", Value: "x"}}}}}},
			bson.D{{Key: "a.l", Value: bson.D{{Key: "o", Value: "x"}}}}, bson.A{}},
		{"a field removed", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: 1}}}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "a.b", Value: ""}, {Key: "a.nope", Value: ""}}}},
			bson.D{}, bson.A{"a.b"}},
		{"removed and set at once", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "a.b", Value: ""}}}, {Key: "$set", Value: bson.D{{Key: "a.w", Value: 1}}}},
			bson.D{{Key: "a.w", Value: int32(1)}}, bson.A{"a.b"}},
		{"a field added to an empty subdocument", bson.D{{Key: "a", Value: bson.D{}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1}}}},
			bson.D{{Key: "a.b", Value: int32(1)}}, bson.A{}},
		{"the only field of a subdocument changed", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 2}}}},
			bson.D{{Key: "a.b", Value: int32(2)}}, bson.A{}},
		{"a field set to the value it had", bson.D{{Key: "n", Value: int32(1)}, {Key: "m", Value: int32(1)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int32(1)}, {Key: "m", Value: int32(2)}}}},
			bson.D{{Key: "m", Value: int32(2)}}, bson.A{}},
		{"a number set to its value as another type", bson.D{{Key: "n", Value: int32(1)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int64(1)}}}},
			bson.D{{Key: "n", Value: int64(1)}}, bson.A{}},
	}
	var cases bson.A
	for i, tt := range tests {
		id := fmt.Sprintf("u%d", i)
		insert(t, ctx, coll, append(bson.D{{Key: "_id", Value: id}}, tt.doc...))
		cases = append(cases, bson.D{
			{Key: "documentKey._id", Value: id},
			{Key: "updateDescription.updatedFields", Value: tt.updated},
			{Key: "updateDescription.removedFields", Value: tt.removed},
		})
	}
	cs := watch(t, ctx, coll, store.WatchOptions{Match: bson.D{{Key: "$or", Value: append(cases,
		bson.D{{Key: "operationType", Value: store.OpInsert}})}}})
	for i, tt := range tests {
		n, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("u%d", i)}}, tt.update, false)
		require.NoError(t, err, tt.name)
		require.Equal(t, int64(1), n, tt.name)
	}
	insert(t, ctx, coll, doc("last", "a"))
	seen := map[string]bool{}
	for {
		c := next(t, ctx, cs)
		id, _ := c.ID.StringValueOK()
		if c.Op == store.OpInsert {
			require.Equal(t, "last", id)
			break
		}
		seen[id] = true
	}
	for i, tt := range tests {
		assert.True(t, seen[fmt.Sprintf("u%d", i)], "%s: the update's description is not %v, removed %v", tt.name, tt.updated, tt.removed)
	}
}
