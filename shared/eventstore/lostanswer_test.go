package eventstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/store/faultstore"
)

// Flow control's writes whose answers are lost, though the server applied
// them: a breaker's counts are not written twice (the retry would add
// them again), and a concurrency slot taken or given back is known to be,
// so that no slot stays held by a run that never started. A write that
// never reached the server still fails.
func TestFlowWritesWithLostAnswers(t *testing.T) {
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close(ctx)) })
	var fault atomic.Int32 // the fault of every write to the flow collection
	fdb := faultstore.Wrap(db, func(op faultstore.Op) faultstore.Fault {
		if op.Collection == "retrigger_flow" && op.Write() {
			return faultstore.Fault(fault.Load())
		}
		return faultstore.None
	})
	st := eventstore.New(fdb, eventstore.Options{})
	now := time.Now()
	load := func() eventstore.FlowState {
		fs, err := st.LoadFlows(ctx, []string{"partner"})
		require.NoError(t, err)
		require.Len(t, fs, 1)
		return fs[0]
	}

	fault.Store(int32(faultstore.LostAnswer))
	f := eventstore.FlowState{Type: "partner", Window: eventstore.Window{Head: 10, Width: time.Second, Runs: []int64{3}, Fails: []int64{3}}}
	require.NoError(t, st.SaveFlow(ctx, f), "created, its answer lost")
	f = load()
	require.EqualValues(t, 1, f.Rev)
	f.Window.Runs[0], f.Window.Fails[0] = 5, 5
	require.NoError(t, st.SaveFlow(ctx, f), "written over rev 1, its answer lost")
	require.EqualValues(t, 2, load().Rev)
	require.Error(t, st.SaveFlow(ctx, f), "over rev 1, which is gone: not written, and not taken for written")
	require.EqualValues(t, 2, load().Rev)
	require.Equal(t, []int64{5}, load().Window.Fails)

	taken, err := st.AcquireSlot(ctx, "slot.partner.k", 1, eventstore.Slot{Owner: "a", Token: 7, Until: now.Add(time.Minute)}, now)
	require.NoError(t, err)
	require.True(t, taken, "the slot is this run's, its answer lost")
	taken, err = st.AcquireSlot(ctx, "slot.partner.k", 1, eventstore.Slot{Owner: "b", Token: 8, Until: now.Add(time.Minute)}, now)
	require.NoError(t, err)
	require.False(t, taken, "one slot, held")
	require.NoError(t, st.ReleaseSlot(ctx, "slot.partner.k", 7), "given back, its answer lost")
	n, err := db.Collection("retrigger_flow").Count(ctx, bson.D{{Key: "_id", Value: "slot.partner.k"}})
	require.NoError(t, err)
	require.Zero(t, n, "no holder left: the document is gone")

	fault.Store(int32(faultstore.Refused))
	f = load()
	require.ErrorIs(t, st.SaveFlow(ctx, f), faultstore.ErrInjected, "never applied: an error")
	require.EqualValues(t, 2, load().Rev)
	_, err = st.AcquireSlot(ctx, "slot.partner.k", 1, eventstore.Slot{Owner: "a", Token: 9, Until: now.Add(time.Minute)}, now)
	require.ErrorIs(t, err, faultstore.ErrInjected)
}
