package pipeline

import (
	"context"
	"hash/fnv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/faultstore"
)

// A slow or flaky database is not a crashing consumer (DESIGN.md,
// "Running an event"). The consumers' claims, takeovers, renewals and
// outcomes are applied by the real engine and then answered with a
// timeout, answered past the store timeout, or applied only after it: no
// process crashes, so no event may carry a crash (with MaxCrashes 1, one
// would archive it as crashed), every event ends terminal, and its
// attempts are the runs that failed.
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
			// quarter are archived as exhausted, the others succeed.
			rec := newRecorder(func(id string, call int) error {
				h := fnv.New32a()
				_, _ = h.Write([]byte(id))
				if call <= int(h.Sum32()%4) {
					return errBoom
				}
				return nil
			})
			var fdb *faultstore.DB
			b := setup(t, rec, func(o *Options) {
				o.Worker.AckWait = 3 * time.Second // a store timeout of 1s
				o.Worker.MaxCrashes = 1            // a single crash counted archives the event
				o.WrapStore = func(db store.Database) store.Database {
					fdb = faultstore.Wrap(db, faultstore.Random(11, 0.2,
						faultstore.Methods("events", "FindOneAndUpdate", "UpdateOne"), tt.faults...))
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
			var succeeded, archived int
			for _, id := range ids {
				ev := get(t, b.events(), id)
				if ev != nil {
					require.Equal(t, event.StateSuccess, ev.State)
					require.Zero(t, ev.Crashes, "event %s", id.Hex())
					require.Nil(t, ev.Lease, "event %s keeps a lease", id.Hex())
					require.Equal(t, b.rec.failuresOf(id.Hex()), ev.Attempts, "attempts of %s", id.Hex())
					succeeded++
					continue
				}
				doc, err := b.errs().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
				require.NoError(t, err, "event %s is nowhere", id.Hex())
				require.Equal(t, "exhausted", doc.Lookup("retrigger", "reason").StringValue(), "event %s: %s", id.Hex(), doc)
				_, err = doc.LookupErr("retrigger", "crashes")
				require.Error(t, err, "archived event %s carries a crash", id.Hex())
				require.Equal(t, b.rec.failuresOf(id.Hex()), doc.Lookup("attempts").AsInt64(), "attempts of archived %s", id.Hex())
				archived++
			}
			crashed, err := b.errs().Count(context.Background(), bson.D{{Key: "retrigger.reason", Value: "crashed"}})
			require.NoError(t, err)
			require.Zero(t, crashed)
			var retried, afterCrash int64
			for _, w := range b.Workers() {
				retried += w.Stats().Retried.Load()
				afterCrash += w.Stats().AfterCrash.Load()
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
