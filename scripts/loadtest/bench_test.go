package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// Run: go test -run '^$' -bench EngineCeiling -benchmem ./scripts/loadtest/

// BenchmarkEngineCeiling is the embedded engine's own rate for the
// pipeline's writes per event, in one goroutine: insert the event (the
// load generator's document), then write its success with the worker's
// claim and transition through the event store. Every second the
// producer's retention deletes the events that succeeded more than a
// second ago, as the load generator's defaults do, so the live set is the
// same. The engine is opened with the pipeline's options and the
// producer's indexes. One op is one event. The load generator's -ceiling
// mode measures the same pattern concurrently, in the same run as the
// pipeline.
func BenchmarkEngineCeiling(b *testing.B) {
	ctx := context.Background()
	o := Defaults()
	po := pipelineOptions(o, nil)
	p, err := pipeline.Open(ctx, po)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, p.Close()) })
	require.NoError(b, producerSetup(ctx, po.Producer, p))
	events := p.DB.Collection(eventstore.DefaultEvents)
	st := eventstore.New(p.DB, eventstore.Options{})
	filler := strings.Repeat("x", o.PayloadSize)
	retire := func(now time.Time) {
		_, err := st.Retire(ctx, now.Add(-o.Retention), 1<<20)
		require.NoError(b, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	lastSweep := began
	for i := 0; b.Loop(); i++ {
		oid := bson.NewObjectID()
		now := time.Now()
		require.NoError(b, events.InsertOne(ctx, bson.D{
			{Key: event.FieldID, Value: oid},
			{Key: event.FieldType, Value: o.Type},
			{Key: event.FieldPayload, Value: bson.D{{Key: "run", Value: "bench"}, {Key: "i", Value: i}, {Key: "data", Value: filler}}},
			{Key: event.FieldCreatedAt, Value: now},
		}))
		id := bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}
		c, err := st.ClaimEvent(ctx, eventstore.ClaimRequest{ID: id, Type: o.Type, Owner: "bench", Token: int64(i) + 1, Now: now, TTL: time.Minute})
		require.NoError(b, err)
		require.Equal(b, eventstore.Claimed, c.Outcome)
		done := time.Now()
		require.NoError(b, st.Complete(ctx, &c, eventstore.Transition{To: event.StateSuccess, At: done, Run: event.Attempt{At: now, Outcome: "success", Number: 1}}))
		if now.Sub(lastSweep) >= o.SweepInterval {
			retire(now)
			lastSweep = now
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "events/s")
}
