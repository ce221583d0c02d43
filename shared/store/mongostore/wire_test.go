package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
	"github.com/retrigger/retrigger/shared/store/mongostore/wiretest"
	"github.com/retrigger/retrigger/shared/store/storetest"
)

// wireServer declares what each wire-compatible server lacks (docs/WIRE.md
// has the evidence for each).
type wireServer struct {
	features storetest.Features
	// noDropDatabase: the dropDatabase command is unknown. The server's
	// data goes with its process at the end of the test instead.
	noDropDatabase bool
	// deviations are the probes the server fails (TestWireProbes).
	deviations storetest.Deviations
}

var wireServers = map[wiretest.Kind]wireServer{
	wiretest.Jongodb: {
		features: storetest.Features{
			NoChangeStreams: true, // standalone only
			// findAndModify runs find, then update by _id
			NonAtomicFindOneAndUpdate: true,
		},
		noDropDatabase: true,
		deviations: storetest.Deviations{
			"NumericEqualityAcrossTypes": {Why: "equality compares Java objects: int32 2, int64 2 and 2.0 differ"},
			"DecimalEqualsOtherNumbers":  {Why: "equality compares Java objects: Decimal128 2 equals no other number"},
			"DecimalID":                  {Why: "Decimal128 sorts before the other numbers, as a type of its own"},
			"InMixedNumericAndNull":      {Why: "$in compares Java objects: int32 2 is not in [NumberLong(2)]"},
			"IncKeepsIntegerWidth":       {Why: "$inc of an int32 by an int64 stays int32"},
			"IDNumericEquality":          {Why: "_id 7 and NumberLong(7) are different keys"},
			"ConcurrentFindOneAndUpdate": {Why: "findAndModify finds, then updates by _id alone", Intermittent: true},
			"ConcurrentLease":            {Why: "findAndModify finds, then updates by _id alone", Intermittent: true},
			"DropDatabase":               {Why: "no dropDatabase command"},
			"CompareDocuments":           {Why: "$gte, $lte, $gt and $lt with a document operand match nothing"},
		},
	},
	wiretest.FerretDB: {
		features: storetest.Features{
			NoChangeStreams:           true,
			NonAtomicFindOneAndUpdate: true,
			NonAtomicUpdateOne:        true,
			NoRepeatedIndexes:         true, // the connection panics and closes
		},
		deviations: storetest.Deviations{
			"DecimalEqualsOtherNumbers":  {Why: "no Decimal128: the connection panics and closes"},
			"DecimalID":                  {Why: "no Decimal128: the connection panics and closes"},
			"IDNumericEquality":          {Why: "a Decimal128 in a filter closes the connection"},
			"EnsureSeveralIndexesTwice":  {Why: "createIndexes repeated with two indexes panics and closes the connection"},
			"ConcurrentFindOneAndUpdate": {Why: "conditional updates are not atomic", Intermittent: true},
			"ConcurrentUpdateOne":        {Why: "conditional updates are not atomic", Intermittent: true},
			"ConcurrentLease":            {Why: "conditional updates are not atomic", Intermittent: true},
			"ConcurrentUpsertByID":       {Why: "racing upserts of one _id fail with E11000 instead of being retried", Intermittent: true},
		},
	},
}

// TestWireConformance runs the storage conformance suite through the
// official driver against each wire-compatible server named by
// RETRIGGER_TEST_JONGODB or RETRIGGER_TEST_FERRETDB, minus what the server
// declares it lacks.
func TestWireConformance(t *testing.T) {
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		t.Logf("%s %s at %s, started in %s", s.Kind, s.Version, s.URI, s.Started)
		ws := wireServers[s.Kind]
		storetest.Run(t, openWire(s, ws), ws.features)
	})
}

// TestWireEventStoreConformance runs the event store's conformance suite
// (the behaviours the pipeline relies on) through the official driver
// against each configured wire-compatible server.
func TestWireEventStoreConformance(t *testing.T) {
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		ws := wireServers[s.Kind]
		eventstoretest.Run(t, openWire(s, ws), eventstoretest.Features{
			// A claim is a conditional findAndModify; neither server makes
			// it atomic across clients.
			NoConcurrentAtomicity: ws.features.NonAtomicFindOneAndUpdate,
			NumbersCompareByType:  s.Kind == wiretest.Jongodb,
			PartialTypeOperator:   s.Kind == wiretest.Jongodb,
			NoChangeStreams:       ws.features.NoChangeStreams,
			NoDocumentOrder:       s.Kind == wiretest.Jongodb,
		})
	})
}

// openWire opens a fresh database on s per test.
func openWire(s *wiretest.Server, ws wireServer) func(t *testing.T) store.Database {
	return func(t *testing.T) store.Database {
		name := fmt.Sprintf("retrigger_wire_%d", databases.Add(1))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		db, err := mongostore.Open(ctx, s.URI, name)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, db.Close(ctx))
			if !ws.noDropDatabase {
				dropDatabase(ctx, t, s.URI, name)
			}
		})
		return db
	}
}

// TestWireProbes runs the query and update shape probes (storetest.Probes)
// and a few driver-level ones over the wire, on each configured server,
// declaring where each deviates from MongoDB.
func TestWireProbes(t *testing.T) {
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		t.Logf("%s %s", s.Kind, s.Version)
		ws := wireServers[s.Kind]
		storetest.RunProbes(t, string(s.Kind), openWire(s, ws), ws.deviations, driverProbes(t, s)...)
	})
}

// driverProbes need the driver itself: error codes and commands the port
// does not expose.
func driverProbes(t *testing.T, s *wiretest.Server) []storetest.Probe {
	client := s.Client(t)
	var n atomic.Int64
	fresh := func() *mongo.Database {
		return client.Database(fmt.Sprintf("retrigger_driver_%d", n.Add(1)))
	}
	code := func(err error, want int32) error {
		got, ok := wiretest.ErrorCode(err)
		switch {
		case err == nil:
			return fmt.Errorf("no error, MongoDB: code %d", want)
		case !ok || got != want:
			return fmt.Errorf("error %v (code %d), MongoDB: code %d", err, got, want)
		}
		return nil
	}
	return []storetest.Probe{
		{Name: "DuplicateKeyCode11000", MongoDB: "a duplicate _id, a duplicate in a unique index and a conflicting upsert fail with code 11000 (DuplicateKey)",
			Run: func(ctx context.Context, _ store.Database) error {
				coll := fresh().Collection("things")
				if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{
					Keys: bson.D{{Key: "key", Value: 1}}, Options: options.Index().SetUnique(true).SetName("key_unique"),
				}); err != nil {
					return err
				}
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "key", Value: "k"}}); err != nil {
					return err
				}
				_, errID := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}})
				_, errKey := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "key", Value: "k"}})
				_, errUpsert := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "key", Value: "other"}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}, options.UpdateOne().SetUpsert(true))
				return errors.Join(code(errID, 11000), code(errKey, 11000), code(errUpsert, 11000))
			}},
		{Name: "DropDatabase", MongoDB: "dropDatabase removes the database and its collections",
			Run: func(ctx context.Context, _ store.Database) error {
				db := fresh()
				if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
					return err
				}
				if err := db.Drop(ctx); err != nil {
					return fmt.Errorf("dropDatabase: %w", err)
				}
				names, err := db.ListCollectionNames(ctx, bson.D{})
				if err != nil || len(names) != 0 {
					return fmt.Errorf("after dropDatabase: collections %v, %v", names, err)
				}
				return nil
			}},
		{Name: "FindOneAndUpdateReturnsAfter", MongoDB: "findAndModify with new: true (returnDocument after) returns the updated document; without it, the original",
			Run: func(ctx context.Context, _ store.Database) error {
				coll := fresh().Collection("events")
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "e"}, {Key: "n", Value: int32(1)}}); err != nil {
					return err
				}
				inc := bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int32(1)}}}}
				var before, after struct{ N int32 }
				if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "e"}}, inc).Decode(&before); err != nil {
					return err
				}
				if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "e"}}, inc,
					options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&after); err != nil {
					return err
				}
				if before.N != 1 || after.N != 3 {
					return fmt.Errorf("returned n %d (default) and %d (after), MongoDB: 1 and 3", before.N, after.N)
				}
				return nil
			}},
	}
}
