package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// reads counts the read operations sent to a database, by operation.
type reads struct {
	store.Database
	mu sync.Mutex
	n  map[string]int
}

func (r *reads) add(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[op]++
}

func (r *reads) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n = map[string]int{}
	return n
}

func (r *reads) Collection(name string) store.Collection {
	return readsColl{Collection: r.Database.Collection(name), r: r}
}

type readsColl struct {
	store.Collection
	r *reads
}

func (c readsColl) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	c.r.add("FindOne")
	return c.Collection.FindOne(ctx, filter)
}

func (c readsColl) Find(ctx context.Context, filter any, o store.FindOptions) ([]bson.Raw, error) {
	c.r.add("Find")
	return c.Collection.Find(ctx, filter, o)
}

func (c readsColl) Count(ctx context.Context, filter any) (int64, error) {
	c.r.add("Count")
	return c.Collection.Count(ctx, filter)
}

func (c readsColl) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	c.r.add("CountBy")
	return c.Collection.CountBy(ctx, filter, paths...)
}

func (c readsColl) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	c.r.add("CountByTime")
	return c.Collection.CountByTime(ctx, filter, path, iv)
}

// overviewOn serves the web view on db and returns its URL.
func overviewOn(tb testing.TB, db store.Database) string {
	tb.Helper()
	st := eventstore.New(db, eventstore.Options{})
	require.NoError(tb, st.EnsureIndexes(context.Background()))
	h, err := New(Config{Ops: admin.New(st, nil, messaging.DefaultNames())})
	require.NoError(tb, err)
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// archived opens an embedded engine whose errors collection holds n
// archived events, failed and archived over the last hour, of 5 types and
// 3 reasons, inserted in one write.
func archived(tb testing.TB, n int) store.Database {
	tb.Helper()
	now := time.Now().UTC()
	docs := make([]any, n)
	for i := range n {
		at := now.Add(-time.Duration(i) * time.Hour / time.Duration(n))
		docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("e-%07d", i)}, {Key: "type", Value: fmt.Sprintf("job%d", i%5)},
			{Key: "state", Value: int32(3)}, {Key: "attempts", Value: int64(3)}, {Key: "updatedAt", Value: at},
			{Key: "payload", Value: bson.D{{Key: "n", Value: i}}},
			{Key: "lastError", Value: bson.D{{Key: "message", Value: "boom"}, {Key: "at", Value: at}}},
			{Key: "retrigger", Value: bson.D{{Key: "reason", Value: []string{"exhausted", "permanent", "crashed"}[i%3]}, {Key: "archivedAt", Value: at}}}}
	}
	db, err := embedded.Open(context.Background(), embedded.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close(context.Background()) })
	require.NoError(tb, db.Collection(eventstore.DefaultErrors).InsertMany(context.Background(), docs))
	return db
}

// The overview costs a fixed number of reads, whatever the archive: its
// chart is four grouped counts (two per collection), not a count per
// minute and figure (240 before).
func TestOverviewCost(t *testing.T) {
	t.Parallel()
	r := &reads{Database: archived(t, 1_000), n: map[string]int{}}
	url := overviewOn(t, r)
	r.take()

	resp, err := http.Get(url + "/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := r.take()
	total := 0
	for _, n := range got {
		total += n
	}
	t.Logf("reads of one overview: %v", got)
	// the chart: two grouped counts per collection; the archives of the
	// last hour and day: one more
	require.Equal(t, 5, got["CountByTime"])
	require.Equal(t, 3, got["CountBy"], "events by type and state, archives by type and reason, parked events by type")
	require.LessOrEqual(t, total, 13, "reads of one overview (the flow states are one more find): %v", got)
}

// BenchmarkOverview renders the overview on the embedded engine with
// 100,000 archived events, all failed and archived within the chart's
// hour (the worst case: every document is in the window).
//
//	go test -run '^$' -bench Overview -benchtime 20x ./admin/ui/
func BenchmarkOverview(b *testing.B) {
	url := overviewOn(b, archived(b, 100_000))
	cpu := cpuTime(b)
	for b.Loop() {
		resp, err := http.Get(url + "/")
		require.NoError(b, err)
		require.NoError(b, resp.Body.Close())
		require.Equal(b, http.StatusOK, resp.StatusCode)
	}
	// The CPU the process spent, GC included: the wall time on a machine
	// shared with other work says more about the other work.
	b.ReportMetric(float64((cpuTime(b)-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
