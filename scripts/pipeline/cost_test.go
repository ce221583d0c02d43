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
// events) and sweeps are periodic, so neither is counted per event.
func TestCostPerEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		failures  int
		wantOps   map[string]int
		wantPubs  int64
		wantEarly int64
	}{
		{"success first time", 0, map[string]int{"events.findOne": 1, "events.update": 1}, 1, 0},
		{"one retry, then success", 1, map[string]int{"events.findOne": 2, "events.update": 2}, 2, 1},
		{"exhausted and archived", 3, map[string]int{"events.findOne": 4, "events.update": 3, "errors.update": 1, "events.delete": 1}, 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := &counting{ops: map[string]int{}}
			b := setup(t, newRecorder(func(_ string, call int) error {
				if call <= tt.failures {
					return errBoom
				}
				return nil
			}), func(o *Options) {
				o.Replicas = 1
				o.Producer.SweepInterval = time.Hour
				o.Producer.CheckpointInterval = time.Hour
				o.WrapStore = func(s store.Database) store.Database { db.Database = s; return db }
			})
			db.take() // start-up: indexes, checkpoint lookup
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
			t.Logf("%s: storage %s; NATS publishes %d, nak'ed early %d, acks %d",
				tt.name, format(ops), tt.wantPubs, w.Early.Load(), w.Succeeded.Load()+w.Failed.Load()+w.Errored.Load())
			require.Equal(t, tt.wantOps, ops)
			require.Equal(t, tt.wantEarly, w.Early.Load())
		})
	}
}
