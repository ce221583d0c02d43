package storetest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

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
