package embedded_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// Run: go test -run '^$' -bench . -benchmem ./shared/store/embedded/

// BenchmarkTransition measures the consumer's conditional update on a
// collection of live documents, with a full history of a given size, in
// memory. The update finds its document by _id and changes copy-on-write
// trees, so neither size should matter (with lungo's engine layer, each
// write copied the collection and the oplog: 0.7 ms at 1,000 live and
// 1,000 oplog entries). The history also keeps every entry of the current
// second, so at a high write rate it holds at least the last second's
// writes.
func BenchmarkTransition(b *testing.B) {
	for _, live := range []int{100, 1000} {
		for _, oplog := range []int{1000, 2000, 10000} {
			b.Run(fmt.Sprintf("live=%d/oplog=%d", live, oplog), func(b *testing.B) {
				ctx := context.Background()
				db, err := embedded.Open(ctx, embedded.Options{OplogMinSize: oplog, OplogMaxSize: oplog})
				require.NoError(b, err)
				defer db.Close(ctx)
				coll := db.Collection("events")
				for i := range live {
					require.NoError(b, coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "type", Value: "t"}}))
				}
				for i := 0; i < oplog; i++ { // fill the history
					_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i % live}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "fill", Value: 1}}}}, false)
					require.NoError(b, err)
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					_, err := coll.FindOneAndUpdate(ctx,
						bson.D{{Key: "_id", Value: i % live}, {Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{0, nil}}}}},
						bson.D{{Key: "$set", Value: bson.D{{Key: "lastError", Value: "x"}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
					require.NoError(b, err)
				}
			})
		}
	}
}

// BenchmarkChangeStreamNext measures reading changes, half of which the
// Match skips, from a history written beforehand.
func BenchmarkChangeStreamNext(b *testing.B) {
	ctx := context.Background()
	const changes = 5000
	db, err := embedded.Open(ctx, embedded.Options{OplogMinSize: 2 * changes, OplogMaxSize: 2 * changes})
	require.NoError(b, err)
	defer db.Close(ctx)
	coll := db.Collection("events")
	cs, err := coll.Watch(ctx, store.WatchOptions{})
	require.NoError(b, err)
	first, err := func() (store.Change, error) {
		require.NoError(b, coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1}}))
		return cs.Next(ctx)
	}()
	require.NoError(b, err)
	for i := range changes {
		require.NoError(b, coll.InsertOne(ctx, bson.D{
			{Key: "_id", Value: i}, {Key: "type", Value: "t"}, {Key: "state", Value: i % 2},
			{Key: "payload", Value: bson.D{{Key: "to", Value: "someone@example.com"}, {Key: "n", Value: i}}},
		}))
	}
	match := bson.D{{Key: "operationType", Value: store.OpInsert}, {Key: "fullDocument.state", Value: 0}}

	b.ResetTimer()
	read := 0
	for b.Loop() {
		if read == 0 {
			b.StopTimer()
			require.NoError(b, cs.Close(ctx))
			cs, err = coll.Watch(ctx, store.WatchOptions{ResumeAfter: first.Token, Match: match})
			require.NoError(b, err)
			b.StartTimer()
		}
		_, err := cs.Next(ctx)
		require.NoError(b, err)
		read = (read + 1) % (changes / 2)
	}
}

// BenchmarkInsertFile measures an insert on the file-backed engine, one
// writer at a time: each waits for its own journal append and fdatasync.
func BenchmarkInsertFile(b *testing.B) {
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{Path: b.TempDir() + "/retrigger.db"})
	require.NoError(b, err)
	defer db.Close(ctx)
	coll := db.Collection("events")
	for i := 0; b.Loop(); i++ {
		require.NoError(b, coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "type", Value: "t"}}))
	}
}

// BenchmarkInsertFileParallel measures inserts on the file-backed engine
// from 16 writers at once (8 per core): the writes that arrive while one
// append syncs share the next append and its fdatasync (group commit), so
// the time per insert falls below one sync.
func BenchmarkInsertFileParallel(b *testing.B) {
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{Path: b.TempDir() + "/retrigger.db"})
	require.NoError(b, err)
	defer db.Close(ctx)
	coll := db.Collection("events")
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: n.Add(1)}, {Key: "type", Value: "t"}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
