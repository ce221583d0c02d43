package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a handler that remembers every call and fails as told.
type recorder struct {
	mu       sync.Mutex
	calls    map[string][]time.Time
	failures map[string]int64
	fail     func(id string, call int) error // call counts from 1
}

func newRecorder(fail func(id string, call int) error) *recorder {
	return &recorder{calls: map[string][]time.Time{}, failures: map[string]int64{}, fail: fail}
}

func (r *recorder) handle(_ context.Context, ev *consumer.Event) error {
	id := event.IDString(ev.ID)
	r.mu.Lock()
	r.calls[id] = append(r.calls[id], time.Now())
	n := len(r.calls[id])
	r.mu.Unlock()
	var err error
	if r.fail != nil {
		err = r.fail(id, n)
	}
	if err != nil {
		r.mu.Lock()
		r.failures[id]++
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) callTimes(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls[id]...)
}

func (r *recorder) failuresOf(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures[id]
}

var errBoom = errors.New("boom")

func always(err error) func(string, int) error { return func(string, int) error { return err } }

// fastPolicy retries quickly so tests run in milliseconds.
func fastPolicy(maxAttempts int64) retry.Policies {
	return retry.Policies{Default: retry.Policy{InitialInterval: 20 * time.Millisecond, Multiplier: 2, MaxInterval: 100 * time.Millisecond, RandomizationFactor: -1, MaxAttempts: maxAttempts}}
}

type bundle struct {
	*Pipeline
	rec *recorder
}

// setup starts a pipeline whose handler for type "job" is rec; tune
// adjusts the options before the start.
func setup(t *testing.T, rec *recorder, tune func(*Options)) *bundle {
	t.Helper()
	o := Options{Memory: true, Replicas: 2}
	o.Worker.Handlers = map[string]consumer.Handler{"job": rec.handle}
	o.Worker.Policies = fastPolicy(3)
	o.Producer.Sweeper.Interval = 200 * time.Millisecond
	if tune != nil {
		tune(&o)
	}
	p, err := Start(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return &bundle{Pipeline: p, rec: rec}
}

func (b *bundle) events() store.Collection { return b.DB.Collection("events") }
func (b *bundle) errs() store.Collection   { return b.DB.Collection("errors") }

func (b *bundle) insert(t *testing.T, fields ...bson.E) bson.ObjectID {
	t.Helper()
	id := bson.NewObjectID()
	doc := append(bson.D{{Key: "_id", Value: id}}, fields...)
	require.NoError(t, b.events().InsertOne(context.Background(), doc))
	return id
}

func (b *bundle) insertJob(t *testing.T, extra ...bson.E) bson.ObjectID {
	return b.insert(t, append([]bson.E{{Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{{Key: "n", Value: 1}}}}, extra...)...)
}

// get returns the event, or nil when it is not in the collection.
func get(t *testing.T, c store.Collection, id bson.ObjectID) *event.Event {
	t.Helper()
	doc, err := c.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	ev, err := event.Parse(doc)
	require.NoError(t, err)
	return &ev
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func (b *bundle) waitState(t *testing.T, id bson.ObjectID, want event.State, attempts int64) *event.Event {
	t.Helper()
	var ev *event.Event
	waitFor(t, 10*time.Second, fmt.Sprintf("event %s in state %s with %d attempts", id.Hex(), want, attempts), func() bool {
		ev = get(t, b.events(), id)
		return ev != nil && ev.State == want && ev.Attempts == attempts
	})
	return ev
}

func (b *bundle) waitArchived(t *testing.T, id bson.ObjectID) bson.Raw {
	t.Helper()
	var doc bson.Raw
	waitFor(t, 10*time.Second, "event "+id.Hex()+" archived into errors", func() bool {
		var err error
		doc, err = b.errs().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
		if err != nil {
			return false
		}
		// Bad input stays unparseable until the archiver deletes it, so
		// only ask whether it is gone.
		_, err = b.events().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
		return errors.Is(err, store.ErrNotFound)
	})
	return doc
}

// The four use cases of the hand-built mechanism, with change streams and
// with the sweeper alone.
func TestUseCases(t *testing.T) {
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
			t.Run("insert then success", func(t *testing.T) {
				t.Parallel()
				b := setup(t, newRecorder(nil), mode.tune)
				id := b.insertJob(t)
				ev := b.waitState(t, id, event.StateSuccess, 0)
				require.EqualValues(t, 1, ev.Version)
				require.Len(t, b.rec.callTimes(id.Hex()), 1)
			})
			t.Run("insert then failure", func(t *testing.T) {
				t.Parallel()
				b := setup(t, newRecorder(always(errBoom)), func(o *Options) {
					if mode.tune != nil {
						mode.tune(o)
					}
					o.Worker.Policies.Default.InitialInterval = time.Hour // stays failed
					o.Worker.Policies.Default.MaxInterval = time.Hour
				})
				id := b.insertJob(t)
				ev := b.waitState(t, id, event.StateFailed, 1)
				require.Equal(t, "boom", ev.LastError.Message)
				require.True(t, ev.LastError.Retryable)
				require.WithinDuration(t, time.Now().Add(time.Hour), ev.NextAttemptAt, time.Minute)
			})
			t.Run("failure past the maximum", func(t *testing.T) {
				t.Parallel()
				b := setup(t, newRecorder(always(errBoom)), mode.tune)
				id := b.insertJob(t)
				doc := b.waitArchived(t, id)
				require.EqualValues(t, 3, doc.Lookup("attempts").AsInt64())
				require.EqualValues(t, event.StateError, doc.Lookup("state").AsInt64())
				require.Equal(t, "boom", doc.Lookup("lastError", "message").StringValue())
				_, err := doc.LookupErr("retrigger", "archivedAt")
				require.NoError(t, err)
				require.Equal(t, "exhausted", doc.Lookup("retrigger", "reason").StringValue())
				_, err = doc.LookupErr("nextAttemptAt")
				require.Error(t, err, "nothing is due any more")
				n, err := b.errs().Count(context.Background(), bson.D{})
				require.NoError(t, err)
				require.EqualValues(t, 1, n)
			})
			t.Run("failure then success", func(t *testing.T) {
				t.Parallel()
				b := setup(t, newRecorder(func(_ string, call int) error {
					if call == 1 {
						return errBoom
					}
					return nil
				}), mode.tune)
				id := b.insertJob(t)
				ev := b.waitState(t, id, event.StateSuccess, 1)
				require.Equal(t, "boom", ev.LastError.Message, "the last error stays for the record")
				require.True(t, ev.NextAttemptAt.IsZero(), "nothing is due any more")
			})
		})
	}
}

// Successive attempts are at least the policy's delays apart.
func TestRetryGapsFollowPolicy(t *testing.T) {
	t.Parallel()
	p := retry.Policy{InitialInterval: 100 * time.Millisecond, Multiplier: 2, MaxInterval: time.Second, RandomizationFactor: -1, MaxAttempts: 4}
	b := setup(t, newRecorder(always(errBoom)), func(o *Options) { o.Worker.Policies = retry.Policies{Default: p} })
	id := b.insertJob(t)
	b.waitArchived(t, id)
	calls := b.rec.callTimes(id.Hex())
	require.Len(t, calls, 4)
	for i := 1; i < len(calls); i++ {
		want := p.WithDefaults().Backoff(int64(i), nil)
		require.GreaterOrEqual(t, calls[i].Sub(calls[i-1]), want, "gap before attempt %d", i+1)
	}
}

// A policy override for one type and an event's own maxAttempts are honoured.
func TestMaxAttemptsOverrides(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(always(errBoom)), nil)
	id := b.insertJob(t, bson.E{Key: "maxAttempts", Value: 1})
	doc := b.waitArchived(t, id)
	require.EqualValues(t, 1, doc.Lookup("attempts").AsInt64())
}

// A permanent error skips the retries; a panic is a recorded failure.
func TestPermanentAndPanic(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["perm"] = func(context.Context, *consumer.Event) error {
			return consumer.Permanent(errors.New("invalid address"))
		}
		o.Worker.Handlers["panic"] = func(context.Context, *consumer.Event) error { panic("nil map") }
	})
	perm := b.insert(t, bson.E{Key: "type", Value: "perm"})
	doc := b.waitArchived(t, perm)
	require.EqualValues(t, 1, doc.Lookup("attempts").AsInt64())
	require.False(t, doc.Lookup("lastError", "retryable").Boolean())

	pan := b.insert(t, bson.E{Key: "type", Value: "panic"})
	doc = b.waitArchived(t, pan)
	require.EqualValues(t, 3, doc.Lookup("attempts").AsInt64())
	require.Contains(t, doc.Lookup("lastError", "message").StringValue(), "handler panicked: nil map")
}

// Bad input ends in errors with a reason naming the problem, and the
// pipeline goes on.
func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.NATSMaxPayload = 64 << 10; o.Producer.MaxEventSize = 32 << 10 })
	tests := []struct {
		name   string
		doc    bson.D
		reason string
	}{
		{"no type", bson.D{{Key: "payload", Value: bson.D{}}}, `invalid event field "type": is missing`},
		{"invalid type", bson.D{{Key: "type", Value: "send.email"}}, `invalid event field "type": "send.email" contains '.'`},
		{"wrong-typed field", bson.D{{Key: "type", Value: "job"}, {Key: "attempts", Value: "two"}}, `invalid event field "attempts": must be a number, not string`},
		{"larger than -max-event-size", bson.D{{Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{{Key: "blob", Value: strings.Repeat("x", 40<<10)}}}}, "more than the maximum of 32768 bytes"},
		{"bookkeeping field taken", bson.D{{Key: "type", Value: "job"}, {Key: "retrigger", Value: "mine"}}, `invalid event field "retrigger": is reserved`},
		{"NaN attempts", bson.D{{Key: "type", Value: "job"}, {Key: "attempts", Value: math.NaN()}}, `invalid event field "attempts": must be a whole number`},
		{"version at the end", bson.D{{Key: "type", Value: "job"}, {Key: "version", Value: int64(1 << 53)}}, `invalid event field "version"`},
	}
	ids := make([]bson.ObjectID, len(tests))
	for i, tt := range tests {
		ids[i] = b.insert(t, tt.doc...)
	}
	for i, tt := range tests {
		doc := b.waitArchived(t, ids[i])
		msg := doc.Lookup("lastError", "message").StringValue()
		require.Contains(t, msg, tt.reason, tt.name)
		require.False(t, doc.Lookup("lastError", "retryable").Boolean(), tt.name)
	}
	for i := range tests {
		doc := b.waitArchived(t, ids[i])
		require.Equal(t, "rejected", doc.Lookup("retrigger", "reason").StringValue())
	}
	good := b.insertJob(t)
	b.waitState(t, good, event.StateSuccess, 0)
}

// A document written by hand with explicit nulls for the counters takes the
// defaults, and its transitions still apply.
func TestExplicitNullsTakeDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(func(_ string, call int) error {
		if call == 1 {
			return errBoom
		}
		return nil
	}), nil)
	id := b.insertJob(t, bson.E{Key: "state", Value: nil}, bson.E{Key: "attempts", Value: nil}, bson.E{Key: "version", Value: nil}, bson.E{Key: "maxAttempts", Value: nil})
	ev := b.waitState(t, id, event.StateSuccess, 1)
	require.EqualValues(t, 2, ev.Version)
}
