package embedded

import (
	"context"
	"testing"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/mongokit"
	"github.com/stretchr/testify/require"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

func BenchmarkCompareLungoStream(b *testing.B) {
	ctx := context.Background()
	const changes = 5000
	db, err := Open(ctx, Options{OplogMinSize: 2 * changes, OplogMaxSize: 2 * changes})
	require.NoError(b, err)
	defer db.Close(ctx)
	coll := db.Collection("events")
	for i := range changes {
		require.NoError(b, coll.InsertOne(ctx, bson.D{
			{Key: "_id", Value: i}, {Key: "type", Value: "t"}, {Key: "state", Value: i % 2},
			{Key: "payload", Value: bson.D{{Key: "to", Value: "someone@example.com"}, {Key: "n", Value: i}}},
		}))
	}
	match, _ := toDoc(bson.D{{Key: "operationType", Value: store.OpInsert}, {Key: "fullDocument.state", Value: 0}})
	var s *lungo.Stream
	delivered := 0
	b.ResetTimer()
	for b.Loop() {
		for {
			if s == nil || delivered == changes/2 {
				b.StopTimer()
				s, err = db.engine.Watch(lungo.Handle{"retrigger", "events"}, nil, nil, nil, nil)
				require.NoError(b, err)
				// rewind: watch from the start of the oplog
				delivered = 0
				b.StartTimer()
			}
			if !s.Next(ctx) {
				b.Fatal(s.Err())
			}
			var raw bsonv1.Raw
			require.NoError(b, s.Decode(&raw))
			var d bsonv1.D
			require.NoError(b, bsonv1.Unmarshal(raw, &d))
			ok, _ := mongokit.Match(&d, match)
			if !ok {
				continue
			}
			ev := bson.Raw(raw)
			_ = store.Change{Op: ev.Lookup("operationType").StringValue(), ID: ev.Lookup("documentKey", "_id"), Doc: ev.Lookup("fullDocument").Document(), Token: ev.Lookup("_id").Document()}
			delivered++
			break
		}
	}
}
