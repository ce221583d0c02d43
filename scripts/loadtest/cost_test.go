package loadtest

import (
	"context"
	"testing"
	"time"

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
