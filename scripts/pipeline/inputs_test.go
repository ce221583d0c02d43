package pipeline

// The inputs and load shapes real users bring (issue "Correct under the
// inputs and load shapes real users bring"): any _id, poison documents,
// untrusted counters, long handlers, backlogs, long backoffs, application
// edits, replicas with different handlers. Each test fails on the pipeline
// of the first milestone.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

// rawID marshals v as an _id value.
func rawID(t *testing.T, v any) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
	require.NoError(t, err)
	return bson.Raw(raw).Lookup("_id")
}

// insertRaw inserts an event document whose _id is id.
func (b *bundle) insertRaw(t *testing.T, id bson.RawValue, fields ...bson.E) {
	t.Helper()
	require.NoError(t, b.events().InsertOne(context.Background(), append(bson.D{{Key: "_id", Value: id}}, fields...)))
}

// find returns the document with the given id, or nil.
func find(t *testing.T, c store.Collection, id bson.RawValue) bson.Raw {
	t.Helper()
	doc, err := c.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	return doc
}

// waitDone waits until the event is terminal: succeeded in events, or
// archived in errors and gone from events. It returns the terminal copy and
// whether it was archived.
func (b *bundle) waitDone(t *testing.T, id bson.RawValue) (bson.Raw, bool) {
	t.Helper()
	var (
		doc      bson.Raw
		archived bool
	)
	waitFor(t, 15*time.Second, "event "+event.IDString(id)+" terminal", func() bool {
		if d := find(t, b.errs(), id); d != nil && find(t, b.events(), id) == nil {
			doc, archived = d, true
			return true
		}
		d := find(t, b.events(), id)
		if d == nil {
			return false
		}
		ev, err := event.Parse(d)
		if err == nil && ev.State == event.StateSuccess {
			doc = d
			return true
		}
		return false
	})
	return doc, archived
}

// Any _id MongoDB accepts runs end to end and keeps its exact BSON type
// into errors: a UUID or a compound _id does not crash the engine, 7 and
// "7" (and an ObjectID and its hex) are two events, an int64 stays int64.
func TestAnyID(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["perm"] = func(context.Context, *consumer.Event) error {
			return consumer.Permanent(errors.New("archive me"))
		}
	})
	oid := bson.NewObjectID()
	ids := append(eventstoretest.SampleIDs(), oid, oid.Hex(), "7", int32(8), int64(9), 9.5)
	for i, v := range ids {
		id := rawID(t, v)
		typ := "job"
		if i%2 == 1 {
			typ = "perm"
		}
		b.insertRaw(t, id, bson.E{Key: "type", Value: typ})
	}
	for i, v := range ids {
		id := rawID(t, v)
		doc, archived := b.waitDone(t, id)
		require.Equal(t, i%2 == 1, archived, "%s", event.IDString(id))
		got := doc.Lookup("_id")
		require.Equal(t, id.Type, got.Type, "%s keeps its BSON type", event.IDString(id))
		require.Equal(t, id.Value, got.Value)
	}
	require.Zero(t, b.rec.failuresOf("7")+b.rec.failuresOf("8"))
}

// A document that cannot travel in a message never blocks the events
// after it: an _id too large for any message is moved into errors with the
// reason, one that fits only without the document travels as a reference
// and runs; both with change streams and with the sweeper alone.
func TestUnpublishableEvents(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		tune func(*Options)
	}{
		{"change streams", nil},
		{"sweeper only", func(o *Options) {
			o.Producer.DisableChangeStreams = true
			o.Producer.Sweeper.Interval = 50 * time.Millisecond
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, newRecorder(nil), func(o *Options) {
				o.NATSMaxPayload = 64 << 10
				if mode.tune != nil {
					mode.tune(o)
				}
			})
			huge := rawID(t, strings.Repeat("h", 70<<10))  // its header alone passes 64 KiB
			large := rawID(t, strings.Repeat("l", 40<<10)) // fits, the document does not
			b.insertRaw(t, huge, bson.E{Key: "type", Value: "job"})
			b.insertRaw(t, large, bson.E{Key: "type", Value: "job"}, bson.E{Key: "payload", Value: bson.D{{Key: "blob", Value: strings.Repeat("x", 30<<10)}}})
			after := b.insertJob(t)
			b.waitState(t, after, event.StateSuccess, 0)

			doc, archived := b.waitDone(t, huge)
			require.True(t, archived)
			require.Equal(t, "rejected", doc.Lookup("retrigger", "reason").StringValue())
			require.Contains(t, doc.Lookup("lastError", "message").StringValue(), "cannot travel in a NATS message")
			_, archived = b.waitDone(t, large)
			require.False(t, archived, "a large event travels as a reference and runs")
		})
	}
}

// An _id that fits in a document but not in a message's headers (the
// Retrigger-Id header carries it whole, and JetStream refuses headers
// above 64 KiB, error 10097, whatever max_payload allows) goes into errors
// as rejected, naming the cause, without stopping the relay: the events
// after it run at once. One just under the limit runs.
func TestIDTooLargeForAHeader(t *testing.T) {
	t.Parallel()
	// headerBytes is the size of the headers of a message of a string id
	// of n bytes, with a stamp of that many characters.
	headerBytes := func(n, stamp int) int {
		id := rawID(t, strings.Repeat("u", n))
		return messaging.HeaderBytes(messaging.NewMsg("retrigger.events.job", messaging.MsgID(id, strings.Repeat("9", stamp)), id, 0, nil))
	}
	under := messaging.MaxHeaderBytes*3/4 - 1024               // base64: 4 characters per 3 bytes
	for headerBytes(under+1, 22) <= messaging.MaxHeaderBytes { // 22: the longest change stamp
		under++
	}
	over := under
	for headerBytes(over, 5) <= messaging.MaxHeaderBytes { // 5: the shortest stamp, "v0.s0"
		over++
	}
	require.LessOrEqual(t, headerBytes(under, 22), messaging.MaxHeaderBytes)
	require.Greater(t, headerBytes(over, 5), messaging.MaxHeaderBytes)
	require.Less(t, over-under, 32, "just under and just over")
	for _, mode := range []struct {
		name string
		tune func(*Options)
	}{
		{"change streams", nil},
		{"sweeper only", func(o *Options) {
			o.Producer.DisableChangeStreams = true
			o.Producer.Sweeper.Interval = 50 * time.Millisecond
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, newRecorder(nil), mode.tune) // NATS's default max_payload, 1 MiB
			huge := rawID(t, strings.Repeat("h", 600_000))
			justOver := rawID(t, strings.Repeat("o", over))
			justUnder := rawID(t, strings.Repeat("u", under))
			for _, id := range []bson.RawValue{huge, justOver, justUnder} {
				b.insertRaw(t, id, bson.E{Key: "type", Value: "job"})
			}
			var after []bson.ObjectID
			for range 20 {
				after = append(after, b.insertJob(t))
			}
			for _, id := range after {
				b.waitState(t, id, event.StateSuccess, 0)
			}
			for _, id := range []bson.RawValue{huge, justOver} {
				doc, archived := b.waitDone(t, id)
				require.True(t, archived, "%d bytes", len(id.Value))
				require.Equal(t, "rejected", doc.Lookup("retrigger", "reason").StringValue())
				msg := doc.Lookup("lastError", "message").StringValue()
				require.Contains(t, msg, "headers are larger than JetStream's limit of 65535 bytes", msg)
			}
			doc, archived := b.waitDone(t, justUnder)
			require.False(t, archived, "an id just under the limit travels and runs: %s", doc.Lookup("lastError", "message"))
			require.Zero(t, b.Producer().Stats().Restarts.Load(), "the relay never restarted")
		})
	}
}

// Counters are untrusted input: a huge attempts count gives a decision in
// constant time, and the pipeline still stops promptly.
func TestHugeCounters(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(func(_ string, call int) error {
		if call == 1 {
			return errBoom
		}
		return nil
	}), nil)
	id := b.insertJob(t, bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "attempts", Value: int64(1e11)},
		bson.E{Key: "maxAttempts", Value: int64(2e11)}, bson.E{Key: "nextAttemptAt", Value: time.Now().Add(-time.Second)})
	ev := b.waitState(t, id, event.StateSuccess, 1e11+1)
	require.EqualValues(t, 2, ev.Version)
	over := b.insertJob(t, bson.E{Key: "attempts", Value: 1e300})
	doc := b.waitArchived(t, over)
	require.Contains(t, doc.Lookup("lastError", "message").StringValue(), `"attempts"`)
}

// tracker records each event's runs and how many ran at once.
type tracker struct {
	mu      sync.Mutex
	running map[string]int
	runs    map[string]int
	maxAt   int
}

func newTracker() *tracker { return &tracker{running: map[string]int{}, runs: map[string]int{}} }

// handler runs for work, counting.
func (tr *tracker) handler(work time.Duration) consumer.Handler {
	return func(ctx context.Context, ev *consumer.Event) error {
		id := event.Key(ev.ID)
		tr.mu.Lock()
		tr.running[id]++
		tr.runs[id]++
		tr.maxAt = max(tr.maxAt, tr.running[id])
		tr.mu.Unlock()
		defer func() {
			tr.mu.Lock()
			tr.running[id]--
			tr.mu.Unlock()
		}()
		select {
		case <-time.After(work): // the handler's work
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (tr *tracker) check(t *testing.T, events int) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Equal(t, 1, tr.maxAt, "no event ran twice at once")
	require.Len(t, tr.runs, events)
	for id, n := range tr.runs {
		require.Equal(t, 1, n, "event %s ran once", id)
	}
}

// A handler running longer than the sweeper's stall is not run again by
// another replica: the sweeper sees its lease.
func TestLongHandlerAndTheSweeper(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["job"] = tr.handler(1500 * time.Millisecond)
		o.Producer.Streams.DuplicateWindow = 200 * time.Millisecond
		o.Producer.Sweeper.Stall = 300 * time.Millisecond
		o.Producer.Sweeper.Interval = 100 * time.Millisecond
	})
	id := b.insertJob(t)
	b.waitState(t, id, event.StateSuccess, 0)
	require.Positive(t, b.Producer().Stats().Sweeps.Load())
	tr.check(t, 1)
}

// A message waiting for a free slot behind a handler slower than the ack
// wait is kept alive: it is not redelivered to another replica while it
// waits, and a copy redelivered anyway never runs alongside it.
func TestBacklogOfSlowHandlers(t *testing.T) {
	t.Parallel()
	tr := newTracker()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = -1
		o.Worker.Handlers["job"] = tr.handler(4 * time.Second)
		o.Worker.AckWait = 2 * time.Second
		o.Worker.Concurrency = 1
	})
	// The first replica takes both events: it runs one, the other waits
	// for its slot. An idle second replica then starts.
	require.NoError(t, b.StartWorker())
	first, second := b.insertJob(t), b.insertJob(t)
	waitFor(t, 5*time.Second, "the first event running", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.running[event.Key(rawID(t, first))] == 1
	})
	require.NoError(t, b.StartWorker())
	for _, id := range []bson.ObjectID{first, second} {
		waitFor(t, 30*time.Second, "the backlog done", func() bool {
			ev := get(t, b.events(), id)
			return ev != nil && ev.State == event.StateSuccess
		})
	}
	tr.check(t, 2)
}

// Waiting costs nothing: events in a long backoff hold no consumer slot
// and no ack-pending entry, so new events of any type, theirs included,
// start at once, however small MaxAckPending is.
func TestBackoffsHoldNoCapacity(t *testing.T) {
	t.Parallel()
	started := sync.Map{}
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 1
		o.Worker.Concurrency = 4
		o.Worker.MaxAckPending = 20
		o.Worker.Handlers["slow"] = func(_ context.Context, ev *consumer.Event) error {
			started.Store(event.Key(ev.ID), true)
			return errBoom
		}
		o.Worker.Policies.ByType = map[string]retry.Policy{"slow": {InitialInterval: time.Hour, MaxInterval: time.Hour}}
		// Every run of slow fails: its breaker would trip and hold the
		// rest, which is not what this test looks at.
		o.Worker.Flow.Breakers = map[string]flow.Breaker{"slow": {Off: true}}
	})
	var backoff []bson.ObjectID
	for range 25 {
		backoff = append(backoff, b.insert(t, bson.E{Key: "type", Value: "slow"}))
	}
	for _, id := range backoff {
		b.waitState(t, id, event.StateFailed, 1)
	}
	fresh := b.insert(t, bson.E{Key: "type", Value: "slow"})
	other := b.insertJob(t)
	b.waitState(t, other, event.StateSuccess, 0)
	b.waitState(t, fresh, event.StateFailed, 1)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	names := messaging.DefaultNames()
	c, err := js.Consumer(context.Background(), names.EventsStream(), names.WorkersConsumer("slow"))
	require.NoError(t, err)
	// The last acks reach the server after the transitions are written.
	waitFor(t, 5*time.Second, "no message waiting for a retry in NATS", func() bool {
		info, err := c.Info(context.Background())
		require.NoError(t, err)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

// Application edits act promptly, without bumping the version.
func TestApplicationEdits(t *testing.T) {
	t.Parallel()
	failOnce := func(_ string, call int) error {
		if call == 1 {
			return errBoom
		}
		return nil
	}
	hourly := func(o *Options) {
		o.Worker.Policies.Default.InitialInterval = time.Hour
		o.Worker.Policies.Default.MaxInterval = time.Hour
	}
	set := func(t *testing.T, b *bundle, id bson.ObjectID, fields ...bson.E) {
		t.Helper()
		_, err := b.events().UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D(fields)}}, false)
		require.NoError(t, err)
	}
	t.Run("reset a failed event to new", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newRecorder(failOnce), hourly)
		id := b.insertJob(t)
		b.waitState(t, id, event.StateFailed, 1)
		set(t, b, id, bson.E{Key: "state", Value: int32(0)})
		b.waitState(t, id, event.StateSuccess, 1)
	})
	t.Run("move the next attempt earlier", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newRecorder(failOnce), hourly)
		id := b.insertJob(t)
		b.waitState(t, id, event.StateFailed, 1)
		set(t, b, id, bson.E{Key: "nextAttemptAt", Value: time.Now()})
		b.waitState(t, id, event.StateSuccess, 1)
	})
	t.Run("move the next attempt later", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newRecorder(failOnce), func(o *Options) {
			o.Worker.Policies.Default.InitialInterval = 300 * time.Millisecond
			o.Worker.Policies.Default.MaxInterval = 300 * time.Millisecond
		})
		id := b.insertJob(t)
		b.waitState(t, id, event.StateFailed, 1)
		later := time.Now().Add(time.Second)
		set(t, b, id, bson.E{Key: "nextAttemptAt", Value: later})
		b.waitState(t, id, event.StateSuccess, 1)
		calls := b.rec.callTimes(id.Hex())
		require.Len(t, calls, 2)
		require.False(t, calls[1].Before(later.Truncate(time.Millisecond)), "the retry waited for the new due time")
	})
	t.Run("raise maxAttempts", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newRecorder(always(errBoom)), func(o *Options) {
			o.Worker.Policies.Default.InitialInterval = 200 * time.Millisecond
			o.Worker.Policies.Default.MaxInterval = 200 * time.Millisecond
		})
		id := b.insertJob(t, bson.E{Key: "maxAttempts", Value: 2})
		b.waitState(t, id, event.StateFailed, 1)
		set(t, b, id, bson.E{Key: "maxAttempts", Value: 4})
		doc := b.waitArchived(t, id)
		require.EqualValues(t, 4, doc.Lookup("attempts").AsInt64())
	})
	t.Run("set state 3", func(t *testing.T) {
		t.Parallel()
		b := setup(t, newRecorder(failOnce), hourly)
		id := b.insertJob(t)
		b.waitState(t, id, event.StateFailed, 1)
		set(t, b, id, bson.E{Key: "state", Value: int32(3)})
		doc := b.waitArchived(t, id)
		require.Equal(t, "application", doc.Lookup("retrigger", "reason").StringValue())
	})
	t.Run("re-insert an archived event", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		b := setup(t, newRecorder(nil), func(o *Options) {
			o.Worker.Handlers["once"] = func(context.Context, *consumer.Event) error {
				if calls.Add(1) == 1 {
					return consumer.Permanent(errBoom)
				}
				return nil
			}
		})
		doc := bson.D{{Key: "type", Value: "once"}, {Key: "payload", Value: bson.D{{Key: "n", Value: 1}}}}
		id := b.insert(t, doc...)
		b.waitArchived(t, id)
		require.NoError(t, b.events().InsertOne(context.Background(), append(bson.D{{Key: "_id", Value: id}}, doc...)))
		b.waitState(t, id, event.StateSuccess, 0)
	})
}

// A replica only receives events it can run: replicas with different
// handler sets burn no attempts, and events of a type no replica handles
// wait, visibly, until one starts.
func TestReplicasWithDifferentHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Replicas = -1 })
	for _, typ := range []string{"job", "other"} {
		cfg := b.Options().Worker
		cfg.Handlers = map[string]consumer.Handler{typ: b.rec.handle}
		require.NoError(t, b.StartWorkerWith(cfg))
	}
	var ids []bson.ObjectID
	for i := range 30 {
		typ := "job"
		if i%2 == 1 {
			typ = "other"
		}
		ids = append(ids, b.insert(t, bson.E{Key: "type", Value: typ}))
	}
	orphan := b.insert(t, bson.E{Key: "type", Value: "orphan"})
	for _, id := range ids {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the orphan type reported as unserved", func() bool {
		waiting, err := messaging.Unserved(context.Background(), js, messaging.DefaultNames())
		require.NoError(t, err)
		return waiting["orphan"] >= 1 // the first sweep may have published it too
	})
	ev := get(t, b.events(), orphan)
	require.Equal(t, event.StateNew, ev.State, "it waits, not archived")
	require.Zero(t, ev.Attempts)
	cfg := b.Options().Worker
	cfg.Handlers = map[string]consumer.Handler{"orphan": b.rec.handle}
	require.NoError(t, b.StartWorkerWith(cfg))
	b.waitState(t, orphan, event.StateSuccess, 0)
}

// A per-type policy that sets one knob takes the others from the default.
func TestPerTypePolicyTakesDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(always(errBoom)), func(o *Options) {
		o.Worker.Policies.ByType = map[string]retry.Policy{"job": {MaxAttempts: 2}}
	})
	id := b.insertJob(t)
	doc := b.waitArchived(t, id)
	require.EqualValues(t, 2, doc.Lookup("attempts").AsInt64())
}
