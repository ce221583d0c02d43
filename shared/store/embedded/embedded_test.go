package embedded_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, opts embedded.Options) *embedded.DB {
	t.Helper()
	db, err := embedded.Open(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close(context.Background())) })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Database {
		return open(t, embedded.Options{})
	}, storetest.Features{
		HistoryLost: func(t *testing.T) store.Database {
			return open(t, embedded.Options{
				OplogMinSize: 1,
				OplogMaxSize: 5,
				OplogMinAge:  time.Nanosecond, // lungo counts whole seconds: entries go once their second is over
				OplogMaxAge:  time.Nanosecond,
			})
		},
	})
}

func TestFileKeepsDataAndHistoryAcrossRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "retrigger.lungo")

	db, err := embedded.Open(ctx, embedded.Options{Path: path})
	require.NoError(t, err)
	coll := db.Collection("events")
	cs, err := coll.Watch(ctx, store.WatchOptions{})
	require.NoError(t, err)
	require.NoError(t, coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "email"}}))
	change, err := cs.Next(ctx)
	require.NoError(t, err)
	require.NoError(t, cs.Close(ctx))
	require.NoError(t, db.Close(ctx))

	db = open(t, embedded.Options{Path: path})
	coll = db.Collection("events")
	doc, err := coll.FindOne(ctx, bson.M{"_id": "e1"})
	require.NoError(t, err)
	require.Equal(t, "email", doc.Lookup("type").StringValue())

	// a token saved before the restart resumes after it
	require.NoError(t, coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "e2"}}))
	cs, err = coll.Watch(ctx, store.WatchOptions{ResumeAfter: change.Token})
	require.NoError(t, err)
	defer cs.Close(ctx)
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	next, err := cs.Next(wait)
	require.NoError(t, err)
	require.Equal(t, "e2", next.ID.StringValue())
}

func TestOpenRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts embedded.Options
	}{
		{"negative min size", embedded.Options{OplogMinSize: -1}},
		{"max size below min size", embedded.Options{OplogMinSize: 10, OplogMaxSize: 5}},
		{"negative min age", embedded.Options{OplogMinAge: -time.Second}},
		{"max age beyond lungo's 21 days", embedded.Options{OplogMaxAge: 30 * 24 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := embedded.Open(t.Context(), tt.opts)
			require.Error(t, err)
			require.Nil(t, db)
		})
	}
}

func TestClosedDB(t *testing.T) {
	ctx := t.Context()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	coll := db.Collection("events")
	cs, err := coll.Watch(ctx, store.WatchOptions{})
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := cs.Next(ctx)
		done <- err
	}()
	require.NoError(t, db.Close(ctx))
	select {
	case err := <-done:
		require.Error(t, err, "Close ends a blocked Next")
	case <-time.After(5 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
	require.Error(t, coll.InsertOne(ctx, bson.M{"n": 1}))
	_, err = coll.FindOne(ctx, bson.M{})
	require.Error(t, err)
}
