package eventstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// Every query of a sweep (and the scheduler's) leads with fields that are
// a prefix of one of the events collection's indexes, with its sort field
// right after the equality: on MongoDB each page reads its documents from
// an index in order, examining about as many as it returns.
// (TestSweepExplain in package mongostore checks the plans on a real
// server when RETRIGGER_TEST_MONGODB_URI is set.)
func TestEverySweepQueryHasAnIndex(t *testing.T) {
	t.Parallel()
	prefixes := map[string]bool{}
	for _, ix := range eventIndexes {
		var keys []string
		for _, k := range ix.Keys {
			keys = append(keys, k.Key)
			prefixes[strings.Join(keys, ",")] = true
		}
	}
	queries := (SweepOptions{Now: time.Now(), Stall: time.Minute}).Queries()
	queries = append(queries, Query{Name: "scheduler", Filter: bson.D{{Key: event.FieldState, Value: 2}, {Key: event.FieldNextAttemptAt, Value: 1}},
		Sort: bson.D{{Key: event.FieldNextAttemptAt, Value: 1}}})
	for _, q := range queries {
		lead := q.Filter[0].Key
		want := lead
		if q.Sort != nil && q.Sort[0].Key != lead {
			want = lead + "," + q.Sort[0].Key
		}
		require.True(t, prefixes[want], "%s: no index starts with %s", q.Name, want)
	}
}

// counting counts the documents Find returns and the queries it runs.
type counting struct {
	store.Database
	queries, docs atomic.Int64
}

func (c *counting) Collection(name string) store.Collection {
	return countingColl{Collection: c.Database.Collection(name), c: c}
}

type countingColl struct {
	store.Collection
	c *counting
}

func (cc countingColl) Find(ctx context.Context, filter any, o store.FindOptions) ([]bson.Raw, error) {
	docs, err := cc.Collection.Find(ctx, filter, o)
	cc.c.queries.Add(1)
	cc.c.docs.Add(int64(len(docs)))
	return docs, err
}

// A sweep pass costs O(candidates), not O(collection): on 100,000 events
// of which 25 need work, it runs one query per branch and reads the 25.
// (The embedded engine answers each query with a scan of its own; on
// MongoDB the indexes above serve them.)
func TestSweepCostIsCandidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	const total = 100_000
	docs := make([]bson.D, 0, total+25)
	for i := range total {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("done-%06d", i)}, {Key: "type", Value: "job"},
			{Key: "state", Value: int32(1)}, {Key: "version", Value: int64(1)}, {Key: "updatedAt", Value: old}})
	}
	for i := range 10 {
		docs = append(docs,
			bson.D{{Key: "_id", Value: fmt.Sprintf("failed-%d", i)}, {Key: "type", Value: "job"}, {Key: "state", Value: int32(2)}, {Key: "nextAttemptAt", Value: old}},
			bson.D{{Key: "_id", Value: fmt.Sprintf("new-%d", i)}, {Key: "type", Value: "job"}, {Key: "createdAt", Value: old}})
	}
	for i := range 5 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("error-%d", i)}, {Key: "type", Value: "job"}, {Key: "state", Value: int32(3)}, {Key: "updatedAt", Value: old}})
	}
	db := seeded(t, DefaultEvents, docs)
	c := &counting{Database: db}
	st := New(c, Options{})
	require.NoError(t, st.EnsureIndexes(ctx))
	events := db.Collection(DefaultEvents)
	n, err := events.Count(ctx, nil)
	require.NoError(t, err)
	require.EqualValues(t, total+25, n)

	visited := 0
	require.NoError(t, st.Sweep(ctx, SweepOptions{Now: now, Stall: time.Minute, LeaseGrace: time.Second, Page: 500}, func(bson.Raw) error {
		visited++
		return nil
	}))
	require.Equal(t, 25, visited)
	require.EqualValues(t, 25, c.docs.Load(), "it reads the candidates and nothing else")
	require.EqualValues(t, len((SweepOptions{}).branches()), c.queries.Load(), "one query per branch: every page is short")
}

// seeded opens an embedded engine whose collection holds docs, inserted in
// one write.
func seeded(t *testing.T, coll string, docs []bson.D) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	list := make([]any, len(docs))
	for i, d := range docs {
		list[i] = d
	}
	require.NoError(t, db.Collection(coll).InsertMany(context.Background(), list))
	return db
}
