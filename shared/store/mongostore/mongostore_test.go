package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
	"github.com/retrigger/retrigger/shared/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var databases atomic.Int64

// openFresh returns a function opening a fresh database on the server at
// RETRIGGER_TEST_MONGODB_URI, dropped when the test ends; it skips when
// the variable is not set.
func openFresh(t *testing.T) func(t *testing.T) store.Database {
	uri := os.Getenv("RETRIGGER_TEST_MONGODB_URI")
	if uri == "" {
		t.Skip("RETRIGGER_TEST_MONGODB_URI is not set: skipping the conformance suite against a real MongoDB replica set")
	}
	run := time.Now().UnixNano()
	return func(t *testing.T) store.Database {
		name := fmt.Sprintf("retrigger_test_%d_%d", run, databases.Add(1))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		db, err := mongostore.Open(ctx, uri, name)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, db.Close(ctx))
			dropDatabase(ctx, t, uri, name)
		})
		return db
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, openFresh(t), storetest.Features{}) // a replica set's oplog is too large to lose a token in a test
}

// The event store's behaviours, on the server.
func TestEventStoreConformance(t *testing.T) {
	eventstoretest.Run(t, openFresh(t), eventstoretest.Features{})
}

// dropDatabase drops with a client of its own: the suite may have closed
// the store's.
func dropDatabase(ctx context.Context, t *testing.T, uri, name string) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer func() { require.NoError(t, client.Disconnect(ctx)) }()
	require.NoError(t, client.Database(name).Drop(ctx))
}

func TestOpenFailsFast(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	// nothing listens on port 1
	db, err := mongostore.Open(ctx, "mongodb://alice:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=200", "retrigger")
	require.Error(t, err)
	require.Nil(t, db)
	assert.NotContains(t, err.Error(), "s3cret", "the error redacts the password")
}

// A password with a bad escape is reported without a piece of it: the
// driver's own error quotes "%zz".
func TestOpenRedactsParseErrors(t *testing.T) {
	for _, uri := range []string{
		"mongodb://alice:p%zzword@127.0.0.1:1/",
		"mongodb://127.0.0.1:1/?tlsCertificateKeyFilePassword=S3cr%zzet",
		"mongodb+srv://alice:p%zzword@cluster0.example.net/",
	} {
		db, err := mongostore.Open(t.Context(), uri, "retrigger")
		require.Error(t, err, uri)
		require.Nil(t, db)
		for _, secret := range []string{"%zz", "zzw", "S3cr", "alice"} {
			assert.NotContains(t, err.Error(), secret, uri)
		}
	}
}
