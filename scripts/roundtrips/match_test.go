package roundtrips

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The conjuncts that read fullDocument run after MongoDB's lookup; the
// others before it, whether written as fields or as a top-level $and.
func TestSplit(t *testing.T) {
	onDescription := bson.D{{Key: "updateDescription.updatedFields.state", Value: bson.D{{Key: "$ne", Value: 1}}}}
	onDocument := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "fullDocument.state", Value: bson.D{{Key: "$nin", Value: bson.A{1}}}}},
		bson.D{{Key: "operationType", Value: "drop"}},
	}}}
	inExpr := bson.D{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{"$fullDocument.type", "x"}}}}}
	tests := []struct {
		name          string
		match         bson.D
		before, after bson.D
	}{
		{"nothing", nil, nil, nil},
		{"fields", append(append(bson.D{}, onDescription...), onDocument...), onDescription, onDocument},
		{"$and", bson.D{{Key: "$and", Value: bson.A{onDescription, onDocument}}}, onDescription, onDocument},
		{"only before", onDescription, onDescription, nil},
		{"a field path in $expr", inExpr, nil, inExpr},
		{"a field that only starts like it", bson.D{{Key: "fullDocumentary", Value: 1}}, bson.D{{Key: "fullDocumentary", Value: 1}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, after, err := split(tt.match)
			require.NoError(t, err)
			require.Equal(t, tt.before, before)
			require.Equal(t, tt.after, after)
		})
	}
}
