package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// Features describe what a backend can do beyond the common behaviour.
type Features struct {
	// HistoryLost opens a fresh, isolated database whose change history
	// keeps only a handful of changes and drops older ones within seconds,
	// for the test that a resume token no longer in the history is reported
	// as store.ErrHistoryLost. nil skips that test (a real replica set's
	// oplog cannot be overrun in a test).
	HistoryLost func(t *testing.T) store.Database

	// What the backend lacks. The zero value claims MongoDB's behaviour in
	// full; a backend declares each lack here, explicitly, and the suite
	// skips the tests that need it and checks that the lack is real, so a
	// declaration that no longer holds fails instead of hiding a test.

	// NoChangeStreams: Watch fails (a standalone server, or one that has no
	// change streams). The ChangeStream tests are skipped.
	NoChangeStreams bool
	// NonAtomicFindOneAndUpdate: FindOneAndUpdate finds, then updates by
	// _id, so concurrent conditional updates can all win.
	// ConcurrentConditionalUpdates is skipped (a race cannot be shown to
	// exist in a bounded test; storetest.Probes measures it).
	NonAtomicFindOneAndUpdate bool
	// NonAtomicUpdateOne: the same for UpdateOne, the shape of every state
	// transition. ConcurrentConditionalUpdateOne is skipped.
	NonAtomicUpdateOne bool
	// NoRepeatedIndexes: repeating EnsureIndexes with the same indexes
	// fails. EnsureIndexesTwice checks that it does, instead of that it
	// is a no-op.
	NoRepeatedIndexes bool
}

// lacks reports whether a test needs a feature the backend lacks, and why.
func (f Features) lacks(test string) (string, bool) {
	switch {
	case f.NoChangeStreams && (strings.HasPrefix(test, "ChangeStream") || test == "CloseTwice"):
		return "the backend has no change streams (Features.NoChangeStreams)", true
	case f.NonAtomicFindOneAndUpdate && test == "ConcurrentConditionalUpdates":
		return "the backend's FindOneAndUpdate is not atomic (Features.NonAtomicFindOneAndUpdate)", true
	case f.NonAtomicUpdateOne && test == "ConcurrentConditionalUpdateOne":
		return "the backend's UpdateOne is not atomic (Features.NonAtomicUpdateOne)", true
	}
	return "", false
}

// Run runs the suite. open returns a fresh database that no other test
// uses, and closes (and for a server, drops) it when t ends.
func Run(t *testing.T, open func(t *testing.T) store.Database, f Features) {
	tests := []struct {
		name string
		run  func(t *testing.T, db store.Database)
	}{
		{"InsertAndDuplicateKey", testInsertAndDuplicateKey},
		{"FindOne", testFindOne},
		{"FindOneAndUpdate", testFindOneAndUpdate},
		{"ConditionalUpdateOnMissingFields", testConditionalUpdateOnMissingFields},
		{"ConcurrentConditionalUpdates", testConcurrentConditionalUpdates},
		{"ConcurrentConditionalUpdateOne", testConcurrentConditionalUpdateOne},
		{"UpdateOne", testUpdateOne},
		{"Delete", testDelete},
		{"FindSortLimit", testFindSortLimit},
		{"Count", testCount},
		{"CountBy", testCountBy},
		{"CountByLiteralValue", testCountByLiteralValue},
		{"CountByTime", testCountByTime},
		{"EnsureIndexesTwice", func(t *testing.T, db store.Database) { testEnsureIndexesTwice(t, db, f.NoRepeatedIndexes) }},
		{"TypesAndDueQuery", testTypesAndDueQuery},
		{"ChangeStreamOrder", testChangeStreamOrder},
		{"ChangeStreamMatch", testChangeStreamMatch},
		{"ChangeStreamResume", testChangeStreamResume},
		{"ChangeStreamUpdateDescription", testChangeStreamUpdateDescription},
		{"ChangeStreamNextHonoursContext", testChangeStreamNextHonoursContext},
		{"CloseTwice", testCloseTwice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if why, ok := f.lacks(tt.name); ok {
				t.Skip(why)
			}
			t.Parallel()
			tt.run(t, open(t))
		})
	}
	if f.NoChangeStreams {
		t.Run("NoChangeStreams", func(t *testing.T) {
			t.Parallel()
			testNoChangeStreams(t, open(t))
		})
	}
	t.Run("ChangeStreamHistoryLost", func(t *testing.T) {
		if why, ok := f.lacks("ChangeStreamHistoryLost"); ok {
			t.Skip(why)
		}
		if f.HistoryLost == nil {
			t.Skip("the backend cannot open a database with a tiny change history (Features.HistoryLost is nil)")
		}
		t.Parallel()
		testChangeStreamHistoryLost(t, f.HistoryLost(t))
	})
}

// timeout bounds every wait of the suite.
const timeout = 15 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func insert(t *testing.T, ctx context.Context, coll store.Collection, docs ...any) {
	t.Helper()
	for _, doc := range docs {
		require.NoError(t, coll.InsertOne(ctx, doc))
	}
}

// lookup returns the value at key, which must exist.
func lookup(t *testing.T, doc bson.Raw, key ...string) bson.RawValue {
	t.Helper()
	v, err := doc.LookupErr(key...)
	require.NoError(t, err, "looking up %v in %s", key, doc)
	return v
}

func str(t *testing.T, doc bson.Raw, key ...string) string {
	t.Helper()
	s, ok := lookup(t, doc, key...).StringValueOK()
	require.True(t, ok, "%v is not a string in %s", key, doc)
	return s
}

func num(t *testing.T, doc bson.Raw, key ...string) int64 {
	t.Helper()
	n, ok := lookup(t, doc, key...).AsInt64OK()
	require.True(t, ok, "%v is not a number in %s", key, doc)
	return n
}

// ids returns the string _id of each document.
func ids(t *testing.T, docs []bson.Raw) []string {
	t.Helper()
	out := make([]string, len(docs))
	for i, doc := range docs {
		out[i] = str(t, doc, "_id")
	}
	return out
}
