package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The watcher on a real jongodb (RETRIGGER_TEST_JONGODB), with documents
// shaped as the stock commands write them (state int32, version and
// attempts int64: jongodb compares numbers by type): it tells the leases a
// kill left behind from those that expired with no kill, and prunes only
// a success that stayed the same.
func TestWatcherOnJongodb(t *testing.T) {
	bin := os.Getenv("RETRIGGER_TEST_JONGODB")
	if bin == "" {
		t.Skip("RETRIGGER_TEST_JONGODB is not set (scripts/wire/install.sh jongodb installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ps := newProcs()
	defer ps.killAll()
	uri, err := startJongodb(ctx, ps, bin, filepath.Join(t.TempDir(), "jongodb.log"))
	require.NoError(t, err)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database("chaos_test")
	events := db.Collection("events")

	now := time.Now()
	killedAt := now.Add(-2 * time.Second)
	killed := func(owner string) (time.Time, bool) { return killedAt, owner == "consumer-1.1" }
	const run = "r1"
	doc := func(state int32, version int64, lease bson.D) (bson.ObjectID, bson.D) {
		id := bson.NewObjectID()
		d := bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "job"}, {Key: "payload", Value: bson.D{{Key: "run", Value: run}}},
			{Key: "state", Value: state}, {Key: "version", Value: version}, {Key: "attempts", Value: int64(0)}}
		book := bson.D{{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: now}, {Key: "outcome", Value: "success"}, {Key: "attempt", Value: int64(1)}}}}}
		if lease != nil {
			book = bson.D{{Key: "lease", Value: lease}}
		}
		return id, append(d, bson.E{Key: "retrigger", Value: book})
	}
	lease := func(owner string, token int64, until time.Time) bson.D {
		return bson.D{{Key: "owner", Value: owner}, {Key: "token", Value: token}, {Key: "until", Value: until}}
	}
	success, d1 := doc(1, 2, nil)
	changing, d2 := doc(1, 2, nil)
	interrupted, d3 := doc(0, 1, lease("consumer-1.1", 11, now.Add(8*time.Second))) // live when its owner was killed
	expired, d4 := doc(0, 1, lease("consumer-2.1", 12, now.Add(-5*time.Second)))    // its owner was not killed
	_, d5 := doc(0, 1, lease("consumer-1.1", 13, killedAt.Add(-3*time.Second)))     // over before the kill
	other, d6 := doc(1, 2, nil)
	d6[2].Value = bson.D{{Key: "run", Value: "another run"}}
	for _, d := range []bson.D{d1, d2, d3, d4, d5, d6} {
		_, err := events.InsertOne(ctx, d)
		require.NoError(t, err)
	}

	w := newWatcher(db, run, policy{maxAttempts: 3, maxCrashes: 5, history: 20}, time.Millisecond, killed)
	snap, err := w.scan(ctx, true) // the successes settle
	require.NoError(t, err)
	require.Len(t, snap.events, 5)
	require.Equal(t, 2, snap.terminal)
	_, err = events.UpdateOne(ctx, bson.D{{Key: "_id", Value: changing}}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(3)}}}})
	require.NoError(t, err)
	time.Sleep(2 * time.Millisecond) // past -prune-after
	snap, err = w.scan(ctx, true)
	require.NoError(t, err)
	require.Equal(t, 2, snap.terminal, "the pruned success counts as terminal")

	orphans, pruned, exp := w.results()
	require.Equal(t, []bson.ObjectID{success}, keys(pruned), "only the success that stayed the same")
	require.Len(t, orphans, 1)
	require.Equal(t, orphan{Owner: "consumer-1.1", Token: 11, KilledAt: killedAt, Seen: orphans[interrupted][0].Seen}, orphans[interrupted][0])
	require.Equal(t, map[int64]expiredLease{12: {id: expired, owner: "consumer-2.1", until: exp[12].until}}, exp)
	for id, want := range map[bson.ObjectID]int64{success: 0, changing: 1, other: 1} {
		n, err := events.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
		require.Equal(t, want, n)
	}

	time.Sleep(2 * time.Millisecond)
	_, err = w.scan(ctx, true) // the changed one settled at its new version in the last scan
	require.NoError(t, err)
	_, pruned, _ = w.results()
	require.Len(t, pruned, 2)
	require.Equal(t, int64(3), pruned[changing].Version)
}

func keys[V any](m map[bson.ObjectID]V) []bson.ObjectID {
	out := make([]bson.ObjectID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
