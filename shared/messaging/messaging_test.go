package messaging

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

func TestRefRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []any{bson.NewObjectID(), "order-1", int64(7), bson.Binary{Subtype: 4, Data: make([]byte, 16)}, bson.D{{Key: "a", Value: 1}}} {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "payload", Value: bson.D{{Key: "$numberLong", Value: "x"}}}})
		require.NoError(t, err)
		rid := bson.Raw(raw).Lookup("_id")
		body, err := Body(raw)
		require.NoError(t, err)
		m := NewMsg("retrigger.events.t", MsgID(rid, "0"), rid, 4, body)
		got, err := ReadRef(m.Header)
		require.NoError(t, err)
		require.Equal(t, rid.Type, got.ID.Type)
		require.Equal(t, rid.Value, got.ID.Value)
		require.EqualValues(t, 4, got.Version)
		require.Equal(t, event.Key(rid)+"@0", m.Header.Get(nats.MsgIdHdr))
	}
	_, err := ReadRef(nats.Header{})
	require.ErrorIs(t, err, ErrNotARef)
	_, err = ReadRef(nats.Header{HeaderID: []string{"!!"}})
	require.Error(t, err)
}

func TestNames(t *testing.T) {
	t.Parallel()
	n := Names{StreamPrefix: "ACME", SubjectPrefix: "acme"}
	require.Equal(t, "ACME_EVENTS", n.EventsStream())
	require.Equal(t, "ACME_DLQ", n.DLQStream())
	require.Equal(t, "acme.events.email", n.EventSubject("email"))
	require.Equal(t, "acme.dlq.email", n.DLQSubject("email"))
	require.Equal(t, []string{"acme.events.>"}, n.EventsConfig(StreamOptions{}).Subjects)
	require.Equal(t, 2*time.Minute, n.EventsConfig(StreamOptions{}).Duplicates)
	require.Equal(t, "ACME_WORKERS_email", n.WorkersConsumer("email"))
	require.Equal(t, "acme.events.email", n.WorkersConfig("email", ConsumerOptions{}).FilterSubject)
	typ, ok := n.TypeOf("acme.events.email")
	require.True(t, ok)
	require.Equal(t, "email", typ)
	// Types a consumer name cannot hold are cleaned and told apart by a hash.
	a, b := n.WorkersConsumer("orders/new"), n.WorkersConsumer("orders\\new")
	require.NotEqual(t, a, b)
	require.Regexp(t, `^ACME_WORKERS_orders_new_[0-9a-f]{8}$`, a)
}
