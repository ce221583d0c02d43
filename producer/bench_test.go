package producer

import (
	"context"
	"strings"
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
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Run: go test -run '^$' -bench 'Relay|JetStreamPublishAsync' -benchmem ./producer/
//
// Both benchmarks run against an in-process nats-server with JetStream on a
// file store, so their allocations per event include the server's: the
// producer's own share is the difference between the two.

// payloadSize is the filler of each event's payload, as the load
// generator's default.
const payloadSize = 256

// benchServer starts a nats-server with JetStream in b's temporary
// directory and connects to it.
func benchServer(b *testing.B) *nats.Conn {
	b.Helper()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: b.TempDir()})
	require.NoError(b, err)
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	return nc
}

// insertChanges builds n insert changes of new events, as the embedded
// change stream delivers them, each with its own resume token.
func insertChanges(b *testing.B, n int) []store.Change {
	b.Helper()
	filler := strings.Repeat("x", payloadSize)
	now := time.Now()
	out := make([]store.Change, n)
	for i := range out {
		id := bson.NewObjectID()
		doc, err := bson.Marshal(bson.D{
			{Key: event.FieldID, Value: id},
			{Key: event.FieldType, Value: "bench"},
			{Key: event.FieldPayload, Value: bson.D{{Key: "i", Value: i}, {Key: "data", Value: filler}}},
			{Key: event.FieldCreatedAt, Value: now},
		})
		require.NoError(b, err)
		token, err := bson.Marshal(bson.D{{Key: "ts", Value: bson.Timestamp{T: uint32(now.Unix()), I: uint32(i + 1)}}})
		require.NoError(b, err)
		out[i] = store.Change{Op: store.OpInsert, ID: bson.Raw(doc).Lookup(event.FieldID), Doc: doc, Token: token,
			ClusterTime: bson.Timestamp{T: uint32(now.Unix()), I: uint32(i + 1)}}
	}
	return out
}

// replayStream is a test double of the change stream only: it delivers
// pre-built changes from memory once start is closed, then blocks. It
// isolates the relay (route, publish, ack collection, checkpoints) from the
// storage engine's own cost of producing changes.
type replayStream struct {
	changes []store.Change
	start   <-chan struct{}
	next    int
}

func (s *replayStream) Next(ctx context.Context) (store.Change, error) {
	select {
	case <-s.start:
	case <-ctx.Done():
		return store.Change{}, ctx.Err()
	}
	if s.next < len(s.changes) {
		s.next++
		return s.changes[s.next-1], nil
	}
	<-ctx.Done()
	return store.Change{}, ctx.Err()
}

func (s *replayStream) TryNext(ctx context.Context) (store.Change, bool, error) {
	ch, err := s.Next(ctx)
	return ch, err == nil, err
}

func (s *replayStream) ResumeToken() bson.Raw { return nil }

func (s *replayStream) Close(context.Context) error { return nil }

// replayEvents is the events collection of an embedded engine whose Watch
// replays stream.
type replayEvents struct {
	store.Collection
	stream *replayStream
}

func (c replayEvents) Watch(context.Context, store.WatchOptions) (store.ChangeStream, error) {
	return c.stream, nil
}

// replayDB is an embedded engine whose events collection replays changes;
// the checkpoints collection is the engine's.
type replayDB struct {
	store.Database
	events replayEvents
}

func (d replayDB) Collection(name string) store.Collection {
	if name == "events" {
		return d.events
	}
	return d.Database.Collection(name)
}

// BenchmarkRelay measures the producer's relay from change event to
// acknowledged publish: the real relay (route: parse and extended-JSON
// encode; async publish; in-order ack collection; checkpoints every second)
// fed by a change stream that replays inserts from memory. One op is one
// event.
func BenchmarkRelay(b *testing.B) { benchRelay(b, nil) }

// BenchmarkRelayTraced is BenchmarkRelay with tracing on: every publish's
// span made (sampler 1.0), its context written into the message, and
// batched to an exporter that drops it.
func BenchmarkRelayTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	benchRelay(b, tracing.New(tp))
}

func benchRelay(b *testing.B, tr *tracing.Tracer) {
	nc := benchServer(b)
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close(ctx) })
	start := make(chan struct{})
	stream := &replayStream{changes: insertChanges(b, b.N), start: start}
	p, err := New(Config{Sweeper: SweeperConfig{Interval: time.Hour}, Tracing: tr}, replayDB{Database: db, events: replayEvents{Collection: db.Collection("events"), stream: stream}}, nc)
	require.NoError(b, err)

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		b.Fatalf("producer stopped while starting: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	close(start)
	waitCount(b, 5*time.Minute, "every change published", func() int64 { return p.Stats().Published.Load() }, int64(b.N))
	elapsed := time.Since(began)
	b.StopTimer()
	cancel()
	require.NoError(b, <-done)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	require.Zero(b, p.Stats().Duplicates.Load())
}

// BenchmarkJetStreamPublishAsync is the raw rate the relay is compared
// with: async publishes of the same messages (subject, Nats-Msg-Id, body)
// to the same streams with the same window of pending acks, built before
// the timer starts, then a wait for every ack.
func BenchmarkJetStreamPublishAsync(b *testing.B) {
	nc := benchServer(b)
	ctx := context.Background()
	cfg := Config{}.withDefaults()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.Relay.MaxInFlight+cfg.Sweeper.Batch+cfg.Scheduler.Batch+2))
	require.NoError(b, err)
	_, err = messaging.EnsureStreams(ctx, js, cfg.Names, cfg.Streams, true)
	require.NoError(b, err)
	msgs := make([]*nats.Msg, b.N)
	for i, ch := range insertChanges(b, b.N) {
		body, err := messaging.Body(ch.Doc)
		require.NoError(b, err)
		msgs[i] = messaging.NewMsg(cfg.Names.EventSubject("bench"), messaging.MsgID(ch.ID, messaging.ChangeStamp(ch.ClusterTime)), ch.ID, 0, body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("acks missing after 5m")
	}
	elapsed := time.Since(began)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	info, err := js.Stream(ctx, cfg.Names.EventsStream())
	require.NoError(b, err)
	require.EqualValues(b, b.N, info.CachedInfo().State.Msgs)
}

// waitCount waits until get returns want, polling, for at most timeout.
func waitCount(b *testing.B, timeout time.Duration, what string, get func() int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Microsecond)
	defer tick.Stop()
	for get() < want {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s: %d of %d", timeout, what, get(), want)
		}
		<-tick.C
	}
}
