package pipeline

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

// The collections of the hand-built trigger mechanism's example project,
// as its generator and function leave them, adopted as they are: database
// Retries, collections Events and Error, the counter named count, no type.
var seedStore = eventstore.Options{
	Events: "Events", Errors: "Error",
	Schema: event.Schema{AttemptsField: "count", DefaultType: "seed"},
}

// seedAttempts is the example's Attempts setting: an event is archived
// once count exceeds it, after Attempts+1 failed runs; retrigger's maximum
// is therefore Attempts+1.
const seedAttempts = 3

func TestAdoptHandBuiltCollections(t *testing.T) {
	t.Parallel()
	for _, layout := range []struct {
		name  string
		store eventstore.Options
	}{
		{"seed layout", seedStore},
		{"default layout", eventstore.Options{}},
	} {
		t.Run(layout.name, func(t *testing.T) { t.Parallel(); adopt(t, layout.store) })
	}
}

func adopt(t *testing.T, so eventstore.Options) {
	seed := so.Events == "Events"
	counter := so.Schema.Attempts()
	o := Options{Memory: true, Replicas: 2}
	o.Store.Database = "Retries"
	o.Producer.Store, o.Worker.Store, o.Archiver.Store = so, so, so
	o.Producer.Sweeper.Interval = 200 * time.Millisecond
	o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 10 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxAttempts: seedAttempts + 1}}
	var (
		mu       sync.Mutex
		rnd      = rand.New(rand.NewPCG(7, 8))
		runs     = map[string]int{}
		failures = map[string]int64{}
	)
	// The example's function: it succeeds when a random integer from 1 to
	// 10 is even.
	even := func(_ context.Context, ev *consumer.Event) error {
		mu.Lock()
		defer mu.Unlock()
		id := event.Key(ev.ID)
		runs[id]++
		if n := rnd.IntN(10) + 1; n%2 == 0 {
			return nil
		}
		failures[id]++
		return errBoom
	}
	typ := "seed"
	if !seed {
		typ = "job"
	}
	o.Worker.Handlers = map[string]consumer.Handler{typ: even}
	p, err := Open(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })

	events, errs := p.DB.Collection(so.WithDefaults().Events), p.DB.Collection(so.WithDefaults().Errors)
	doc := func(id bson.ObjectID, state, count int) bson.D {
		d := bson.D{{Key: "_id", Value: id}, {Key: "state", Value: float64(state)}, {Key: counter, Value: float64(count)}, {Key: "timestamp", Value: time.Now()}}
		if !seed {
			d = append(d, bson.E{Key: "type", Value: "job"})
		}
		return d
	}
	// The collection as the seed leaves it: new documents, failed ones
	// with count 1 to 3, a succeeded one, and an old archive.
	var pending []bson.ObjectID
	prior := map[string]int64{}
	for i := range 12 {
		id := bson.NewObjectID()
		state, count := 0, 0
		if i%3 > 0 {
			state, count = 2, 1+i%3
		}
		require.NoError(t, events.InsertOne(context.Background(), doc(id, state, count)))
		pending = append(pending, id)
		prior[event.Key(rawID(t, id))] = int64(count)
	}
	succeeded := bson.NewObjectID()
	require.NoError(t, events.InsertOne(context.Background(), doc(succeeded, 1, 2)))
	oldArchive := bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "id", Value: bson.NewObjectID()}, {Key: "state", Value: 3.0}, {Key: counter, Value: 4.0}}
	require.NoError(t, errs.InsertOne(context.Background(), oldArchive))
	before, err := errs.FindOne(context.Background(), bson.D{{Key: "_id", Value: oldArchive[0].Value}})
	require.NoError(t, err)

	require.NoError(t, p.StartProducer())
	for range 2 {
		require.NoError(t, p.StartWorker())
	}
	require.NoError(t, p.StartArchiver())

	var archived, succeededAfterFailing int
	for _, id := range pending {
		key := event.Key(rawID(t, id))
		waitFor(t, 15*time.Second, "event terminal", func() bool {
			if _, err := errs.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}); err == nil {
				return true
			}
			d, err := events.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
			return err == nil && d.Lookup("state").AsInt64() == 1
		})
		mu.Lock()
		want := prior[key] + failures[key]
		mu.Unlock()
		var got bson.Raw
		if got, err = errs.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}); err == nil {
			require.EqualValues(t, seedAttempts+1, got.Lookup(counter).AsInt64(), "archived once %s passed %d", counter, seedAttempts)
			archived++
			_, err := events.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
			require.ErrorIs(t, err, store.ErrNotFound)
		} else {
			got, err = events.FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
			require.NoError(t, err)
			if want > 0 {
				succeededAfterFailing++
			}
		}
		require.EqualValues(t, want, got.Lookup(counter).AsInt64(), "%s holds the failures", counter)
		if seed {
			_, err := got.LookupErr("type")
			require.Error(t, err, "no type is written")
		}
	}
	t.Logf("%d of %d archived, %d succeeded after failing", archived, len(pending), succeededAfterFailing)
	require.Positive(t, archived)
	require.Positive(t, succeededAfterFailing)
	mu.Lock()
	require.Zero(t, runs[event.Key(rawID(t, succeeded))], "the succeeded event is not run again")
	mu.Unlock()
	after, err := errs.FindOne(context.Background(), bson.D{{Key: "_id", Value: oldArchive[0].Value}})
	require.NoError(t, err)
	require.Equal(t, before, after, "the old archive is untouched")

	// The retrigger command lists the old archive beside the new ones,
	// and shows it, without failing on its shape.
	ops := admin.New(eventstore.New(p.Database(), so), nil, p.Options().Producer.Names)
	items, err := ops.List(context.Background(), admin.ListRequest{In: "errors"})
	require.NoError(t, err)
	require.Len(t, items, archived+1)
	oldID := oldArchive[0].Value.(bson.ObjectID).Hex()
	var listed bool
	for _, it := range items {
		if strings.Contains(it.IDText, oldID) {
			listed = true
			require.Equal(t, "error", it.State)
			require.EqualValues(t, seedAttempts+1, it.Attempts, "its %s, read as the attempts", counter)
		}
	}
	require.True(t, listed, "the old archive is listed: %+v", items)
	shown, err := ops.Show(context.Background(), oldID)
	require.NoError(t, err)
	require.Len(t, shown.Found, 1)
	require.Equal(t, "errors", shown.Found[0].In)
}
