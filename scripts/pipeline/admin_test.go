package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// An operator's retry and redrive run the event again promptly: the
// producer's relay sees the update and the re-insert (whose message id
// names the change's cluster time, so JetStream does not drop it as a
// duplicate of the event's first insert), with the sweeper out of play.
func TestRetryAndRedriveRunAgain(t *testing.T) {
	t.Parallel()
	var healed atomic.Bool
	b := setup(t, newRecorder(func(string, int) error {
		if healed.Load() {
			return nil
		}
		return errBoom
	}), func(o *Options) {
		o.Worker.Policies = fastPolicy(2)
		o.Worker.Policies.Default.InitialInterval = time.Hour // a failed event waits an hour
		o.Worker.Policies.Default.MaxInterval = time.Hour
		o.Producer.Sweeper.Interval = time.Hour
	})
	ops := admin.New(eventstore.New(b.Database(), eventstore.Options{}), nil, b.Options().Producer.Names)
	ctx := context.Background()

	failing := b.insertJob(t)
	b.waitState(t, failing, event.StateFailed, 1)
	healed.Store(true)
	res, err := ops.Retry(ctx, admin.ActionRequest{Query: admin.Query{IDs: []string{failing.Hex()}}, By: "test"}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, res.Applied)
	ev := b.waitState(t, failing, event.StateSuccess, 1)
	require.Equal(t, []string{"failed", "retried", "success"}, outcomesOf(ev.History))

	healed.Store(false)
	dead := b.insertJob(t, bson.E{Key: "maxAttempts", Value: int64(1)})
	b.waitArchived(t, dead)
	healed.Store(true)
	res, err = ops.Redrive(ctx, admin.ActionRequest{Query: admin.Query{IDs: []string{dead.Hex()}}, By: "test"}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, res.Applied)
	ev = b.waitState(t, dead, event.StateSuccess, 0)
	require.Equal(t, []string{"error", "archived", "redriven", "success"}, outcomesOf(ev.History))
	require.EqualValues(t, 1, ev.Redrives)
	require.Len(t, b.rec.callTimes(dead.Hex()), 2, "one run before the archive, one after the redrive")
}

func outcomesOf(h []event.Attempt) []string {
	out := make([]string, len(h))
	for i, a := range h {
		out[i] = a.Outcome
	}
	return out
}
