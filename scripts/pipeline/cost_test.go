package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store"
)

// counting wraps a database and counts operations per collection.
type counting struct {
	store.Database
	mu  sync.Mutex
	ops map[string]int
}

func (c *counting) Collection(name string) store.Collection {
	return &countingColl{Collection: c.Database.Collection(name), name: name, db: c}
}

func (c *counting) add(op string) {
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
}

func (c *counting) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = map[string]int{}
	return out
}

type countingColl struct {
	store.Collection
	name string
	db   *counting
}

func (c *countingColl) InsertOne(ctx context.Context, doc any) error {
	c.db.add(c.name + ".insert")
	return c.Collection.InsertOne(ctx, doc)
}

func (c *countingColl) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	c.db.add(c.name + ".findOne")
	return c.Collection.FindOne(ctx, filter)
}

func (c *countingColl) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	c.db.add(c.name + ".find")
	return c.Collection.Find(ctx, filter, opts)
}

func (c *countingColl) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	c.db.add(c.name + ".findOneAndUpdate")
	return c.Collection.FindOneAndUpdate(ctx, filter, update)
}

func (c *countingColl) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	c.db.add(c.name + ".replace")
	return c.Collection.ReplaceOne(ctx, filter, doc, upsert)
}

func (c *countingColl) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	c.db.add(c.name + ".update")
	return c.Collection.UpdateOne(ctx, filter, update, upsert)
}

func (c *countingColl) DeleteOne(ctx context.Context, filter any) (int64, error) {
	c.db.add(c.name + ".delete")
	return c.Collection.DeleteOne(ctx, filter)
}

func format(ops map[string]int) string {
	var parts []string
	for k, v := range ops {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// The database round trips and NATS publishes one event costs, per path.
// Checkpoint writes are batched (one per interval for any number of
// events) and sweeps are periodic, so neither is counted per event; nor
// are the scheduler's queries (events.find), one per wake-up for every
// event due then.
func TestCostPerEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int64
		wantOps  map[string]int
		wantPubs int64
	}{
		// A claim (find-and-modify: it reads the event and takes its
		// lease) and the transition, per run.
		{"success first time", 0, map[string]int{"events.findOneAndUpdate": 1, "events.update": 1}, 1},
		{"one retry, then success", 1, map[string]int{"events.findOneAndUpdate": 2, "events.update": 2}, 2},
		// The archiver reads the event, writes its copy into errors and
		// deletes it.
		{"exhausted and archived", 3, map[string]int{"events.findOneAndUpdate": 3, "events.update": 3, "events.findOne": 1, "errors.replace": 1, "events.delete": 1}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := &counting{ops: map[string]int{}}
			b := setup(t, newRecorder(func(_ string, call int) error {
				if int64(call) <= tt.failures {
					return errBoom
				}
				return nil
			}), func(o *Options) {
				o.Replicas = 1
				o.Producer.Sweeper.Interval = time.Hour
				o.Producer.Relay.CheckpointInterval = time.Hour
				// Flow control reads the shared state once at start, then
				// not while the event runs: what remains is the event's.
				o.Worker.Flow.Refresh = time.Minute
				o.WrapStore = func(s store.Database) store.Database { db.Database = s; return db }
			})
			waitFor(t, 5*time.Second, "the start-up sweep", func() bool { return b.Producer().Stats().Sweeps.Load() >= 1 })
			waitFor(t, 5*time.Second, "flow control's first look", func() bool {
				states, err := eventstore.New(b.DB, eventstore.Options{}).LoadFlows(context.Background(), []string{"job"})
				return err == nil && len(states) == 1
			})
			db.take() // start-up: indexes, checkpoint lookup, the first sweep and schedule
			id := b.insertJob(t)
			if tt.failures >= 3 {
				b.waitArchived(t, id)
			} else {
				b.waitState(t, id, event.StateSuccess, tt.failures)
			}
			w := b.Workers()[0].Stats()
			waitFor(t, 5*time.Second, "every publish acknowledged", func() bool {
				return b.Producer().Stats().Published.Load() == tt.wantPubs
			})
			ops := db.take()
			finds := ops["events.find"]
			delete(ops, "events.find")
			t.Logf("%s: storage %s, plus %d scheduler queries; NATS publishes %d, acks %d, handed back %d",
				tt.name, format(ops), finds, tt.wantPubs, w.Succeeded.Load()+w.Failed.Load()+w.Errored.Load(), w.Early.Load()+w.Busy.Load())
			require.Equal(t, tt.wantOps, ops)
			require.Zero(t, w.Early.Load()+w.Busy.Load()+w.Stale.Load(), "no message is handed back or dropped")
			require.LessOrEqual(t, int64(finds), tt.failures, "at most one scheduler query per retry")
		})
	}
}
