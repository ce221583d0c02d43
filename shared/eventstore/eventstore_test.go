package eventstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The event store's behaviours on the embedded engine, in memory and on a
// file. The mongodb backend runs the same suite (shared/store/mongostore)
// when RETRIGGER_TEST_MONGODB_URI is set.
func TestEmbedded(t *testing.T) {
	for _, file := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "file"}[file], func(t *testing.T) {
			t.Parallel()
			eventstoretest.Run(t, func(t *testing.T) store.Database {
				var o embedded.Options
				if file {
					o.Path = filepath.Join(t.TempDir(), "retrigger.db")
				}
				db, err := embedded.Open(context.Background(), o)
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, db.Close(context.Background())) })
				return db
			}, eventstoretest.Features{})
		})
	}
}
