package event_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// A failed event's next attempt, stored at BSON's millisecond precision, is
// never earlier than the time the policy chose.
func TestFailNextAttemptNotEarly(t *testing.T) {
	now := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	for _, next := range []time.Time{
		now.Add(200*time.Millisecond + 487*time.Microsecond),
		now.Add(200*time.Millisecond + time.Nanosecond),
		now.Add(200 * time.Millisecond), // already whole: unchanged
	} {
		update := event.Fail(now, next, event.LastError{Message: "boom", Retryable: true, At: now}, 0, 0)
		set := update[0].Value.(bson.D)
		doc := append(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "job"}}, set...)
		raw, err := bson.Marshal(doc)
		require.NoError(t, err)
		ev, err := event.Parse(raw, 0)
		require.NoError(t, err)
		require.False(t, ev.NextAttemptAt.Before(next), "stored %s, policy asked for %s", ev.NextAttemptAt, next)
		require.Less(t, ev.NextAttemptAt.Sub(next), time.Millisecond)
	}
}
