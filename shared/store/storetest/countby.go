package storetest

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// testCountBy: groups by one and by two fields, nested paths, a missing
// field as null, numbers of different BSON types as one value, and the
// filter applied first.
func testCountBy(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	groups, err := coll.CountBy(ctx, bson.D{}, "state")
	require.NoError(t, err)
	assert.Empty(t, groups, "a collection never written")

	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "a"}, {Key: "state", Value: int32(2)}, {Key: "r", Value: bson.D{{Key: "reason", Value: "x"}}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "type", Value: "a"}, {Key: "state", Value: int64(2)}},
		bson.D{{Key: "_id", Value: 3}, {Key: "type", Value: "a"}, {Key: "state", Value: 2.0}, {Key: "r", Value: bson.D{{Key: "reason", Value: "x"}}}},
		bson.D{{Key: "_id", Value: 4}, {Key: "type", Value: "b"}, {Key: "state", Value: int32(0)}},
		bson.D{{Key: "_id", Value: 5}, {Key: "type", Value: "b"}},
		bson.D{{Key: "_id", Value: 6}, {Key: "type", Value: "b"}, {Key: "state", Value: nil}},
	)
	render := func(groups []store.Group) []string {
		var out []string
		for _, g := range groups {
			var vs []string
			for _, v := range g.Values {
				switch {
				case v.Type == bson.TypeNull:
					vs = append(vs, "null")
				case v.Type == bson.TypeString:
					vs = append(vs, v.StringValue())
				default:
					f, ok := v.AsFloat64OK()
					require.True(t, ok, "%s", v)
					vs = append(vs, fmt.Sprint(f))
				}
			}
			out = append(out, fmt.Sprintf("%s=%d", strings.Join(vs, ","), g.Count))
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		name   string
		filter bson.D
		paths  []string
		want   []string
	}{
		{"one field, numbers by value, missing as null", bson.D{}, []string{"state"}, []string{"0=1", "2=3", "null=2"}},
		{"two fields", bson.D{}, []string{"type", "state"}, []string{"a,2=3", "b,0=1", "b,null=2"}},
		{"nested path", bson.D{}, []string{"r.reason"}, []string{"null=4", "x=2"}},
		{"filtered", bson.D{{Key: "type", Value: "b"}}, []string{"type"}, []string{"b=3"}},
		{"nothing matches", bson.D{{Key: "type", Value: "c"}}, []string{"type"}, nil},
	}
	for _, tt := range tests {
		groups, err := coll.CountBy(ctx, tt.filter, tt.paths...)
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, render(groups), tt.name)
	}
}

// testCountByLiteralValue: a document may hold the text of a field path as
// its value ("$type" is a valid type); it is counted as any other value.
func testCountByLiteralValue(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	insert(t, ctx, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "$type"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "type", Value: "$type"}},
		bson.D{{Key: "_id", Value: 3}, {Key: "type", Value: "a"}},
	)
	groups, err := coll.CountBy(ctx, bson.D{}, "type")
	require.NoError(t, err)
	got := map[string]int64{}
	for _, g := range groups {
		got[g.Values[0].StringValue()] = g.Count
	}
	assert.Equal(t, map[string]int64{"$type": 2, "a": 1}, got)
}

// testCountByTime: the documents matching the filter counted per interval
// of a nested date, the start of an interval in it and its end in the
// next, dates outside the intervals and values that are no dates left out.
func testCountByTime(t *testing.T, db store.Database) {
	ctx := testContext(t)
	coll := db.Collection("events")
	from := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	iv := store.Intervals{From: from, Step: time.Minute, N: 3}
	counts, err := coll.CountByTime(ctx, bson.D{}, "r.at", iv)
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 0, 0}, counts, "a collection never written")

	doc := func(id int, typ string, at any) bson.D {
		d := bson.D{{Key: "_id", Value: id}, {Key: "type", Value: typ}}
		if at != nil {
			d = append(d, bson.E{Key: "r", Value: bson.D{{Key: "at", Value: at}}})
		}
		return d
	}
	insert(t, ctx, coll,
		doc(1, "a", from), // interval 0, its first moment
		doc(2, "a", from.Add(59*time.Second+999*time.Millisecond)), // interval 0, its last
		doc(3, "a", from.Add(time.Minute)),                         // interval 1
		doc(4, "b", from.Add(150*time.Second)),                     // interval 2
		doc(5, "a", from.Add(-time.Millisecond)),                   // before
		doc(6, "a", from.Add(3*time.Minute)),                       // the end: after
		doc(7, "a", "2026-03-01T10:00:30Z"),                        // a string
		doc(8, "a", from.Add(90*time.Second).UnixMilli()),          // a number
		doc(9, "a", nil), // missing
	)
	counts, err = coll.CountByTime(ctx, bson.D{}, "r.at", iv)
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 1, 1}, counts)
	counts, err = coll.CountByTime(ctx, bson.D{{Key: "type", Value: "a"}}, "r.at", iv)
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 1, 0}, counts, "filtered")
	counts, err = coll.CountByTime(ctx, bson.D{}, "r.at", store.Intervals{From: from, Step: 90 * time.Second, N: 2})
	require.NoError(t, err)
	assert.Equal(t, []int64{3, 1}, counts, "another step")
	_, err = coll.CountByTime(ctx, bson.D{}, "r.at", store.Intervals{From: from, Step: 0, N: 2})
	require.Error(t, err, "no step")
}
