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

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store/mongostore"
)

// On a real server, each page of the web view's lists is read from an
// index in order, examining about as many keys and documents as it
// returns, on the first page and deep in 100,000 events and 100,000
// archived events (explain "executionStats").
func TestPageExplain(t *testing.T) {
	uri := os.Getenv("RETRIGGER_TEST_MONGODB_URI")
	if uri == "" {
		t.Skip("RETRIGGER_TEST_MONGODB_URI is not set: skipping the pages' explain plans on a real MongoDB")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	db := openFresh(t)(t)
	st := eventstore.New(db, eventstore.Options{})
	require.NoError(t, st.EnsureIndexes(ctx))
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	for _, coll := range []string{eventstore.DefaultEvents, eventstore.DefaultErrors} {
		var batch []any
		for i := range 100_000 {
			typ := []string{"mail", "sms", "partner"}[i%3]
			when := at.Add(time.Duration(i/10) * time.Millisecond) // ten at each millisecond
			doc := bson.D{{Key: "_id", Value: fmt.Sprintf("%s-%06d", coll, i)}, {Key: "type", Value: typ},
				{Key: "state", Value: int32(1 + i%3)}, {Key: "updatedAt", Value: when},
				{Key: "retrigger", Value: bson.D{{Key: "reason", Value: []string{"exhausted", "permanent"}[i%2]}, {Key: "archivedAt", Value: when}}}}
			batch = append(batch, doc)
			if len(batch) == 10_000 {
				require.NoError(t, db.Collection(coll).InsertMany(ctx, batch))
				batch = nil
			}
		}
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { require.NoError(t, client.Disconnect(context.Background())) }()
	database := db.(*mongostore.DB).Name()

	cases := []struct {
		w eventstore.Where
		f eventstore.Filter
	}{
		{eventstore.InEvents, eventstore.Filter{}},
		{eventstore.InEvents, eventstore.Filter{States: []event.State{event.StateFailed}}},
		{eventstore.InEvents, eventstore.Filter{Types: []string{"sms"}}},
		{eventstore.InEvents, eventstore.Filter{Since: at.Add(time.Minute)}},
		{eventstore.InErrors, eventstore.Filter{}},
		{eventstore.InErrors, eventstore.Filter{Types: []string{"partner"}}},
		{eventstore.InErrors, eventstore.Filter{Reasons: []event.Reason{event.ReasonPermanent}}},
	}
	for _, c := range cases {
		// deep: past half of the collection
		p, err := st.Page(ctx, c.w, eventstore.PageRequest{Filter: c.f, Limit: 1000})
		require.NoError(t, err)
		for range 20 {
			p, err = st.Page(ctx, c.w, eventstore.PageRequest{Filter: c.f, Limit: 1000, After: p.Older})
			require.NoError(t, err)
		}
		for _, key := range []*eventstore.PageKey{nil, p.Older} {
			for _, newer := range []bool{false, true} {
				if key == nil && newer {
					continue
				}
				q := st.PageQuery(c.w, c.f, key, newer)
				find := bson.D{{Key: "find", Value: c.w.String()}, {Key: "filter", Value: q.Filter}, {Key: "sort", Value: q.Sort}, {Key: "limit", Value: 51}}
				var res bson.Raw
				require.NoError(t, client.Database(database).RunCommand(ctx, bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: "executionStats"}}).Decode(&res))
				stats := res.Lookup("executionStats").Document()
				returned := stats.Lookup("nReturned").AsInt64()
				examined := stats.Lookup("totalDocsExamined").AsInt64()
				keys := stats.Lookup("totalKeysExamined").AsInt64()
				t.Logf("%s %+v deep=%v newer=%v: returned %d, examined %d documents, %d keys", c.w, c.f, key != nil, newer, returned, examined, keys)
				require.EqualValues(t, 51, returned)
				require.LessOrEqual(t, examined, returned+20, "%s %+v: examines about as many documents as it returns", c.w, c.f)
				require.LessOrEqual(t, keys, 2*returned+60, "%s %+v: reads about as many keys as it returns", c.w, c.f)
			}
		}
	}
}
