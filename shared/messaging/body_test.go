package messaging

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// bodyCases are documents of every type, and of the edge cases of the
// types Body writes itself.
func bodyCases(t testing.TB) []bson.Raw {
	docs := []bson.D{
		{},
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.D{{Key: "to", Value: "ada@example.com"}}}},
		{{Key: "empty", Value: bson.D{}}, {Key: "arr", Value: bson.A{}}, {Key: "nested", Value: bson.A{bson.A{1, "x"}, bson.D{{Key: "a", Value: nil}}}}},
		{{Key: "i32", Value: int32(math.MinInt32)}, {Key: "i64", Value: int64(math.MaxInt64)}, {Key: "t", Value: true}, {Key: "f", Value: false}},
		{{Key: "d", Value: 1.0}, {Key: "d2", Value: math.Copysign(0, -1)}, {Key: "d3", Value: 1e21}, {Key: "d4", Value: 5e-324}, {Key: "d5", Value: 0.1},
			{Key: "d6", Value: 123456789.125}, {Key: "d7", Value: math.MaxFloat64}, {Key: "d8", Value: 1e-7}, {Key: "d9", Value: 100.0}},
		{{Key: "nan", Value: math.NaN()}, {Key: "inf", Value: math.Inf(1)}, {Key: "-inf", Value: math.Inf(-1)}},
		{{Key: "s", Value: "quote \" backslash \\ nl \n cr \r tab \t bs \b ff \f nul \x00 us \x1f del \x7f <&> é 😀 \u2028 \u2029"}},
		{{Key: "invalid utf-8", Value: "a\xffb\xc3"}, {Key: "key \"with\"\n escapes\u2028", Value: 1}},
		{{Key: "now", Value: bson.DateTime(1732752000123)}, {Key: "epoch", Value: bson.DateTime(0)}, {Key: "before 1970", Value: bson.DateTime(-1)},
			{Key: "year 9999", Value: bson.NewDateTimeFromTime(time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC))},
			{Key: "year 10000", Value: bson.NewDateTimeFromTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, {Key: "min", Value: bson.DateTime(math.MinInt64)}, {Key: "max", Value: bson.DateTime(math.MaxInt64)}},
		{{Key: "$numberLong", Value: "x"}, {Key: "$oid", Value: bson.D{{Key: "$date", Value: "y"}}}},
		// Types left to the driver.
		{{Key: "bin", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}, {Key: "s", Value: "x"}},
		{{Key: "deep", Value: bson.D{{Key: "re", Value: bson.Regex{Pattern: "a.*", Options: "mi"}}}}},
		{{Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "dec", Value: bson.NewDecimal128(1, 2)}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
			{Key: "undef", Value: bson.Undefined{}}, {Key: "code", Value: bson.JavaScript("x()")}, {Key: "sym", Value: bson.Symbol("s")},
			{Key: "cws", Value: bson.CodeWithScope{Code: "y()", Scope: bson.D{{Key: "a", Value: 1}}}}, {Key: "ptr", Value: bson.DBPointer{DB: "db.c", Pointer: bson.NewObjectID()}}},
		{{Key: "payload", Value: bson.D{{Key: "data", Value: strings.Repeat("x", 256)}}}},
	}
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		b, err := bson.Marshal(d)
		require.NoError(t, err)
		out[i] = b
	}
	return out
}

// Body writes what the driver's relaxed extended JSON writes, byte for
// byte, for every type.
func TestBodyIsTheDriversRelaxedJSON(t *testing.T) {
	t.Parallel()
	for _, doc := range bodyCases(t) {
		want, err := bson.MarshalExtJSON(doc, false, false)
		require.NoError(t, err)
		got, err := Body(doc)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}

func TestBodyOfBytesThatDoNotParse(t *testing.T) {
	t.Parallel()
	for _, raw := range [][]byte{nil, {1, 2}, {5, 0, 0, 0, 1}, {12, 0, 0, 0, 2, 'a', 0, 200, 0, 0, 0, 0}} {
		_, err := Body(raw)
		require.ErrorContains(t, err, "rendering event as JSON", "%x", raw)
	}
}

func FuzzBody(f *testing.F) {
	for _, doc := range bodyCases(f) {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, werr := bson.MarshalExtJSON(bson.Raw(raw), false, false)
		got, gerr := Body(raw)
		if werr != nil || gerr != nil {
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("driver error %v, Body error %v on %x", werr, gerr, raw)
			}
			return
		}
		if string(want) != string(got) {
			t.Fatalf("on %x:\ndriver %s\nBody   %s", raw, want, got)
		}
	})
}
