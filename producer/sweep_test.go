package producer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// The sweep query selects exactly the events that need work and stalled.
func TestSweepFilter(t *testing.T) {
	t.Parallel()
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	events := db.Collection("events")

	now := time.Now().UTC().Truncate(time.Millisecond)
	stall := time.Minute
	old, fresh := now.Add(-2*stall), now.Add(-stall/2)
	oldID := bson.NewObjectIDFromTimestamp(old)
	tests := []struct {
		name string
		doc  bson.D
		want bool
	}{
		{"new, updated long ago", bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: 0}, {Key: "updatedAt", Value: old}}, true},
		{"new, updated recently", bson.D{{Key: "_id", Value: "b"}, {Key: "state", Value: 0}, {Key: "updatedAt", Value: fresh}}, false},
		{"bare, created long ago", bson.D{{Key: "_id", Value: "c"}, {Key: "type", Value: "t"}, {Key: "createdAt", Value: old}}, true},
		{"bare, created recently", bson.D{{Key: "_id", Value: "d"}, {Key: "type", Value: "t"}, {Key: "createdAt", Value: fresh}}, false},
		{"bare ObjectID from long ago", bson.D{{Key: "_id", Value: oldID}, {Key: "type", Value: "t"}}, true},
		{"bare ObjectID from now", bson.D{{Key: "_id", Value: bson.NewObjectIDFromTimestamp(now)}, {Key: "type", Value: "t"}}, false},
		{"bare string id, no times", bson.D{{Key: "_id", Value: "e"}, {Key: "type", Value: "t"}}, true},
		{"failed, due long ago", bson.D{{Key: "_id", Value: "f"}, {Key: "state", Value: 2}, {Key: "nextAttemptAt", Value: old}, {Key: "updatedAt", Value: old}}, true},
		{"failed, due recently", bson.D{{Key: "_id", Value: "g"}, {Key: "state", Value: 2}, {Key: "nextAttemptAt", Value: fresh}, {Key: "updatedAt", Value: old}}, false},
		{"failed, not due", bson.D{{Key: "_id", Value: "h"}, {Key: "state", Value: 2}, {Key: "nextAttemptAt", Value: now.Add(time.Hour)}, {Key: "updatedAt", Value: old}}, false},
		{"error, not archived", bson.D{{Key: "_id", Value: "i"}, {Key: "state", Value: 3}, {Key: "updatedAt", Value: old}}, true},
		{"success", bson.D{{Key: "_id", Value: "j"}, {Key: "state", Value: 1}, {Key: "updatedAt", Value: old}}, false},
		{"malformed state", bson.D{{Key: "_id", Value: "k"}, {Key: "state", Value: "x"}, {Key: "updatedAt", Value: old}}, true},
	}
	for _, tt := range tests {
		require.NoError(t, events.InsertOne(context.Background(), tt.doc))
	}
	docs, err := events.Find(context.Background(), sweepFilter(now, stall), store.FindOptions{})
	require.NoError(t, err)
	got := map[string]bool{}
	for _, d := range docs {
		got[d.Lookup("_id").String()] = true
	}
	for _, tt := range tests {
		id, err := bson.Marshal(bson.D{{Key: "v", Value: tt.doc[0].Value}})
		require.NoError(t, err)
		require.Equal(t, tt.want, got[bson.Raw(id).Lookup("v").String()], tt.name)
	}
}
