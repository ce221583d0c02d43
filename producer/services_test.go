package producer

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// bundle is a producer's world: an embedded engine, an in-process
// nats-server, and a producer on them, not running.
type bundle struct {
	db     *embedded.DB
	events store.Collection
	nc     *nats.Conn
	js     jetstream.JetStream
	p      *Producer
	names  messaging.Names
}

func setup(t *testing.T, maxPayload int32, tune func(*Config)) *bundle {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir(), MaxPayload: maxPayload})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	cfg := Config{Sweeper: SweeperConfig{Interval: time.Hour}, Relay: RelayConfig{CheckpointInterval: 10 * time.Millisecond}}
	if tune != nil {
		tune(&cfg)
	}
	p, err := New(cfg, db, nc)
	require.NoError(t, err)
	require.NoError(t, p.Setup(context.Background()))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &bundle{db: db, events: db.Collection("events"), nc: nc, js: js, p: p, names: messaging.DefaultNames()}
}

// run runs the producer until the test ends, and waits until it leads.
func (b *bundle) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.p.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	select {
	case <-b.p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the producer did not start")
	}
}

func (b *bundle) insert(t *testing.T, fields ...bson.E) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, fields...))
	require.NoError(t, err)
	require.NoError(t, b.events.InsertOne(context.Background(), bson.Raw(raw)))
	return bson.Raw(raw).Lookup("_id")
}

// msgs reads every message of a stream, in order.
func (b *bundle) msgs(t *testing.T, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := b.js.Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// refs returns the keys of the events the messages refer to.
func refs(t *testing.T, msgs []*jetstream.RawStreamMsg) []string {
	var out []string
	for _, m := range msgs {
		r, err := messaging.ReadRef(m.Header)
		require.NoError(t, err)
		out = append(out, event.Key(r.ID))
	}
	return out
}

// What the publisher does with each kind of document.
func TestRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, 8<<10, nil)
	now := time.Now()
	lease := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "r"}, {Key: "token", Value: int64(1)}, {Key: "until", Value: now.Add(time.Minute)}}}}
	var scheduled []time.Time
	b.p.pub.schedule = func(due time.Time) { scheduled = append(scheduled, due) }
	tests := []struct {
		name    string
		doc     bson.D
		subject string // "" publishes nothing
		due     bool   // the scheduler is told
		reason  string // the Retrigger-Reason header contains
		stub    bool   // the body is a stub
		moved   bool   // moved into errors directly
	}{
		{"new", bson.D{{Key: "type", Value: "job"}}, "retrigger.events.job", false, "", false, false},
		{"failed, due", bson.D{{Key: "type", Value: "job"}, {Key: "state", Value: 2}, {Key: "nextAttemptAt", Value: now.Add(-time.Second)}}, "retrigger.events.job", false, "", false, false},
		{"failed, not due", bson.D{{Key: "type", Value: "job"}, {Key: "state", Value: 2}, {Key: "nextAttemptAt", Value: now.Add(time.Hour)}}, "", true, "", false, false},
		{"error", bson.D{{Key: "type", Value: "job"}, {Key: "state", Value: 3}}, "retrigger.dlq.job", false, "", false, false},
		{"success", bson.D{{Key: "type", Value: "job"}, {Key: "state", Value: 1}}, "", false, "", false, false},
		{"running", bson.D{{Key: "type", Value: "job"}, {Key: "retrigger", Value: lease}}, "", false, "", false, false},
		{"invalid", bson.D{{Key: "type", Value: "a.b"}}, "retrigger.dlq._invalid", false, `"a.b" contains '.'`, false, false},
		{"invalid, with a type", bson.D{{Key: "type", Value: "job"}, {Key: "attempts", Value: "x"}}, "retrigger.dlq.job", false, "attempts", false, false},
		{"large", bson.D{{Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{{Key: "x", Value: strings.Repeat("x", 10<<10)}}}}, "retrigger.events.job", false, "", true, false},
		{"id too large", bson.D{{Key: "_id", Value: strings.Repeat("i", 10<<10)}, {Key: "type", Value: "job"}}, "", false, "", false, true},
	}
	for _, tt := range tests {
		doc := tt.doc
		if doc[0].Key != "_id" {
			doc = append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, doc...)
		}
		raw, err := bson.Marshal(doc)
		require.NoError(t, err)
		scheduled = nil
		r := b.p.pub.route(raw, messaging.Stamp{Text: "c1.1"}, now)
		if tt.subject == "" {
			require.Nil(t, r.msg, tt.name)
		} else {
			require.NotNil(t, r.msg, tt.name)
			require.Equal(t, tt.subject, r.msg.Subject, tt.name)
			require.Contains(t, r.msg.Header.Get(messaging.HeaderReason), tt.reason, tt.name)
			require.Equal(t, tt.stub, strings.Contains(string(r.msg.Data), "too large to show"), tt.name)
		}
		require.Equal(t, tt.due, len(scheduled) == 1, tt.name)
		require.Equal(t, tt.moved, r.tooLarge != "", tt.name)
	}
}

// A new event the sweeper publishes is named by its creation time, which
// gives its place among its key's events (flow control); the relay names
// it so too when its first sweep may have published it, so that the two
// are one message; a woken event, or one without a creation time, is
// named as before.
func TestCreationStamps(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, nil)
	now := time.Now()
	created := time.Date(2026, 12, 2, 8, 0, 7, 250_000_000, time.UTC)
	route := func(change string, fields ...bson.E) string {
		raw, err := bson.Marshal(append(bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "job"}}, fields...))
		require.NoError(t, err)
		var st messaging.Stamp
		if change != "" {
			st.Change = bson.Timestamp{T: 5, I: 1} // "c5.1"
		}
		r := b.p.pub.route(raw, st, now)
		require.NotNil(t, r.msg)
		id := r.msg.Header.Get(nats.MsgIdHdr)
		return id[strings.LastIndexByte(id, '@')+1:]
	}
	at := bson.E{Key: "createdAt", Value: created}
	want := "o" + strconv.FormatInt(created.Unix()-1, 10) + ".250"
	require.Equal(t, want, route("", at), "swept")
	require.Equal(t, "c5.1", route("c5.1", at), "relayed, no first sweep")
	b.p.pub.sweptBefore.Store(created.Add(time.Second).UnixNano())
	require.Equal(t, want, route("c5.1", at), "relayed, created before the first sweep's bound")
	require.Equal(t, "c5.1", route("c5.1", bson.E{Key: "createdAt", Value: created.Add(2 * time.Second)}), "relayed, created after it")
	require.Equal(t, "v0.s0", route("", at, bson.E{Key: "retrigger", Value: bson.D{{Key: "wokenAt", Value: now}}}), "woken by its key")
	require.Equal(t, "v0.s0", route(""), "no creation time")
	require.Equal(t, "v0.s0", route("", at, bson.E{Key: "retrigger", Value: bson.D{{Key: "redrives", Value: int64(1)}}}), "redriven")
	require.Equal(t, "v0.s0", route("", bson.E{Key: "createdAt", Value: time.Date(1969, 7, 20, 0, 0, 0, 0, time.UTC)}), "a creation time no cluster time can stand for")
	require.Equal(t, int64(created.Unix()-1)<<32|250, messaging.ChangeOrder(nats.Header{nats.MsgIdHdr: []string{"x@" + want}}))
}

// The relay publishes each change that needs work, checkpoints after the
// acks, and a restart publishes nothing twice.
func TestRelayPublishesAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, nil)
	b.run(t)
	waitFor(t, "the first sweep", func() bool { return b.p.Stats().Sweeps.Load() == 1 })
	a := b.insert(t, bson.E{Key: "type", Value: "job"})
	b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 1})
	waitFor(t, "a checkpoint after the publish", func() bool {
		return b.p.Stats().Published.Load() == 1 && b.p.Stats().Checkpoint.Load() > 0
	})
	require.Equal(t, []string{event.Key(a)}, refs(t, b.msgs(t, b.names.EventsStream())))
	token, err := b.p.Store().LoadToken(context.Background(), "producer:events")
	require.NoError(t, err)
	require.NotNil(t, token)
}

// The scheduler publishes a failed event when it comes due, not before,
// and sooner when the relay tells it of an earlier time.
func TestSchedulerPublishesWhenDue(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, nil)
	b.run(t)
	due := time.Now().Add(300 * time.Millisecond)
	id := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 2}, bson.E{Key: "nextAttemptAt", Value: due})
	waitFor(t, "the retry published", func() bool { return b.p.Stats().Scheduled.Load() == 1 })
	require.False(t, time.Now().Before(due), "not before its due time")
	msgs := b.msgs(t, b.names.EventsStream())
	require.Equal(t, []string{event.Key(id)}, refs(t, msgs))
	require.False(t, msgs[0].Time.Before(due.Truncate(time.Millisecond)), "stored at or after its due time")
}

// The sweeper republishes what stalled, skips what a lease holds, and goes
// on past an event it cannot publish.
func TestSweeper(t *testing.T) {
	t.Parallel()
	b := setup(t, 8<<10, func(c *Config) { c.Sweeper.Stall = time.Minute })
	old := time.Now().Add(-time.Hour)
	lease := bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "r"}, {Key: "token", Value: int64(1)}, {Key: "until", Value: time.Now().Add(time.Minute)}}}}
	stalled := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "createdAt", Value: old})
	b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "createdAt", Value: time.Now()})
	b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "createdAt", Value: old}, bson.E{Key: "retrigger", Value: lease})
	huge := bson.D{{Key: "_id", Value: strings.Repeat("i", 10<<10)}, {Key: "type", Value: "job"}, {Key: "createdAt", Value: old}}
	require.NoError(t, b.events.InsertOne(context.Background(), huge))
	after := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "createdAt", Value: old})
	b.p.pub.schedule = func(time.Time) {}
	sw := newSweeper(b.p.cfg.Sweeper, b.p.log, b.p.store, b.p.pub, time.Now, false)
	n, err := sw.Sweep(context.Background(), time.Minute)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.ElementsMatch(t, []string{event.Key(stalled), event.Key(after)}, refs(t, b.msgs(t, b.names.EventsStream())))
	moved, err := b.db.Collection("errors").Count(context.Background(), nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, moved, "the event too large for any message went to errors")
}

// Retention deletes succeeded events past their time, in batches.
func TestRetention(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, func(c *Config) { c.Retention = RetentionConfig{After: time.Minute, Batch: 2} })
	for range 5 {
		b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 1}, bson.E{Key: "updatedAt", Value: time.Now().Add(-time.Hour)})
	}
	fresh := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "state", Value: 1}, bson.E{Key: "updatedAt", Value: time.Now()})
	r := &Retention{cfg: b.p.cfg.Retention, log: b.p.log, store: b.p.store, stats: &b.p.stats, now: time.Now}
	n, err := r.RetireOnce(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 5, n)
	left, err := b.events.Count(context.Background(), nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, left)
	_, err = b.p.Store().Find(context.Background(), fresh)
	require.NoError(t, err)
}

// Only the leader works: a second producer stands by until the first
// stops, then takes over at once.
func TestStandby(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.p.Run(ctx) }()
	waitFor(t, "the first leading", b.p.Leader)
	second, err := New(Config{Sweeper: SweeperConfig{Interval: time.Hour}, Leader: LeaderConfig{TTL: time.Second}}, b.db, b.nc)
	require.NoError(t, err)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- second.Run(ctx2) }()
	t.Cleanup(func() { cancel2(); require.NoError(t, <-done2) })
	lead, err := b.p.Store().Leader(context.Background(), "producer:events")
	require.NoError(t, err)
	require.False(t, second.Leader())
	cancel()
	require.NoError(t, <-done)
	waitFor(t, "the second leading", second.Leader)
	now, err := b.p.Store().Leader(context.Background(), "producer:events")
	require.NoError(t, err)
	require.Equal(t, lead.Epoch+1, now.Epoch)
}
