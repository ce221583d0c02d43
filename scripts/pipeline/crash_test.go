package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// errCrashed is what a crashed replica's storage answers: the process is
// gone, it writes nothing more.
var errCrashed = errors.New("the replica crashed")

// cuttable is storage that can be cut off, as a crash cuts a process off.
type cuttable struct {
	store.Database
	cut *atomic.Bool
}

func (c cuttable) Collection(name string) store.Collection {
	return cutColl{Collection: c.Database.Collection(name), cut: c.cut}
}

type cutColl struct {
	store.Collection
	cut *atomic.Bool
}

func (c cutColl) err() error {
	if c.cut.Load() {
		return errCrashed
	}
	return nil
}

func (c cutColl) FindOne(ctx context.Context, f any) (bson.Raw, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	return c.Collection.FindOne(ctx, f)
}

func (c cutColl) FindOneAndUpdate(ctx context.Context, f, u any) (bson.Raw, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	return c.Collection.FindOneAndUpdate(ctx, f, u)
}

func (c cutColl) UpdateOne(ctx context.Context, f, u any, upsert bool) (int64, error) {
	if err := c.err(); err != nil {
		return 0, err
	}
	return c.Collection.UpdateOne(ctx, f, u, upsert)
}

// doomed is a replica that runs one event's handler and then crashes in
// the middle of it: its NATS connection and its storage are cut, and the
// handler hangs until the test ends, as a process that is gone would.
type doomed struct {
	started chan struct{}
	crash   func()
}

func startDoomed(t *testing.T, b *bundle) *doomed { return startDoomedWith(t, b, time.Hour) }

// startDoomedWith starts a doomed replica whose runs are bounded by
// handlerTimeout: what it writes into leases of its own (a probe, a slot)
// lasts that long plus the ack wait.
func startDoomedWith(t *testing.T, b *bundle, handlerTimeout time.Duration) *doomed {
	t.Helper()
	nc, err := nats.Connect(b.NATS.ClientURL())
	require.NoError(t, err)
	d := &doomed{started: make(chan struct{})}
	release := make(chan struct{})
	var once sync.Once
	cfg := b.Options().Worker
	cfg.Handlers = map[string]consumer.Handler{"job": func(context.Context, *consumer.Event) error {
		once.Do(func() { close(d.started) })
		<-release
		return errBoom
	}}
	cfg.HandlerTimeout, cfg.DrainTimeout = handlerTimeout, time.Hour
	cut := &atomic.Bool{}
	w, err := consumer.NewWorker(cfg, cuttable{Database: b.DB, cut: cut}, nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	d.crash = func() { cut.Store(true); nc.Close() }
	t.Cleanup(func() {
		close(release)
		cancel()
		require.NoError(t, <-done)
	})
	return d
}

func (d *doomed) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-d.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the doomed replica never got the event")
	}
}

// A consumer that dies in the middle of a handler, without acking, loses
// nothing: the message is redelivered after the ack deadline, the run's
// lease expires, and another replica runs the attempt again (invariant 3:
// more than once only after a crash). The late return of the dead run
// changes nothing.
func TestConsumerCrashRedelivers(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	b := setup(t, rec, func(o *Options) { o.Replicas = -1; o.Worker.AckWait = 2 * time.Second })
	d := startDoomed(t, b)
	id := b.insertJob(t)
	d.waitStarted(t)
	d.crash()

	require.NoError(t, b.StartWorker())
	ev := b.waitState(t, id, event.StateSuccess, 0)
	require.EqualValues(t, 1, ev.Version)
	require.Len(t, rec.callTimes(id.Hex()), 1, "the surviving replica ran it once")
	require.Zero(t, ev.Crashes, "the outcome clears the crash count")
	require.Equal(t, "success", ev.History[len(ev.History)-1].Outcome)
}

// A handler that kills its process (os.Exit, an OOM kill, a crash in cgo)
// would be run forever; after MaxCrashes runs that never finished, the
// event is archived with the reason, without running it again.
func TestCrashingEventIsArchived(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	b := setup(t, rec, func(o *Options) {
		o.Replicas = -1
		o.Worker.AckWait = 2 * time.Second
		o.Worker.MaxCrashes = 2
	})
	id := b.insertJob(t)
	for range 2 {
		d := startDoomed(t, b)
		d.waitStarted(t)
		d.crash()
	}
	require.NoError(t, b.StartWorker())
	doc := b.waitArchived(t, id)
	require.Equal(t, "crashed", doc.Lookup("retrigger", "reason").StringValue())
	require.Contains(t, doc.Lookup("lastError", "message").StringValue(), "never finished 2 times")
	require.Empty(t, rec.callTimes(id.Hex()), "the surviving replica did not run it a third time")
}

// A producer that crashed before checkpointing resumes from an older token:
// it republishes changes that JetStream already holds, which are dropped as
// duplicates, so no handler runs twice (invariant 4).
func TestProducerCrashBeforeCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Producer.Relay.CheckpointInterval = 10 * time.Millisecond })
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
		o.Producer.Sweeper.Stall = 300 * time.Millisecond
		o.Producer.Sweeper.Interval = 100 * time.Millisecond
	})
	id := b.insertJob(t)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	stream, err := js.Stream(context.Background(), messaging.DefaultNames().EventsStream())
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the event published", func() bool {
		info, err := stream.Info(context.Background())
		require.NoError(t, err)
		return info.State.Msgs >= 1
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
		_, err := js.Consumer(context.Background(), names.EventsStream(), names.WorkersConsumer("job"))
		return err == nil
	})
	require.NoError(t, js.DeleteConsumer(context.Background(), names.EventsStream(), names.WorkersConsumer("job")))
	id := b.insertJob(t)
	// A pull request the server dropped shows as missing heartbeats, 5s.
	waitFor(t, 30*time.Second, "the event handled by the recovered replica", func() bool {
		ev := get(t, b.events(), id)
		return ev != nil && ev.State == event.StateSuccess
	})
}
