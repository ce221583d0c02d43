package pipeline

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/faultstore"
)

// A slow or flaky database is not a crashing consumer (DESIGN.md,
// "Running an event"). A fifth of all writes (the consumers' claims,
// takeovers, renewals and outcomes among them, the archiver's moves, the
// producer's checkpoints) are applied by the real engine and then
// answered with a timeout, answered past the store timeout, or applied
// only after it. No process crashes, so no event may carry a crash (with
// MaxCrashes 1, one would archive it as crashed), every event ends
// terminal, and its attempts are the runs that failed.
func TestSlowDatabaseIsNotACrash(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		faults []faultstore.Fault
	}{
		{"lost answers", []faultstore.Fault{faultstore.LostAnswer}},
		{"answers past the store timeout", []faultstore.Fault{faultstore.LateAnswer, faultstore.LateWrite}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const total = 150
			// Each event fails its first 0 to 3 runs: with 3 attempts, a
			// quarter are archived as exhausted, the others succeed. The
			// failures are the events' own, so that the type's breaker
			// (flow control) stays out of a test about storage.
			rec := newRecorder(func(id string, call int) error {
				h := fnv.New32a()
				_, _ = h.Write([]byte(id))
				if call <= int(h.Sum32()%4) {
					return retry.EventFault(errBoom)
				}
				return nil
			})
			var fdb *faultstore.DB
			b := setup(t, rec, func(o *Options) {
				// Store timeouts of 1.5s, so that a late answer costs little.
				o.Worker.AckWait, o.Archiver.AckWait = 4500*time.Millisecond, 4500*time.Millisecond
				o.Worker.MaxCrashes = 1 // a single crash counted archives the event
				o.WrapStore = func(db store.Database) store.Database {
					fdb = faultstore.Wrap(db, faultstore.Random(11, 0.2, faultstore.Op.Write, tt.faults...))
					return fdb
				}
			})
			ids := make([]bson.ObjectID, total)
			for i := range ids {
				ids[i] = b.insertJob(t)
			}
			waitFor(t, 120*time.Second, "every event terminal", func() bool {
				n, err := b.events().Count(context.Background(), bson.D{{Key: "state", Value: bson.D{{Key: "$ne", Value: event.StateSuccess}}}})
				require.NoError(t, err)
				return n == 0
			})
			var (
				succeeded, archived int
				failedRuns          int64
			)
			for _, id := range ids {
				failedRuns += b.rec.failuresOf(id.Hex())
				ev := get(t, b.events(), id)
				if ev != nil {
					require.Equal(t, event.StateSuccess, ev.State)
					require.Zero(t, ev.Crashes, "event %s", id.Hex())
					require.Nil(t, ev.Lease, "event %s keeps a lease", id.Hex())
					require.Equal(t, b.rec.failuresOf(id.Hex()), ev.Attempts, "attempts of %s: %+v", id.Hex(), ev.History)
					succeeded++
					continue
				}
				doc, err := b.errs().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
				require.NoError(t, err, "event %s is nowhere", id.Hex())
				require.Equal(t, "exhausted", doc.Lookup("retrigger", "reason").StringValue(), "event %s: %s", id.Hex(), doc)
				_, err = doc.LookupErr("retrigger", "crashes")
				require.Error(t, err, "archived event %s carries a crash", id.Hex())
				require.Equal(t, b.rec.failuresOf(id.Hex()), doc.Lookup("attempts").AsInt64(), "attempts of archived %s: %s", id.Hex(), doc)
				archived++
			}
			crashed, err := b.errs().Count(context.Background(), bson.D{{Key: "retrigger.reason", Value: "crashed"}})
			require.NoError(t, err)
			require.Zero(t, crashed)
			var retried, afterCrash, succ, failed, errored int64
			counts := func() {
				retried, afterCrash, succ, failed, errored = 0, 0, 0, 0, 0
				for _, w := range b.Workers() {
					retried += w.Stats().Retried.Load()
					afterCrash += w.Stats().AfterCrash.Load()
					succ += w.Stats().Succeeded.Load()
					failed += w.Stats().Failed.Load()
					errored += w.Stats().Errored.Load()
				}
			}
			// The transitions counted are the ones written, once each,
			// however many tries each took: once the replica that wrote
			// one settled its last try.
			deadline := time.Now().Add(30 * time.Second)
			for counts(); succ != int64(succeeded) || errored != int64(archived) || failed != failedRuns-int64(archived); counts() {
				if time.Now().After(deadline) {
					t.Fatalf("transitions counted: %d successes, %d failures, %d errors; written: %d, %d, %d",
						succ, failed, errored, succeeded, failedRuns-int64(archived), archived)
				}
				time.Sleep(10 * time.Millisecond)
			}
			require.Zero(t, afterCrash, "claims of events carrying a crash")
			for _, f := range tt.faults {
				require.Positive(t, fdb.Injected(f), "no %s injected", f)
				t.Logf("%s: %d", f, fdb.Injected(f))
			}
			t.Logf("%d succeeded, %d archived as exhausted; %d messages handed back after giving a lease back", succeeded, archived, retried)
			require.Positive(t, archived)
		})
	}
}

// Keys on a database that loses the answers of a fifth of all writes,
// flow control's among them (slots taken and given back, parks, wakes): no
// key ever runs two at once, every event succeeds, and no slot is left
// held by a run that never started or that ended.
func TestKeysWithLostAnswers(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		running  = map[string]int{}
		overlaps int
	)
	handler := func(ctx context.Context, ev *consumer.Event) error {
		k := keyString(ev.Payload.Lookup("k"))
		mu.Lock()
		running[k]++
		if running[k] > 1 {
			overlaps++
		}
		mu.Unlock()
		select { // a run that takes a moment, so that runs of a key could overlap
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
		}
		mu.Lock()
		running[k]--
		mu.Unlock()
		return nil
	}
	var fdb *faultstore.DB
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 3
		o.Worker.AckWait = 3 * time.Second
		o.Worker.HandlerTimeout = 2 * time.Second
		o.Worker.Handlers = map[string]consumer.Handler{"job": handler}
		o.Worker.Flow = flow.Config{Keys: map[string]flow.Key{"job": {Path: "payload.k", Concurrency: 1}}}
		o.WrapStore = func(db store.Database) store.Database {
			fdb = faultstore.Wrap(db, faultstore.Random(5, 0.2, faultstore.Op.Write, faultstore.LostAnswer))
			return fdb
		}
	})
	var ids []bson.ObjectID
	for i := range 200 {
		ids = append(ids, b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "payload", Value: bson.D{{Key: "k", Value: fmt.Sprintf("k%d", i%5)}}}))
	}
	for _, id := range ids {
		b.waitStateWithin(t, 90*time.Second, id, event.StateSuccess)
	}
	mu.Lock()
	require.Zero(t, overlaps, "runs of one key at once")
	mu.Unlock()
	require.Positive(t, fdb.Injected(faultstore.LostAnswer))
	waitFor(t, 10*time.Second, "every key's slot given back", func() bool {
		n, err := b.DB.Collection("retrigger_flow").Count(context.Background(), bson.D{{Key: "kind", Value: "slot"}})
		require.NoError(t, err)
		return n == 0
	})
}
