package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/scripts/roundtrips"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
)

// pathCost is what one event costs on its way, in round trips.
type pathCost struct {
	worker   map[string]int // commands the worker sends
	archiver map[string]int // commands the archiver sends
	// producer are the producer's commands for the event, besides the
	// scheduler's queries (events.find, one per wake-up for every event
	// due then: at most one per retry).
	producer map[string]int
	// changes are the change events the relay reads, by operation type;
	// lookups the documents MongoDB reads for them (updateLookup).
	changes map[string]int
	lookups int
	// NATS: messages stored (publishes that were not duplicates),
	// deliveries to the workers and the archiver, acks.
	stored, delivered, acked uint64
}

// The round trips one event costs, per path: the commands each component
// sends to the database, the change events the relay reads and the
// documents MongoDB would look up for them, and the NATS publishes,
// deliveries and acks. Checkpoint writes are batched (one per interval for
// any number of events), sweeps and leadership renewals are periodic, so
// none is counted per event; neither are the scheduler's queries (at most
// one per retry).
func TestCostPerEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int64
		renewals int // the run lasts until its lease was renewed this often
		want     pathCost
	}{
		// Per run, the worker's claim (find-and-modify: it reads the event
		// and takes its lease) and the transition. The relay reads the
		// insert (its document comes with it) and each failure, which it
		// hands to the scheduler, or the error, which it publishes to the
		// DLQ; the change stream's $match drops the claims and the success
		// before MongoDB reads the document (eventstore.ChangeMatch).
		{"success first time", 0, 0, pathCost{
			worker:  map[string]int{"events.findOneAndUpdate": 1, "events.update": 1},
			changes: map[string]int{"insert": 1}, lookups: 0,
			stored: 1, delivered: 1, acked: 1,
		}},
		{"one retry, then success", 1, 0, pathCost{
			worker:  map[string]int{"events.findOneAndUpdate": 2, "events.update": 2},
			changes: map[string]int{"insert": 1, "update": 1}, lookups: 1,
			stored: 2, delivered: 2, acked: 2,
		}},
		// The archiver reads the event, writes its copy into errors and
		// deletes it; the delete is no change the relay reads.
		{"exhausted and archived", 3, 0, pathCost{
			worker:   map[string]int{"events.findOneAndUpdate": 3, "events.update": 3},
			archiver: map[string]int{"events.findOne": 1, "errors.replace": 1, "events.delete": 1},
			changes:  map[string]int{"insert": 1, "update": 3}, lookups: 3,
			stored: 4, delivered: 4, acked: 4,
		}},
		// A run longer than half the ack wait renews its lease: one more
		// update from the worker, which the $match drops too.
		{"success after a lease renewal", 0, 1, pathCost{
			worker:  map[string]int{"events.findOneAndUpdate": 1, "events.update": 2},
			changes: map[string]int{"insert": 1}, lookups: 0,
			stored: 1, delivered: 1, acked: 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			counter := roundtrips.New()
			b := setup(t, newRecorder(func(_ string, call int) error {
				// A run that lasts until its lease was renewed: the worker's
				// updates before its transition are renewals.
				for deadline := time.Now().Add(10 * time.Second); counter.Read().Commands["worker"]["events.update"] < tt.renewals; {
					if time.Now().After(deadline) {
						return errors.New("no lease renewal within 10s")
					}
					time.Sleep(10 * time.Millisecond)
				}
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
				o.StoreFor = counter.Store
				if tt.renewals > 0 {
					o.Worker.AckWait = 4 * time.Second // renewals every 2s
				}
			})
			ctx := context.Background()
			js, err := jetstream.New(b.Conn)
			require.NoError(t, err)
			names := messaging.DefaultNames()
			readNATS := func() roundtrips.NATS {
				n, err := roundtrips.ReadNATS(ctx, js, names.EventsStream(), names.DLQStream())
				require.NoError(t, err)
				return n
			}
			waitFor(t, 5*time.Second, "the start-up sweep", func() bool { return b.Producer().Stats().Sweeps.Load() >= 1 })
			waitFor(t, 5*time.Second, "flow control's first look", func() bool {
				states, err := eventstore.New(b.DB, eventstore.Options{}).LoadFlows(ctx, []string{"job"})
				return err == nil && len(states) == 1
			})
			before := readNATS()
			counter.Take() // start-up: indexes, checkpoint lookup, the first sweep and schedule
			id := b.insertJob(t)
			if tt.failures >= 3 {
				b.waitArchived(t, id)
			} else {
				b.waitState(t, id, event.StateSuccess, tt.failures)
			}
			var nc roundtrips.NATSCounts
			waitFor(t, 5*time.Second, "every message stored, delivered and acknowledged", func() bool {
				nc = readNATS().Since(before)
				return nc.Stored >= tt.want.stored && nc.Pending == 0 && nc.Acked >= nc.Delivered && nc.Delivered >= tt.want.delivered
			})
			// The relay reads the event's last change (a success, an
			// archive) after the waits above may end. Changes come in
			// commit order, so once it read a marker inserted now it read
			// them all. The marker is leased: the relay publishes nothing
			// for it, and no worker claims it.
			require.NoError(t, b.events().InsertOne(ctx, bson.D{{Key: "_id", Value: "marker"}, {Key: "type", Value: "job"},
				{Key: "retrigger", Value: bson.D{{Key: "lease", Value: bson.D{{Key: "owner", Value: "test"}, {Key: "token", Value: int64(1)}, {Key: "until", Value: time.Now().Add(time.Hour)}}}}}}))
			waitFor(t, 5*time.Second, "the relay past the marker", func() bool { return counter.Read().Changes["insert"] == 2 })
			got := counter.Take()
			got.Changes["insert"]-- // the marker
			producer := map[string]int{}
			finds := 0
			for op, n := range got.Commands["producer"] {
				switch op {
				case "events.find":
					finds += n // the scheduler
				case eventstore.DefaultCheckpoints + ".update", eventstore.DefaultCheckpoints + ".findOneAndUpdate":
					// leadership renewals and checkpoints: periodic
				default:
					producer[op] = n
				}
			}
			w := b.Workers()[0].Stats()
			t.Logf("%s: worker %s | archiver %s | producer %s, %d scheduler queries | relay read %s, MongoDB lookups %d | NATS stored %d, delivered %d, acked %d",
				tt.name, roundtrips.Format(got.Commands["worker"]), roundtrips.Format(got.Commands["archiver"]),
				roundtrips.Format(producer), finds, roundtrips.Format(got.Changes), got.Lookups, nc.Stored, nc.Delivered, nc.Acked)
			if tt.failures == 0 && tt.renewals == 0 {
				require.LessOrEqual(t, got.Lookups, 1, "at most one document looked up for the relay per success")
				require.LessOrEqual(t, got.CommandsOf("worker"), 2, "at most two commands from the worker per success")
			}
			require.Equal(t, tt.want.worker, orEmpty(got.Commands["worker"]), "worker commands")
			require.Equal(t, orEmpty(tt.want.archiver), orEmpty(got.Commands["archiver"]), "archiver commands")
			require.Equal(t, orEmpty(tt.want.producer), producer, "producer commands")
			require.LessOrEqual(t, finds, int(tt.failures), "at most one scheduler query per retry")
			require.Equal(t, tt.want.changes, got.Changes, "change events the relay reads")
			require.Equal(t, tt.want.lookups, got.Lookups, "documents MongoDB looks up for the relay")
			require.Equal(t, [3]uint64{tt.want.stored, tt.want.delivered, tt.want.acked}, [3]uint64{nc.Stored, nc.Delivered, nc.Acked},
				"NATS messages stored, delivered, acknowledged")
			require.Zero(t, w.Early.Load()+w.Busy.Load()+w.Stale.Load(), "no message is handed back or dropped")
		})
	}
}

func orEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}
