package eventstoretest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// SampleIDs are _id values of every BSON type MongoDB accepts as an _id.
func SampleIDs() []any {
	dec, _ := bson.ParseDecimal128("7.5")
	return []any{
		bson.NewObjectID(), "plain", "line\nbreak\x01", strings.Repeat("x", 10<<10), int32(7), int64(1) << 40, 7.25, dec,
		bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}, bson.Binary{Subtype: 0, Data: []byte{0, 1, 2}},
		time.UnixMilli(1700000000000).UTC(), bson.D{{Key: "tenant", Value: "a"}, {Key: "n", Value: int32(1)}}, true,
	}
}

// Every operation works on an event of any _id type, and the archive keeps
// the id's exact BSON type.
func testAnyID(t *testing.T, b *bundle) {
	for _, v := range SampleIDs() {
		id := b.insert(t, job(v))
		c := b.claim(t, id)
		require.Equal(t, eventstore.Claimed, c.Outcome, "%s", id)
		require.NoError(t, b.store.RenewLease(b.ctx, &c, b.now.Add(time.Minute)), "%s", id)
		require.NoError(t, b.store.Complete(b.ctx, &c, failure(b.now, b.now.Add(-time.Second), 1)), "%s", id)
		c = b.claim(t, id)
		require.Equal(t, eventstore.Claimed, c.Outcome, "%s", id)
		require.NoError(t, b.store.Complete(b.ctx, &c, eventstore.Transition{To: event.StateError, At: b.now, Attempts: 2, Reason: event.ReasonExhausted}), "%s", id)
		doc, err := b.store.Find(b.ctx, id)
		require.NoError(t, err)
		require.NoError(t, b.store.MoveToErrors(b.ctx, doc, eventstore.Archive{Reason: event.ReasonExhausted, At: b.now}), "%s", id)
		archived := b.raw(t, b.errs, id)
		got := archived.Lookup("_id")
		require.Equal(t, id.Type, got.Type, "the archive keeps the id's type")
		require.Equal(t, id.Value, got.Value)
		require.Nil(t, b.get(t, b.events, id))
	}
}
