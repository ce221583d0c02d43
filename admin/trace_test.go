package admin_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
)

// An event's timeline names the spans: the application's at the insert
// (its traceparent), each run's and action's from the history; a
// traceparent that cannot be used says why.
func TestShowTraces(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	at := b.now.Add(-time.Minute)
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "traced"}, {Key: "type", Value: "partner"}, {Key: "createdAt", Value: at},
		{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{Key: "retrigger", Value: bson.D{{Key: "history", Value: bson.A{
			bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "failed"}, {Key: "attempt", Value: int64(1)},
				{Key: "traceId", Value: "4bf92f3577b34da6a3ce929d0e0e4736"}, {Key: "spanId", Value: "b7ad6b7169203331"}},
			bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "retried"}, {Key: "traceId", Value: "0af7651916cd43dd8448eb211c80319c"}, {Key: "spanId", Value: "c7ad6b7169203331"}},
		}}}}}))
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "bad"}, {Key: "type", Value: "partner"}, {Key: "createdAt", Value: at},
		{Key: "traceparent", Value: bson.D{{Key: "x", Value: 1}}}}))
	for _, ops := range []admin.Operations{b.admin, b.client} {
		s, err := ops.Show(b.ctx, "traced")
		require.NoError(t, err)
		f := s.Found[0]
		require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", f.TraceParent)
		require.Empty(t, f.TraceInvalid)
		require.Equal(t, "inserted", f.Timeline[0].What)
		require.Equal(t, []string{"failed", "retried"}, whats(f.Timeline))
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", f.Timeline[0].TraceID)
		require.Equal(t, "00f067aa0ba902b7", f.Timeline[0].SpanID, "the insert is the application's span")
		require.Equal(t, "b7ad6b7169203331", f.Timeline[1].SpanID)
		require.Equal(t, "0af7651916cd43dd8448eb211c80319c", f.Timeline[2].TraceID)

		s, err = ops.Show(b.ctx, "bad")
		require.NoError(t, err)
		require.Equal(t, "traceparent must be a string, not object", s.Found[0].TraceInvalid)
		require.Empty(t, s.Found[0].Timeline[0].TraceID)
	}
}
