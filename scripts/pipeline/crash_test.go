package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

// A consumer that dies in the middle of a handler, without acking, loses
// nothing: the message is redelivered after the ack deadline and another
// replica runs the attempt again (invariant 3: more than once only after a
// crash).
func TestConsumerCrashRedelivers(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	b := setup(t, rec, func(o *Options) { o.Replicas = -1; o.Worker.AckWait = 2 * time.Second })

	// The doomed replica has its own connection, so it can die alone. Its
	// handler hangs until the test ends: the process is gone as far as
	// NATS can tell, and only a late return is left, which must change
	// nothing.
	nc, err := nats.Connect(b.NATS.ClientURL())
	require.NoError(t, err)
	started, release := make(chan struct{}), make(chan struct{})
	cfg := b.Options().Worker
	cfg.Handlers = map[string]consumer.Handler{"job": func(context.Context, *consumer.Event) error {
		close(started)
		<-release
		return errBoom
	}}
	cfg.HandlerTimeout, cfg.DrainTimeout = time.Hour, time.Hour
	doomed, err := consumer.NewWorker(cfg, b.DB, nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- doomed.Run(ctx) }()
	t.Cleanup(func() {
		close(release)
		cancel()
		<-done
	})

	id := b.insertJob(t)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the doomed replica never got the event")
	}
	nc.Close() // the crash: no ack, no nak, the connection is gone

	require.NoError(t, b.StartWorker())
	ev := b.waitState(t, id, event.StateSuccess, 0)
	require.EqualValues(t, 1, ev.Version)
	require.Len(t, rec.callTimes(id.Hex()), 1, "the surviving replica ran it once")

	// The doomed handler's late failure finds the event moved on.
	close(release)
	cancel()
	require.NoError(t, <-done)
	release, done = make(chan struct{}), make(chan error, 1)
	done <- nil
	ev = get(t, b.events(), id)
	require.Equal(t, event.StateSuccess, ev.State)
	require.Zero(t, ev.Attempts)
}

// A producer that crashed before checkpointing resumes from an older token:
// it republishes changes that JetStream already holds, which are dropped as
// duplicates, so no handler runs twice (invariant 4).
func TestProducerCrashBeforeCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Producer.CheckpointInterval = 10 * time.Millisecond })
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)
	waitFor(t, 5*time.Second, "a checkpoint", func() bool { return b.Producer().Stats().Checkpoint.Load() > 0 })
	early := savedToken(t, b)

	var ids []bson.ObjectID
	for range 30 {
		ids = append(ids, b.insertJob(t))
	}
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	require.NoError(t, b.StopProducer())
	// What a crash leaves: the token saved before the last 30 changes.
	_, err := b.DB.Collection("retrigger_checkpoints").UpdateOne(context.Background(),
		bson.D{{Key: "_id", Value: "producer:events"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: early}}}}, false)
	require.NoError(t, err)

	require.NoError(t, b.StartProducer())
	waitFor(t, 10*time.Second, "the old changes republished as duplicates", func() bool {
		return b.Producer().Stats().Duplicates.Load() >= int64(len(ids))
	})
	for _, id := range ids {
		require.Len(t, b.rec.callTimes(id.Hex()), 1, "event %s ran once", id.Hex())
	}
}

// A message lost between the producer and the consumers (here: purged from
// the stream) is republished by the sweeper once the event stalled, and the
// event completes (invariant 5).
func TestSweeperRecoversLostMessage(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	b := setup(t, rec, func(o *Options) {
		o.Replicas = -1
		o.Producer.Streams.DuplicateWindow = 200 * time.Millisecond
		o.Producer.SweepStall = 300 * time.Millisecond
		o.Producer.SweepInterval = 100 * time.Millisecond
	})
	id := b.insertJob(t)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	stream, err := js.Stream(context.Background(), messaging.DefaultNames().EventsStream())
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the event published", func() bool {
		info, err := stream.Info(context.Background())
		require.NoError(t, err)
		return info.State.Msgs == 1
	})
	require.NoError(t, stream.Purge(context.Background())) // the loss
	require.NoError(t, b.StartWorker())
	b.waitState(t, id, event.StateSuccess, 0)
	// The sweeper counts its publish when the ack reaches it, which can be
	// after a worker already ran the event.
	waitFor(t, 5*time.Second, "the sweeper's republish counted", func() bool {
		return b.Producer().Stats().Swept.Load() >= 1
	})
}

// A replica keeps working when an operator deletes the durable consumer
// under it: it recreates the consumer and pulls again.
func TestWorkerSurvivesDeletedConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Replicas = 1 })
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	names := messaging.DefaultNames()
	waitFor(t, 5*time.Second, "the replica's consumer", func() bool {
		_, err := js.Consumer(context.Background(), names.EventsStream(), names.WorkersConsumer())
		return err == nil
	})
	require.NoError(t, js.DeleteConsumer(context.Background(), names.EventsStream(), names.WorkersConsumer()))
	id := b.insertJob(t)
	// A pull request the server dropped shows as missing heartbeats, 5s.
	waitFor(t, 30*time.Second, "the event handled by the recovered replica", func() bool {
		ev := get(t, b.events(), id)
		return ev != nil && ev.State == event.StateSuccess
	})
}
