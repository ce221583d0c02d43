package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"
)

// Cost splits a small load's CPU and allocations by part: every part that
// runs shows, and retrigger's own parts are a share of the whole.
func TestCostSplitsByPart(t *testing.T) {
	if testing.Short() {
		t.Skip("a load with every allocation recorded")
	}
	res, err := Cost(context.Background(), Options{Count: 300, Replicas: 1, FailFirst: 3, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond})
	require.NoError(t, err)
	got := map[string]CostPart{}
	var total float64
	for _, p := range res.Parts {
		got[p.Part] = p
		total += p.Allocs
		t.Logf("%-26s %8.1f µs %8.1f allocs %9.0f B", p.Part, p.CPUMicros, p.Allocs, p.Bytes)
	}
	t.Logf("%-26s %8.1f µs %8.1f allocs %9.0f B", "own", res.Own.CPUMicros, res.Own.Allocs, res.Own.Bytes)
	for _, part := range []string{PartProducer, PartWorker, PartArchiver, PartEngine, PartClient, PartServer, PartLoad} {
		require.Positive(t, got[part].Allocs, "%s allocates", part)
	}
	require.Positive(t, res.Own.Allocs)
	require.Less(t, res.Own.Allocs, total)
	require.InDelta(t, got[PartProducer].Allocs+got[PartWorker].Allocs+got[PartArchiver].Allocs, res.Own.Allocs, 1e-9)
}

// The load's round trips per event, counted: an event that succeeds at
// once is one change the relay reads (the insert) and no lookup on
// MongoDB, a claim and a transition from the worker, one message stored,
// delivered and acknowledged; one archived after its attempts adds a
// change and a lookup per failure and for the error, a dead letter, and
// the archiver's read, copy and delete: the change stream's $match drops
// the claims and the success before MongoDB reads the document. Periodic
// work (flow control's refresh, sweeps, retention, checkpoints) adds a
// little to the components' commands.
func TestRoundTripsPerEvent(t *testing.T) {
	tests := []struct {
		name      string
		failFirst int64
		changes   float64 // relay
		lookups   float64
		claims    float64 // worker: findOneAndUpdate
		messages  float64 // stored, delivered, acked
	}{
		{"success at once", 0, 1, 0, 1, 1},
		{"archived after 3 failures", 3, 4, 3, 3, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), Options{Count: 200, Replicas: 1, FailFirst: tt.failFirst, RoundTrips: true,
				RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond})
			require.NoError(t, err)
			require.True(t, res.Invariants.OK, "%v", res.Invariants.Violations)
			rt := res.RoundTrips
			require.NotNil(t, rt)
			t.Logf("%+v", *rt)
			require.InDelta(t, tt.changes, rt.Changes, 1e-9, "change events the relay reads")
			require.InDelta(t, tt.lookups, rt.Lookups, 1e-9, "documents MongoDB looks up")
			require.InDelta(t, tt.claims, rt.Commands["worker"]["events.update"], 1e-9, "transitions")
			require.InDelta(t, tt.messages, rt.Stored, 1e-9, "NATS messages stored")
			require.InDelta(t, rt.Delivered, rt.Acked, 1e-9, "every delivery acknowledged in the end")
			// A retry's message that comes a little early is handed back and
			// delivered again, and its claim finds it not due yet: a few.
			require.GreaterOrEqual(t, rt.Commands["worker"]["events.findOneAndUpdate"], tt.claims, "claims")
			require.LessOrEqual(t, rt.Commands["worker"]["events.findOneAndUpdate"], tt.claims*1.05, "claims")
			require.GreaterOrEqual(t, rt.Delivered, tt.messages, "NATS deliveries")
			require.LessOrEqual(t, rt.Delivered, tt.messages*1.05, "NATS deliveries")
		})
	}
}

// The engine's own code, in shared/store/embedded/internal/engine, and what
// it calls (a B-tree) count as the storage engine, not as the component
// that called it; the load generator's handlers and transition callback,
// which the worker calls, and what they call, count as the handler and the
// load generator.
func TestClassifyEngineFrames(t *testing.T) {
	sample := func(funcs ...string) *profile.Sample {
		s := &profile.Sample{}
		for _, fn := range funcs {
			s.Location = append(s.Location, &profile.Location{Line: []profile.Line{{Function: &profile.Function{Name: fn}}}})
		}
		return s
	}
	tests := []struct {
		name  string
		funcs []string // innermost first
		want  string
	}{
		{"a B-tree under the engine", []string{
			"github.com/tidwall/btree.(*BTreeG[...]).Set",
			retriggerPrefix + "shared/store/embedded/internal/engine.(*Txn).swap",
			retriggerPrefix + "shared/store/embedded.(*collection).update",
			retriggerPrefix + "consumer.(*Worker).handle",
		}, PartEngine},
		{"the adapter", []string{
			"go.mongodb.org/mongo-driver/bson.Unmarshal",
			retriggerPrefix + "shared/store/embedded.toDoc",
			retriggerPrefix + "consumer.(*Worker).handle",
		}, PartEngine},
		{"lungo's matcher", []string{
			"github.com/256dpi/lungo/mongokit.Match",
			retriggerPrefix + "shared/store/embedded/internal/engine.(*coll).find",
		}, PartEngine},
		{"the tracker's lookup under the load's handler", []string{
			"runtime.mapaccess2",
			retriggerPrefix + "scripts/loadtest.(*tracker).lookup",
			retriggerPrefix + "scripts/loadtest.(*tracker).handle",
			retriggerPrefix + "consumer.(*Worker).run",
		}, PartHandler},
		{"the load's transition callback", []string{
			"runtime.mallocgc",
			"go.mongodb.org/mongo-driver/v2/bson.ObjectIDFromHex",
			retriggerPrefix + "scripts/loadtest.(*tracker).onTransition",
			retriggerPrefix + "consumer.(*Worker).transition",
		}, PartLoad},
		{"what the transition callback calls of the tracker", []string{
			"time.Now",
			retriggerPrefix + "scripts/loadtest.(*tracker).since",
			retriggerPrefix + "scripts/loadtest.(*tracker).terminated",
			retriggerPrefix + "scripts/loadtest.(*tracker).onTransition",
			retriggerPrefix + "consumer.(*Worker).transition",
		}, PartLoad},
		{"the flow modes' records under the load's handler", []string{
			"sync.(*Mutex).Lock",
			retriggerPrefix + "scripts/loadtest.(*flowTracker).call",
			retriggerPrefix + "scripts/loadtest.(*tracker).handle",
			retriggerPrefix + "consumer.(*Worker).call",
		}, PartHandler},
		{"the flood's handler", []string{
			"runtime.mallocgc",
			retriggerPrefix + "scripts/loadtest.(*flood).handle",
			retriggerPrefix + "consumer.(*Worker).call",
		}, PartHandler},
		{"the worker's own bson", []string{
			"go.mongodb.org/mongo-driver/v2/bson.Marshal",
			retriggerPrefix + "shared/eventstore.(*Store).Complete",
			retriggerPrefix + "consumer.(*Worker).handle",
		}, PartWorker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, classify(sample(tt.funcs...), "consumer"))
		})
	}
}
