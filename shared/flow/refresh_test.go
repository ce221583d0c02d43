package flow

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// silent is the real engine, except that its first reads of the flow
// collection never answer until their caller gives up: a server gone
// silent on a connection.
type silent struct {
	store.Database
	hangs atomic.Int64 // reads left to hang
}

func (s *silent) Collection(name string) store.Collection {
	c := s.Database.Collection(name)
	if name != eventstore.DefaultFlow {
		return c
	}
	return silentColl{Collection: c, s: s}
}

type silentColl struct {
	store.Collection
	s *silent
}

func (c silentColl) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	if c.s.hangs.Add(-1) >= 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return c.Collection.Find(ctx, filter, opts)
}

// A read of the shared state that never answers holds one refresh for
// StoreTimeout, not the replica for good: a pause made meanwhile reaches
// it at a later refresh.
func TestRefreshOutlivesAHungRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close(context.Background())) })
	hung := &silent{Database: db}
	hung.hangs.Store(2)
	c := New(eventstore.New(hung, eventstore.Options{}), Config{Refresh: 20 * time.Millisecond},
		Options{Types: []string{"partner"}, Owner: "r1", RunTTL: time.Minute, StoreTimeout: 100 * time.Millisecond, Log: zerolog.Nop()})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	require.NoError(t, Pause(ctx, eventstore.New(db, eventstore.Options{}), "partner", time.Time{}, "partner maintenance", "ada", time.Now()))
	g := c.types["partner"]
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		learned := g.shared.Pause != nil
		g.mu.Unlock()
		if learned {
			require.Negative(t, hung.hangs.Load(), "learned past the hung reads")
			break
		}
		require.False(t, time.Now().After(deadline), "the replica never learned of the pause")
		<-time.After(10 * time.Millisecond)
	}
}
