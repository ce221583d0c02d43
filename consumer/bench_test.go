package consumer

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Run: go test -run '^$' -bench Worker -benchmem ./consumer/

// benchBatch is how many events are live in the engine at once: about what
// the load generator's retention keeps at full load.
const benchBatch = 1000

// BenchmarkWorker measures a worker replica's path from a message in the
// stream to the transition written: pull, decode, look the event up,
// run the handler (which does nothing), write the success with the
// conditional update, ack. One op is one event. The events are inserted
// and their messages published with the timer stopped, benchBatch at a
// time; a worker is started for each batch (inside the timer: one
// consumer-create request per batch) and stopped after it. Allocations
// include the in-process nats-server's.
func BenchmarkWorker(b *testing.B) {
	cfg := Config{
		Handlers:     map[string]Handler{"bench": func(context.Context, *Event) error { return nil }},
		DrainTimeout: 5 * time.Second,
	}
	benchBatches(b, "worker", func(env benchEnv, written *atomic.Int64) (func(context.Context) error, error) {
		cfg.OnTransition = func(Transition) { written.Add(1) }
		w, err := NewWorker(cfg, env.db, env.nc)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			err := w.Run(ctx)
			if n := w.Stats().Stale.Load(); err == nil && n > 0 {
				err = fmt.Errorf("%d events stale", n)
			}
			return err
		}, nil
	})
}

// BenchmarkWorkerTraced is BenchmarkWorker with tracing on: every run's
// span made (sampler 1.0) and batched to an exporter that drops it, so it
// measures the spans without their export.
func BenchmarkWorkerTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	cfg := Config{
		Handlers:     map[string]Handler{"bench": func(context.Context, *Event) error { return nil }},
		DrainTimeout: 5 * time.Second,
		Tracing:      tracing.New(tp),
	}
	benchBatches(b, "worker", func(env benchEnv, written *atomic.Int64) (func(context.Context) error, error) {
		cfg.OnTransition = func(Transition) { written.Add(1) }
		w, err := NewWorker(cfg, env.db, env.nc)
		if err != nil {
			return nil, err
		}
		return w.Run, nil
	})
}

// BenchmarkArchiver measures the archiver's path from a dead letter to the
// event moved into errors: pull, decode, read the event, write its copy
// into errors and delete it (one transaction on the engine), ack. One op
// is one event, set up as BenchmarkWorker's but in the error state, its
// message on the dead-letter subject.
func BenchmarkArchiver(b *testing.B) {
	cfg := ArchiverConfig{DrainTimeout: 5 * time.Second}
	benchBatches(b, "archiver", func(env benchEnv, written *atomic.Int64) (func(context.Context) error, error) {
		cfg.OnTransition = func(Transition) { written.Add(1) }
		a, err := NewArchiver(cfg, env.db, env.nc)
		if err != nil {
			return nil, err
		}
		return a.Run, nil
	})
}

type benchEnv struct {
	nc *nats.Conn
	db *embedded.DB
}

// benchBatches runs b.N events through the component start returns, in
// batches of benchBatch: for each, with the timer stopped, it inserts the
// events (state error for the archiver) and publishes their messages,
// then times the component from its start until it wrote every
// transition (written counts them).
func benchBatches(b *testing.B, component string, start func(benchEnv, *atomic.Int64) (func(context.Context) error, error)) {
	ctx := context.Background()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: b.TempDir()})
	require.NoError(b, err)
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	names := messaging.DefaultNames()
	_, err = messaging.EnsureStreams(ctx, js, names, messaging.StreamOptions{}, true)
	require.NoError(b, err)
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close(ctx) })
	events := db.Collection("events")

	var written atomic.Int64
	archiver := component == "archiver"
	filler := strings.Repeat("x", 256)
	b.ReportAllocs()
	b.ResetTimer()
	var elapsed time.Duration
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		b.StopTimer()
		_, err := events.DeleteMany(ctx, bson.D{})
		require.NoError(b, err)
		for i := range n {
			d := bson.D{
				{Key: event.FieldID, Value: bson.NewObjectID()},
				{Key: event.FieldType, Value: "bench"},
				{Key: event.FieldPayload, Value: bson.D{{Key: "i", Value: done + i}, {Key: "data", Value: filler}}},
			}
			subject, version := names.EventSubject("bench"), int64(0)
			if archiver {
				d = append(d, bson.E{Key: event.FieldState, Value: int32(event.StateError)}, bson.E{Key: event.FieldVersion, Value: int64(3)},
					bson.E{Key: "attempts", Value: int64(3)}, bson.E{Key: event.FieldReason, Value: string(event.ReasonExhausted)})
				subject, version = names.DLQSubject("bench"), 3
			}
			doc, err := bson.Marshal(d)
			require.NoError(b, err)
			require.NoError(b, events.InsertOne(ctx, bson.Raw(doc)))
			body, err := messaging.Body(doc)
			require.NoError(b, err)
			id := bson.Raw(doc).Lookup(event.FieldID)
			_, err = js.PublishMsgAsync(messaging.NewMsg(subject, messaging.MsgID(id, "bench"), id, version, body))
			require.NoError(b, err)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish acks missing after 1m")
		}
		run, err := start(benchEnv{nc: nc, db: db}, &written)
		require.NoError(b, err)
		wctx, cancel := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		want := written.Load() + int64(n)
		b.StartTimer()
		began := time.Now()
		go func() { stopped <- run(wctx) }()
		deadline := time.Now().Add(5 * time.Minute)
		tick := time.NewTicker(100 * time.Microsecond)
		for written.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d transitions written after 5m", written.Load()-want+int64(n), n)
			}
			<-tick.C
		}
		elapsed += time.Since(began)
		b.StopTimer()
		tick.Stop()
		cancel()
		require.NoError(b, <-stopped)
		done += n
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
