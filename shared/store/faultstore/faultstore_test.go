package faultstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/store/faultstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, f faultstore.Fault) (*faultstore.DB, store.Collection) {
	t.Helper()
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	fdb := faultstore.Wrap(db, func(op faultstore.Op) faultstore.Fault {
		if op.Method == "UpdateOne" {
			return f
		}
		return faultstore.None
	})
	t.Cleanup(func() { require.NoError(t, fdb.Close(context.Background())) })
	c := fdb.Collection("c")
	require.NoError(t, c.InsertOne(t.Context(), bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}))
	return fdb, c
}

func n(t *testing.T, c store.Collection) int32 {
	t.Helper()
	doc, err := c.FindOne(t.Context(), bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	return doc.Lookup("n").Int32()
}

var inc = bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int32(1)}}}}

// Each fault answers the caller with a timeout; the table says whether
// the write was applied by then, and when.
func TestFaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		fault   faultstore.Fault
		applied int32
		late    bool // the caller waited for its deadline
	}{
		{faultstore.LostAnswer, 1, false},
		{faultstore.LateAnswer, 1, true},
		{faultstore.LateWrite, 1, true},
		{faultstore.Refused, 0, false},
	} {
		t.Run(tt.fault.String(), func(t *testing.T) {
			t.Parallel()
			db, c := open(t, tt.fault)
			ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
			defer cancel()
			if tt.late {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeout(ctx, 50*time.Millisecond)
				defer stop()
			}
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, inc, false)
			require.ErrorIs(t, err, faultstore.ErrInjected)
			require.ErrorIs(t, err, context.DeadlineExceeded, "a fault reads as a client timeout")
			require.Equal(t, tt.late, ctx.Err() != nil, "answered at the deadline")
			require.Equal(t, tt.applied, n(t, c))
			require.EqualValues(t, 1, db.Injected(tt.fault))
		})
	}
}

// Without a deadline a late answer would never come: it is lost at once.
func TestLateWithoutDeadline(t *testing.T) {
	t.Parallel()
	db, c := open(t, faultstore.LateWrite)
	_, err := c.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: 1}}, inc, false) // no deadline
	require.ErrorIs(t, err, faultstore.ErrInjected)
	require.EqualValues(t, 1, n(t, c))
	require.EqualValues(t, 1, db.Injected(faultstore.LostAnswer))
}

func TestRandomIsSeeded(t *testing.T) {
	t.Parallel()
	all := func(faultstore.Op) bool { return true }
	a := faultstore.Random(7, 0.5, all, faultstore.LostAnswer, faultstore.LateWrite)
	b := faultstore.Random(7, 0.5, all, faultstore.LostAnswer, faultstore.LateWrite)
	seen := map[faultstore.Fault]int{}
	for range 200 {
		fa, fb := a(faultstore.Op{Method: "UpdateOne"}), b(faultstore.Op{Method: "UpdateOne"})
		require.Equal(t, fa, fb)
		seen[fa]++
	}
	require.Len(t, seen, 3, "none, and both faults")
	match := faultstore.Methods("events", "UpdateOne")
	require.True(t, match(faultstore.Op{Collection: "events", Method: "UpdateOne"}))
	require.False(t, match(faultstore.Op{Collection: "errors", Method: "UpdateOne"}))
	require.False(t, match(faultstore.Op{Collection: "events", Method: "FindOne"}))
}

// A transaction takes its fault as a whole: what runs inside it runs as
// the engine runs it, and the caller hears the fault once the
// transaction is applied.
func TestTransaction(t *testing.T) {
	t.Parallel()
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(t, err)
	fdb := faultstore.Wrap(db, func(op faultstore.Op) faultstore.Fault {
		if op.Method == "Transact" || op.Method == "UpdateOne" {
			return faultstore.LostAnswer
		}
		return faultstore.None
	})
	t.Cleanup(func() { require.NoError(t, fdb.Close(context.Background())) })
	c := fdb.Collection("c")
	require.NoError(t, c.InsertOne(t.Context(), bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}))
	err = fdb.Transact(t.Context(), func(ctx context.Context) error {
		_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, inc, false)
		return err // no fault inside
	})
	require.ErrorIs(t, err, faultstore.ErrInjected)
	require.EqualValues(t, 1, n(t, c), "applied")
	require.EqualValues(t, 1, fdb.Injected(faultstore.LostAnswer), "one fault, the transaction's")
}
