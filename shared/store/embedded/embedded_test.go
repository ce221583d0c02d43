package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/filelock"
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

// TestConformance runs the storage port's suite on the engine in memory
// and on a file (where every write goes through the journal).
func TestConformance(t *testing.T) {
	for _, file := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "file"}[file], func(t *testing.T) {
			t.Parallel()
			path := func(t *testing.T) string {
				if !file {
					return ""
				}
				return filepath.Join(t.TempDir(), "retrigger.db")
			}
			storetest.Run(t, func(t *testing.T) store.Database {
				return open(t, embedded.Options{Path: path(t)})
			}, storetest.Features{
				HistoryLost: func(t *testing.T) store.Database {
					return open(t, embedded.Options{
						Path:         path(t),
						OplogMinSize: 1,
						OplogMaxSize: 5,
						OplogMinAge:  time.Nanosecond, // entries go once their second is over
						OplogMaxAge:  time.Nanosecond,
					})
				},
			})
		})
	}
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

func TestSecondOpenOfAFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retrigger.db")
	db := open(t, embedded.Options{Path: path})
	require.True(t, db.Recovery().Created, "a new file: %s", db.Recovery())
	_, err := embedded.Open(t.Context(), embedded.Options{Path: path})
	require.ErrorIs(t, err, filelock.ErrLocked)
	require.Contains(t, err.Error(), fmt.Sprintf("in use by another process: pid %d", os.Getpid()))
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
