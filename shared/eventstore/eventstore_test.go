package eventstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The event store's behaviours on the embedded engine. The mongodb backend
// runs the same suite (shared/store/mongostore) when
// RETRIGGER_TEST_MONGODB_URI is set.
func TestEmbedded(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) store.Database {
		db, err := embedded.Open(context.Background(), embedded.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close(context.Background())) })
		return db
	}, eventstoretest.Features{})
}
