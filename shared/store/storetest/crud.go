package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

func testInsertAndDuplicateKey(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	require.NoError(t, coll.EnsureIndexes(ctx, []store.Index{
		{Name: "key_unique", Keys: bson.D{{Key: "key", Value: 1}}, Unique: true},
	}))

	insert(t, ctx, coll, bson.D{{Key: "_id", Value: "a"}, {Key: "key", Value: "k1"}})
	err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "key", Value: "k1"}})
	require.ErrorIs(t, err, store.ErrDuplicate, "same value in a unique index")
	err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "key", Value: "k2"}})
	require.ErrorIs(t, err, store.ErrDuplicate, "same _id")

	n, err := coll.Count(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a rejected insert must not write")

	// an _id is generated when the document has none
	insert(t, ctx, coll, bson.M{"key": "k3"})
	doc, err := coll.FindOne(ctx, bson.M{"key": "k3"})
	require.NoError(t, err)
	assert.Equal(t, bson.TypeObjectID, lookup(t, doc, "_id").Type)
}

func testFindOne(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	_, err := coll.FindOne(ctx, bson.M{"_id": "a"})
	require.ErrorIs(t, err, store.ErrNotFound, "empty collection")

	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: "a"}, {Key: "kind", Value: "x"}, {Key: "payload", Value: bson.M{"n": 7}}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "kind", Value: "y"}},
	)
	doc, err := coll.FindOne(ctx, bson.M{"kind": "y"})
	require.NoError(t, err)
	assert.Equal(t, "b", str(t, doc, "_id"))
	doc, err = coll.FindOne(ctx, bson.M{"payload.n": 7})
	require.NoError(t, err)
	assert.Equal(t, "a", str(t, doc, "_id"))
	_, err = coll.FindOne(ctx, bson.M{"kind": "z"})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testFindOneAndUpdate(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll, bson.D{{Key: "_id", Value: "e1"}, {Key: "state", Value: 0}, {Key: "version", Value: 0}})
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: 1}}},
		{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}},
	}

	doc, err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 0}}, update)
	require.NoError(t, err)
	assert.Equal(t, int64(1), num(t, doc, "state"), "the document after the update")
	assert.Equal(t, int64(1), num(t, doc, "version"), "the document after the update")

	// the condition no longer holds
	_, err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 0}}, update)
	require.ErrorIs(t, err, store.ErrNotFound)
	doc, err = coll.FindOne(ctx, bson.M{"_id": "e1"})
	require.NoError(t, err)
	assert.Equal(t, int64(1), num(t, doc, "version"), "a failed condition must not write")

	// no such document, and no upsert
	_, err = coll.FindOneAndUpdate(ctx, bson.M{"_id": "nope"}, update)
	require.ErrorIs(t, err, store.ErrNotFound)
	n, err := coll.Count(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

// testConditionalUpdateOnMissingFields checks the shapes of retrigger's
// state transitions on a document inserted with only type and payload:
// {$in: [0, null]} matches a missing field, and $inc on a missing field sets
// it to the increment.
func testConditionalUpdateOnMissingFields(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: "bare"}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.M{"to": "x"}}},
		bson.D{{Key: "_id", Value: "nulls"}, {Key: "type", Value: "email"}, {Key: "version", Value: nil}, {Key: "state", Value: nil}},
		bson.D{{Key: "_id", Value: "moved"}, {Key: "type", Value: "email"}, {Key: "version", Value: 3}, {Key: "state", Value: 2}},
	)
	condition := func(id string) bson.D {
		return bson.D{
			{Key: "_id", Value: id},
			{Key: "version", Value: bson.D{{Key: "$in", Value: bson.A{0, nil}}}},
			{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{0, nil}}}},
		}
	}
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: 2}, {Key: "lastError", Value: bson.M{"message": "boom"}}}},
		{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}, {Key: "attempts", Value: 1}}},
	}

	doc, err := coll.FindOneAndUpdate(ctx, condition("bare"), update)
	require.NoError(t, err)
	assert.Equal(t, int64(1), num(t, doc, "version"), "$inc on a missing field")
	assert.Equal(t, int64(1), num(t, doc, "attempts"), "$inc on a missing field")
	assert.Equal(t, int64(2), num(t, doc, "state"))
	assert.Equal(t, "email", str(t, doc, "type"), "untouched field")
	assert.Equal(t, "boom", str(t, doc, "lastError", "message"))

	// the same transition again is stale
	_, err = coll.FindOneAndUpdate(ctx, condition("bare"), update)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = coll.FindOneAndUpdate(ctx, condition("moved"), update)
	require.ErrorIs(t, err, store.ErrNotFound, "version 3 is not in [0, null]")

	// null matches {$in: [0, null]} too, but $inc on a null field is an
	// error in MongoDB (not a number), not a failed condition
	doc, err = coll.FindOne(ctx, condition("nulls"))
	require.NoError(t, err)
	assert.Equal(t, "nulls", str(t, doc, "_id"))
	_, err = coll.FindOneAndUpdate(ctx, condition("nulls"), update)
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)

	// the next transition conditions on the values just written
	doc, err = coll.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: "bare"}, {Key: "version", Value: 1}, {Key: "state", Value: 2}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}, {Key: "attempts", Value: 5}}}})
	require.NoError(t, err)
	assert.Equal(t, int64(2), num(t, doc, "version"))
	assert.Equal(t, int64(6), num(t, doc, "attempts"))

	// {field: null} also matches a missing field
	n, err := coll.Count(ctx, bson.M{"maxAttempts": nil})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
}

func testConcurrentConditionalUpdates(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll, bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 0}})

	const workers = 8
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Go(func() {
			_, errs[i] = coll.FindOneAndUpdate(ctx,
				bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 0}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "version", Value: 1}, {Key: "attempts", Value: 1}}}})
		})
	}
	wg.Wait()

	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	assert.Equal(t, 1, won, "exactly one conditional update wins")
	doc, err := coll.FindOne(ctx, bson.M{"_id": "e1"})
	require.NoError(t, err)
	assert.Equal(t, int64(1), num(t, doc, "version"))
	assert.Equal(t, int64(1), num(t, doc, "attempts"))
}

// testConcurrentConditionalUpdateOne races the shape of a state
// transition: UpdateOne pinned on {_id, version, state}.
func testConcurrentConditionalUpdateOne(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll, bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 3}, {Key: "state", Value: 2}})

	const workers = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	matched := make([]int64, workers)
	errs := make([]error, workers)
	for i := range workers {
		wg.Go(func() {
			<-start
			matched[i], errs[i] = coll.UpdateOne(ctx,
				bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: 3}, {Key: "state", Value: 2}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: 4}, {Key: "state", Value: 1}, {Key: "by", Value: i}}}}, false)
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i := range workers {
		require.NoError(t, errs[i])
		won += int(matched[i])
	}
	assert.Equal(t, 1, won, "exactly one conditional update matches")
}

func testUpdateOne(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: "a"}, {Key: "kind", Value: "k"}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "kind", Value: "k"}},
		bson.D{{Key: "_id", Value: "c"}, {Key: "kind", Value: "k"}},
	)
	set := func(field string, v any) bson.D {
		return bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: v}}}}
	}

	matched, err := coll.UpdateOne(ctx, bson.M{"kind": "k"}, set("flag", true), false)
	require.NoError(t, err)
	assert.Equal(t, int64(1), matched)
	n, err := coll.Count(ctx, bson.M{"flag": true})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "UpdateOne changes one document")

	matched, err = coll.UpdateOne(ctx, bson.M{"_id": "nope"}, set("x", 1), false)
	require.NoError(t, err)
	assert.Equal(t, int64(0), matched)

	// upsert inserts the filter's equalities and the update
	matched, err = coll.UpdateOne(ctx, bson.M{"_id": "u"}, set("x", 2), true)
	require.NoError(t, err)
	assert.Equal(t, int64(0), matched, "an upsert that inserts matched nothing")
	doc, err := coll.FindOne(ctx, bson.M{"_id": "u"})
	require.NoError(t, err)
	assert.Equal(t, int64(2), num(t, doc, "x"))

	// upsert of an existing document updates it
	matched, err = coll.UpdateOne(ctx, bson.M{"_id": "u"}, set("x", 3), true)
	require.NoError(t, err)
	assert.Equal(t, int64(1), matched)
	n, err = coll.Count(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(4), n)
	doc, err = coll.FindOne(ctx, bson.M{"_id": "u"})
	require.NoError(t, err)
	assert.Equal(t, int64(3), num(t, doc, "x"))
}

func testDelete(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: "a1"}, {Key: "kind", Value: "a"}},
		bson.D{{Key: "_id", Value: "a2"}, {Key: "kind", Value: "a"}},
		bson.D{{Key: "_id", Value: "a3"}, {Key: "kind", Value: "a"}},
		bson.D{{Key: "_id", Value: "b1"}, {Key: "kind", Value: "b"}},
	)

	deleted, err := coll.DeleteOne(ctx, bson.M{"kind": "a"})
	require.NoError(t, err)
	assert.Equal(t, int64(1), deleted)
	deleted, err = coll.DeleteOne(ctx, bson.M{"kind": "z"})
	require.NoError(t, err)
	assert.Equal(t, int64(0), deleted)
	deleted, err = coll.DeleteMany(ctx, bson.M{"kind": "a"})
	require.NoError(t, err)
	assert.Equal(t, int64(2), deleted)
	deleted, err = coll.DeleteMany(ctx, bson.M{"kind": "a"})
	require.NoError(t, err)
	assert.Equal(t, int64(0), deleted)

	docs, err := coll.Find(ctx, nil, store.FindOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, ids(t, docs))
}

func testFindSortLimit(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: "a3"}, {Key: "kind", Value: "a"}, {Key: "n", Value: 3}},
		bson.D{{Key: "_id", Value: "b1"}, {Key: "kind", Value: "b"}, {Key: "n", Value: 1}},
		bson.D{{Key: "_id", Value: "a1"}, {Key: "kind", Value: "a"}, {Key: "n", Value: 1}},
		bson.D{{Key: "_id", Value: "a4"}, {Key: "kind", Value: "a"}, {Key: "n", Value: 4.5}},
		bson.D{{Key: "_id", Value: "a-"}, {Key: "kind", Value: "a"}}, // no n
		bson.D{{Key: "_id", Value: "b2"}, {Key: "kind", Value: "b"}, {Key: "n", Value: 2}},
	)
	tests := []struct {
		name   string
		filter any
		opts   store.FindOptions
		want   []string
	}{
		{"ascending, missing field first", bson.M{"kind": "a"},
			store.FindOptions{Sort: bson.D{{Key: "n", Value: 1}}}, []string{"a-", "a1", "a3", "a4"}},
		{"descending with limit", bson.M{"kind": "a"},
			store.FindOptions{Sort: bson.D{{Key: "n", Value: -1}}, Limit: 2}, []string{"a4", "a3"}},
		{"two keys", bson.D{},
			store.FindOptions{Sort: bson.D{{Key: "kind", Value: -1}, {Key: "n", Value: 1}}},
			[]string{"b1", "b2", "a-", "a1", "a3", "a4"}},
		{"range filter", bson.M{"n": bson.M{"$gte": 2, "$lt": 4}},
			store.FindOptions{Sort: bson.D{{Key: "n", Value: 1}}}, []string{"b2", "a3"}},
		{"limit larger than the result", bson.M{"kind": "b"},
			store.FindOptions{Sort: bson.D{{Key: "_id", Value: 1}}, Limit: 10}, []string{"b1", "b2"}},
		{"no match", bson.M{"kind": "z"}, store.FindOptions{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := coll.Find(ctx, tt.filter, tt.opts)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(t, docs))
		})
	}
}

func testCount(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("things")
	n, err := coll.Count(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(0), n, "a collection never written")

	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "state", Value: 0}},
		bson.D{{Key: "_id", Value: 2}, {Key: "state", Value: 2}},
		bson.D{{Key: "_id", Value: 3}, {Key: "state", Value: 2}},
		bson.D{{Key: "_id", Value: 4}},
	)
	for filter, want := range map[string]int64{
		`{}`:                            4,
		`{"state": 2}`:                  2,
		`{"state": {"$in": [0, null]}}`: 2,
		`{"state": {"$exists": false}}`: 1,
	} {
		var f bson.D
		require.NoError(t, bson.UnmarshalExtJSON([]byte(filter), false, &f))
		n, err := coll.Count(ctx, f)
		require.NoError(t, err)
		assert.Equal(t, want, n, "filter %s", filter)
	}
}

func testEnsureIndexesTwice(t *testing.T, db store.Database, noRepeat bool) {
	ctx := testContext(t)
	coll := db.Collection("events")
	indexes := []store.Index{
		{Name: "state_updatedAt", Keys: bson.D{{Key: "state", Value: 1}, {Key: "updatedAt", Value: 1}}},
		{Name: "key_unique", Keys: bson.D{{Key: "key", Value: 1}}, Unique: true},
	}
	require.NoError(t, coll.EnsureIndexes(ctx, indexes))
	insert(t, ctx, coll, bson.M{"key": "k"})
	if noRepeat {
		require.Error(t, coll.EnsureIndexes(ctx, indexes),
			"Features.NoRepeatedIndexes is declared, but repeating EnsureIndexes works: remove the declaration")
	} else {
		require.NoError(t, coll.EnsureIndexes(ctx, indexes), "repeating is a no-op")
	}
	require.NoError(t, coll.EnsureIndexes(ctx, nil), "no indexes")

	err := coll.InsertOne(ctx, bson.M{"key": "k"})
	require.ErrorIs(t, err, store.ErrDuplicate, "the unique index still holds")
}

// testTypesAndDueQuery checks that documents come back byte for byte as
// written (types, field order, nesting) and that dates compare, as the
// sweeper's "due" query needs.
func testTypesAndDueQuery(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	now := time.Now().Truncate(time.Millisecond)
	id := bson.NewObjectID()
	want, err := bson.Marshal(bson.D{
		{Key: "_id", Value: id},
		{Key: "type", Value: "email"},
		{Key: "nextAttemptAt", Value: bson.NewDateTimeFromTime(now.Add(-time.Minute))},
		{Key: "attempts", Value: int32(2)},
		{Key: "big", Value: int64(1) << 40},
		{Key: "ratio", Value: 0.25},
		{Key: "ok", Value: true},
		{Key: "none", Value: nil},
		{Key: "payload", Value: bson.D{{Key: "z", Value: 1}, {Key: "a", Value: bson.A{"x", 2, bson.D{{Key: "k", Value: "v"}}}}}},
		{Key: "blob", Value: bson.Binary{Subtype: 0, Data: []byte{0, 1, 2}}},
	})
	require.NoError(t, err)
	insert(t, ctx, coll, bson.Raw(want),
		bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "nextAttemptAt", Value: now.Add(time.Hour)}})

	got, err := coll.FindOne(ctx, bson.M{"_id": id})
	require.NoError(t, err)
	assert.Equal(t, bson.Raw(want), got)

	due, err := coll.Find(ctx, bson.M{"nextAttemptAt": bson.M{"$lte": now}}, store.FindOptions{})
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, id, lookup(t, due[0], "_id").ObjectID())
}
