package event

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// idValue marshals v as the _id of a document and returns that value.
func idValue(t testing.TB, v any) bson.RawValue {
	t.Helper()
	return raw(t, bson.D{{Key: "_id", Value: v}}).Lookup("_id")
}

// Ids MongoDB accepts, of every BSON type that can be an _id.
func sampleIDs(t testing.TB) []bson.RawValue {
	oid := bson.NewObjectID()
	vals := []any{
		oid, oid.Hex(), "7", int32(7), int64(7), 7.0, bson.NewDecimal128(7, 0),
		bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}, bson.Binary{Subtype: 0, Data: []byte("0123456789abcdef")},
		bson.DateTime(7), time.UnixMilli(8).UTC(),
		bson.D{{Key: "a", Value: 7}}, bson.D{{Key: "a", Value: int64(7)}},
		"line\nbreak", "with space", "", "ü", strings.Repeat("x", 600<<10),
		"s:7", "o:" + oid.Hex(), true, bson.Regex{Pattern: "a", Options: "i"}, bson.MinKey{}, bson.MaxKey{},
	}
	out := make([]bson.RawValue, len(vals))
	for i, v := range vals {
		out[i] = idValue(t, v)
	}
	return out
}

// No two distinct ids share a key, across BSON types: 7, "7", 7L, 7.0 and
// an ObjectID and its hex all differ.
func TestKeyDistinguishesTypes(t *testing.T) {
	t.Parallel()
	seen := map[string]bson.RawValue{}
	for _, id := range sampleIDs(t) {
		k := Key(id)
		require.LessOrEqual(t, len(k), 66, "key of %s", IDString(id))
		require.NotContains(t, k, "@")
		require.NotContains(t, k, " ")
		prev, dup := seen[k]
		require.False(t, dup, "%s and %s share key %s", IDString(prev), IDString(id), k)
		seen[k] = id
	}
	require.Equal(t, "i:7", Key(idValue(t, int32(7))))
	require.Equal(t, "s:7", Key(idValue(t, "7")))
}

// An id survives the header encoding with its exact type and bytes.
func TestEncodeIDRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range sampleIDs(t) {
		got, err := DecodeID(EncodeID(id))
		require.NoError(t, err)
		require.Equal(t, id.Type, got.Type)
		require.Equal(t, id.Value, got.Value)
	}
	trailing := EncodeID(bson.RawValue{Type: bson.TypeInt32, Value: []byte{7, 0, 0, 0, 1}})
	for _, bad := range []string{"", "!!", "AQ", EncodeID(idValue(t, "abc"))[:4], trailing} {
		_, err := DecodeID(bad)
		require.Error(t, err, bad)
	}
}

// Keys and encoded ids name messages (their Nats-Msg-Id, their headers)
// across versions: the appending forms write exactly what the string
// forms always wrote, here as they were first written.
func TestAppendKeyAndEncodedIDUnchanged(t *testing.T) {
	t.Parallel()
	key := func(id bson.RawValue) string {
		switch id.Type {
		case bson.TypeObjectID:
			return "o:" + id.ObjectID().Hex()
		case bson.TypeString:
			if s := id.StringValue(); isPlain(s) {
				return "s:" + s
			}
		case bson.TypeInt32:
			return "i:" + strconv.FormatInt(int64(id.Int32()), 10)
		case bson.TypeInt64:
			return "l:" + strconv.FormatInt(id.Int64(), 10)
		}
		h := sha256.New()
		h.Write([]byte{byte(id.Type)})
		h.Write(id.Value)
		return "h:" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
	}
	encode := func(id bson.RawValue) string {
		b := make([]byte, 1+len(id.Value))
		b[0] = byte(id.Type)
		copy(b[1:], id.Value)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	ids := append(sampleIDs(t), idValue(t, int32(-1)), idValue(t, int64(1)<<40), idValue(t, "ab"),
		bson.RawValue{Type: bson.TypeBoolean, Value: []byte{1}}, bson.RawValue{Type: bson.TypeNull})
	for _, id := range ids {
		require.Equal(t, key(id), string(AppendKey([]byte("x"), id))[1:], "key of %s", IDString(id))
		require.Equal(t, encode(id), string(AppendEncodedID([]byte("x"), id))[1:], "encoding of %s", IDString(id))
	}
}

func TestIDStringIsBounded(t *testing.T) {
	t.Parallel()
	require.Equal(t, "order-1", IDString(idValue(t, "order-1")))
	require.Equal(t, `"line\nbreak"`, IDString(idValue(t, "line\nbreak")))
	long := IDString(idValue(t, strings.Repeat("x", 1000)))
	require.Less(t, len(long), 100)
	require.Contains(t, long, "bytes)")
}
