package eventstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Every page query's equalities and $in are the leading fields of one of
// the page indexes, followed by the page's order (time, _id): on MongoDB
// each page is read from that index in order, with no sort and no scan.
// (TestPageExplain in package mongostore checks the plans on a real
// server when RETRIGGER_TEST_MONGODB_URI is set.)
func TestEveryPageQueryHasAnIndex(t *testing.T) {
	t.Parallel()
	st := &Store{opts: Options{}.WithDefaults()}
	key := &PageKey{Time: time.Now(), ID: bson.RawValue{Type: bson.TypeString, Value: bsonString("x")}}
	undated := &PageKey{ID: key.ID}
	filters := []struct {
		w Where
		f Filter
	}{
		{InEvents, Filter{}},
		{InEvents, Filter{States: []event.State{event.StateFailed}}},
		{InEvents, Filter{Types: []string{"mail"}}},
		{InEvents, Filter{Types: []string{"mail"}, States: []event.State{event.StateNew, event.StateError}}},
		{InEvents, Filter{Since: time.Now().Add(-time.Hour)}},
		{InErrors, Filter{}},
		{InErrors, Filter{Types: []string{"mail", "sms"}}},
		{InErrors, Filter{Reasons: []event.Reason{event.ReasonCancelled}}},
		{InErrors, Filter{Types: []string{"mail"}, Reasons: []event.Reason{event.ReasonCancelled}}},
		{InErrors, Filter{Until: time.Now()}},
	}
	for _, tt := range filters {
		for _, k := range []*PageKey{nil, key, undated} {
			for _, newer := range []bool{false, true} {
				q := st.PageQuery(tt.w, tt.f, k, newer)
				if len(q.Filter) == 0 {
					continue // a time range has no undated documents
				}
				base := q.Filter[0].Value.(bson.A)[0].(bson.D)
				var points []string
				for _, e := range base {
					if e.Key != tt.w.timeField() {
						points = append(points, e.Key)
					}
				}
				sort := []string{q.Sort[0].Key, q.Sort[1].Key}
				require.Equal(t, []string{tt.w.timeField(), event.FieldID}, sort)
				served := false
				for _, ix := range PageIndexes(tt.w) {
					var keys []string
					for _, e := range ix.Keys {
						keys = append(keys, e.Key)
					}
					lead := keys[:len(keys)-2]
					if slices.Equal(keys[len(keys)-2:], sort) && len(lead) > 0 == (len(points) > 0) && subset(lead, points) {
						served = true
					}
				}
				require.True(t, served, "%s %+v from %v: no index leads with %v then %v", tt.w, tt.f, k, points, sort)
			}
		}
	}
}

// Every grouped count of the activity chart is an equality and a range on
// the leading fields of an index, in that order: on MongoDB an aggregation
// that reads index keys only.
func TestEveryActivityCountHasAnIndex(t *testing.T) {
	t.Parallel()
	for _, q := range activityCounts() {
		indexes := append(append([]store.Index{}, eventIndexes...), viewIndexes(InEvents)...)
		if q.w == InErrors {
			indexes = append(append([]store.Index{}, errorIndexes...), viewIndexes(InErrors)...)
		}
		var fields []string
		for _, e := range q.filter {
			fields = append(fields, e.Key)
		}
		fields = append(fields, q.path)
		served := false
		for _, ix := range indexes {
			var keys []string
			for _, e := range ix.Keys {
				keys = append(keys, e.Key)
			}
			if len(keys) >= len(fields) && slices.Equal(keys[:len(fields)], fields) {
				served = true
			}
		}
		require.True(t, served, "%s in %s: no index leads with %v", q.figure, q.w, fields)
	}
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func bsonString(s string) []byte {
	_, data, _ := bson.MarshalValue(s)
	return data
}

// A page costs its documents, however deep: on 100,000 archived events
// (many archived at the same millisecond), each page is one query that
// returns one more document than it shows. (The embedded engine sorts and
// filters the whole collection for each query; on MongoDB the page
// indexes serve them.)
func TestPageCostIsItsDocuments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	const total = 100_000
	docs := make([]bson.D, 0, total)
	for i := range total {
		var id any = fmt.Sprintf("e-%06d", i)
		if i%2 == 0 {
			id = int64(i)
		}
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "job"},
			{Key: "state", Value: int32(3)}, {Key: "retrigger", Value: bson.D{{Key: "reason", Value: "exhausted"},
				{Key: "archivedAt", Value: at.Add(time.Duration(i/100) * time.Millisecond)}}}})
	}
	db := seeded(t, DefaultErrors, docs)
	c := &counting{Database: db}
	st := New(c, Options{})
	require.NoError(t, st.EnsureIndexes(ctx))

	var after *PageKey
	seen := map[string]bool{}
	for page := range 3 {
		c.queries.Store(0)
		c.docs.Store(0)
		start := time.Now()
		p, err := st.Page(ctx, InErrors, PageRequest{After: after, Limit: 50, Filter: Filter{Types: []string{"job"}}})
		require.NoError(t, err)
		t.Logf("page %d on the embedded engine: %s", page, time.Since(start).Round(time.Millisecond))
		require.Len(t, p.Docs, 50)
		require.EqualValues(t, 1, c.queries.Load(), "page %d: one query", page)
		require.EqualValues(t, 51, c.docs.Load(), "page %d: its documents and one more", page)
		for _, d := range p.Docs {
			k := event.Key(d.Lookup("_id"))
			require.False(t, seen[k])
			seen[k] = true
		}
		after = p.Older
	}
}
