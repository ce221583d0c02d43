package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store/mongostore"
)

// On a real server, each query of a sweep reads its page from an index,
// examining about as many documents as it returns, on 100,000 events of
// which a few dozen need work (explain "executionStats").
func TestSweepExplain(t *testing.T) {
	uri := os.Getenv("RETRIGGER_TEST_MONGODB_URI")
	if uri == "" {
		t.Skip("RETRIGGER_TEST_MONGODB_URI is not set: skipping the sweep's explain plans on a real MongoDB")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openFresh(t)(t)
	st := eventstore.New(db, eventstore.Options{})
	require.NoError(t, st.EnsureIndexes(ctx))
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	events := db.Collection(eventstore.DefaultEvents)
	var batch []any
	for i := range 100_000 {
		batch = append(batch, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%06d", i)}, {Key: "type", Value: "job"},
			{Key: "state", Value: int32(1)}, {Key: "version", Value: int64(1)}, {Key: "updatedAt", Value: old}})
		if len(batch) == 10_000 {
			require.NoError(t, events.InsertMany(ctx, batch))
			batch = nil
		}
	}
	for i := range 20 {
		batch = append(batch,
			bson.D{{Key: "_id", Value: fmt.Sprintf("failed-%d", i)}, {Key: "type", Value: "job"}, {Key: "state", Value: int32(2)}, {Key: "nextAttemptAt", Value: old}},
			bson.D{{Key: "_id", Value: fmt.Sprintf("new-%d", i)}, {Key: "type", Value: "job"}, {Key: "createdAt", Value: old}},
			bson.D{{Key: "_id", Value: fmt.Sprintf("error-%d", i)}, {Key: "type", Value: "job"}, {Key: "state", Value: int32(3)}, {Key: "updatedAt", Value: old}})
	}
	require.NoError(t, events.InsertMany(ctx, batch))

	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { require.NoError(t, client.Disconnect(context.Background())) }()
	database := db.(*mongostore.DB).Name()
	for _, q := range (eventstore.SweepOptions{Now: now, Stall: time.Minute, LeaseGrace: time.Second}).Queries() {
		find := bson.D{{Key: "find", Value: eventstore.DefaultEvents}, {Key: "filter", Value: q.Filter}, {Key: "limit", Value: 500}}
		if q.Sort != nil {
			find = append(find, bson.E{Key: "sort", Value: q.Sort})
		}
		var res bson.Raw
		require.NoError(t, client.Database(database).RunCommand(ctx, bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: "executionStats"}}).Decode(&res))
		stats := res.Lookup("executionStats")
		returned := stats.Document().Lookup("nReturned").AsInt64()
		examined := stats.Document().Lookup("totalDocsExamined").AsInt64()
		t.Logf("%s: returned %d, examined %d documents, %d keys", q.Name, returned, examined, stats.Document().Lookup("totalKeysExamined").AsInt64())
		require.LessOrEqual(t, examined, returned+5, "%s examines about as many documents as it returns", q.Name)
	}
}
