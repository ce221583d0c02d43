package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// crashable is a producer with its own NATS connection and storage, so it
// can be killed alone, as kill -9 would: its connection and storage are cut
// and it writes nothing more.
type crashable struct {
	*producer.Producer
	crash func()
	done  chan error
}

func startCrashable(t *testing.T, b *bundle, owner string, ttl time.Duration) *crashable {
	t.Helper()
	nc, err := nats.Connect(b.NATS.ClientURL())
	require.NoError(t, err)
	cut := &atomic.Bool{}
	cfg := b.Options().Producer
	cfg.Leader.TTL, cfg.Leader.Owner = ttl, owner
	p, err := producer.New(cfg, cuttable{Database: b.DB, cut: cut}, nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c := &crashable{Producer: p, done: make(chan error, 1)}
	go func() { c.done <- p.Run(ctx) }()
	c.crash = func() { cut.Store(true); nc.Close() }
	t.Cleanup(func() {
		cancel()
		<-c.done
		nc.Close()
	})
	return c
}

// Two producers: one leads, the other stands by. Killed during a flood,
// the leader is replaced within the lease's TTL plus one renewal, no event
// is lost, and none runs twice.
func TestProducerFailover(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	b := setup(t, newRecorder(nil), nil)
	require.NoError(t, b.StopProducer()) // two producers of the test's own
	a := startCrashable(t, b, "a", ttl)
	waitFor(t, 10*time.Second, "a leading", a.Leader)
	s := startCrashable(t, b, "standby", ttl)
	require.False(t, s.Leader())

	var ids []bson.ObjectID
	for range 50 {
		ids = append(ids, b.insertJob(t))
	}
	waitFor(t, 10*time.Second, "some events published", func() bool { return a.Stats().Published.Load() >= 10 })
	a.crash()
	crashed := time.Now()
	waitFor(t, ttl+ttl/3+time.Second, "the standby leading", s.Leader)
	t.Logf("the standby took over %s after the crash (TTL %s, renewals every %s)", time.Since(crashed).Round(time.Millisecond), ttl, ttl/3)
	for range 50 {
		ids = append(ids, b.insertJob(t))
	}
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	for _, id := range ids {
		require.Len(t, b.rec.callTimes(id.Hex()), 1, "event %s ran once", id.Hex())
	}
}

// pausable is storage whose writes to the checkpoints collection wait
// while it is paused, as a process stopped by a VM pause or a long garbage
// collection would; they resume when it is released.
type pausable struct {
	store.Database
	gate *gate
}

type gate struct {
	mu     sync.Mutex
	closed chan struct{} // nil: open
}

func (g *gate) pause() { g.mu.Lock(); g.closed = make(chan struct{}); g.mu.Unlock() }
func (g *gate) release() {
	g.mu.Lock()
	close(g.closed)
	g.closed = nil
	g.mu.Unlock()
}
func (g *gate) wait() {
	g.mu.Lock()
	c := g.closed
	g.mu.Unlock()
	if c != nil {
		<-c
	}
}

func (p pausable) Collection(name string) store.Collection {
	c := p.Database.Collection(name)
	if name != "retrigger_checkpoints" {
		return c
	}
	return pausedColl{Collection: c, gate: p.gate}
}

type pausedColl struct {
	store.Collection
	gate *gate
}

func (c pausedColl) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	c.gate.wait()
	return c.Collection.UpdateOne(ctx, filter, update, upsert)
}

// A leader paused past its lease (a stopped VM, a long pause) finds, when
// it wakes, that another took over: its renewal and its checkpoint, both
// made under its old epoch, are fenced off, and it stands by. Two
// producers never both keep working.
func TestPausedLeaderIsFenced(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	b := setup(t, newRecorder(nil), func(o *Options) { o.Producer.Relay.CheckpointInterval = 50 * time.Millisecond })
	require.NoError(t, b.StopProducer())
	g := &gate{}
	cfg := b.Options().Producer
	cfg.Leader.TTL, cfg.Leader.Owner = ttl, "a"
	a, err := producer.New(cfg, pausable{Database: b.DB, gate: g}, b.Conn)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 10*time.Second, "a leading", a.Leader)
	first := b.insertJob(t)
	b.waitState(t, first, event.StateSuccess, 0)

	checkpoints := b.DB.Collection("retrigger_checkpoints")
	doc, err := checkpoints.FindOne(context.Background(), bson.D{{Key: "_id", Value: "producer:events"}})
	require.NoError(t, err)
	epochA := doc.Lookup("leader", "epoch").AsInt64()

	g.pause()
	s := startCrashable(t, b, "b", ttl)
	waitFor(t, 2*ttl, "b leading", s.Leader)
	next := b.insertJob(t)
	b.waitState(t, next, event.StateSuccess, 0)
	g.release() // a wakes: its renewal and checkpoint are of epoch 1
	waitFor(t, 10*time.Second, "a standing by", func() bool { return !a.Leader() })
	require.True(t, s.Leader())
	doc, err = checkpoints.FindOne(context.Background(), bson.D{{Key: "_id", Value: "producer:events"}})
	require.NoError(t, err)
	require.Equal(t, "b", doc.Lookup("leader", "owner").StringValue())
	require.Equal(t, epochA+1, doc.Lookup("leader", "epoch").AsInt64())
}
