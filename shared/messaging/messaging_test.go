package messaging

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

func TestEncodeDecodeRef(t *testing.T) {
	t.Parallel()
	id := bson.NewObjectID()
	tests := []struct {
		name string
		doc  bson.D
		want Ref
	}{
		{"full", bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "t"}, {Key: "state", Value: int32(2)}, {Key: "version", Value: int64(7)}, {Key: "nextAttemptAt", Value: time.Now()}}, Ref{State: event.StateFailed, Version: 7}},
		{"bare", bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "t"}}, Ref{}},
		{"nulls", bson.D{{Key: "_id", Value: id}, {Key: "state", Value: nil}, {Key: "version", Value: nil}}, Ref{}},
		{"double version", bson.D{{Key: "_id", Value: id}, {Key: "version", Value: 3.0}}, Ref{Version: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := bson.Marshal(tt.doc)
			require.NoError(t, err)
			body, err := Encode(raw)
			require.NoError(t, err)
			require.Contains(t, string(body), id.Hex(), "readable in nats stream view")
			got, err := DecodeRef(body)
			require.NoError(t, err)
			require.Equal(t, id, got.ID.ObjectID())
			require.Equal(t, tt.want.Version, got.Version)
			require.Equal(t, tt.want.State, got.State)
			require.Equal(t, tt.name == "full", !got.NextAttemptAt.IsZero())
		})
	}
	_, err := DecodeRef([]byte(`{"type":"t"}`))
	require.ErrorContains(t, err, "no _id")
	_, err = DecodeRef([]byte(`not json`))
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
}
