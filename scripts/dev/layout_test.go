package main

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

func TestLayoutFlags(t *testing.T) {
	t.Parallel()
	o, err := parse([]string{"-layout", "seed"}, func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, "Retries", o.database)
	require.Equal(t, "Events", o.store.Events)
	require.Equal(t, "Error", o.store.Errors)
	require.Equal(t, "count", o.store.Schema.AttemptsField)
	require.Equal(t, seedType, o.store.Schema.DefaultType)
	require.Equal(t, 2*time.Minute, o.interval)
	require.Equal(t, seedAttempts+1, o.maxAttempts, "count > Attempts archives after Attempts+1 runs")
	require.Contains(t, banner(o, "nats://x", ""), "4 runs (Attempts = 3), then Error")

	// The seed layout's type takes flow control's flags.
	o, err = parse([]string{"-layout", "seed", "-rate-limits", "seed=2/s"}, func(string) string { return "" })
	require.NoError(t, err)
	require.Contains(t, o.flow.Rates, seedType)

	// Flags given, and their variables, still override the layout.
	o, err = parse([]string{"-layout", "seed", "-interval", "5s"}, func(k string) string {
		return map[string]string{"RETRIGGER_MAX_ATTEMPTS": "2", "RETRIGGER_ERRORS_COLLECTION": "Archive"}[k]
	})
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, o.interval)
	require.Equal(t, 2, o.maxAttempts)
	require.Equal(t, "Archive", o.store.Errors)

	// The default layout is retrigger's own.
	o, err = parse(nil, func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, "retrigger", o.database)
	require.Empty(t, o.store.Schema.DefaultType)
	require.Contains(t, banner(o, "nats://x", ""), `a "demo" event every 2s`)

	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-layout", "legacy"}, `invalid -layout (RETRIGGER_LAYOUT): must be default or seed, got "legacy"`},
		{[]string{"-layout", "seed", "-failure-rate", "0.2"}, "invalid -failure-rate (RETRIGGER_FAILURE_RATE): the seed layout runs the example's function"},
		{[]string{"-attempts-field", "state"}, "invalid -attempts-field (RETRIGGER_ATTEMPTS_FIELD)"},
		{[]string{"-layout", "seed", "-errors-collection", "Events"}, "invalid -errors-collection"},
		{[]string{"-mongodb-database", "a.b"}, "invalid -mongodb-database (RETRIGGER_MONGODB_DATABASE)"},
	} {
		_, err := parse(tt.args, func(string) string { return "" })
		require.ErrorContains(t, err, tt.wantErr, tt.args)
	}
}

// The seed layout reproduces the example project: its generator's
// documents in Retries.Events, the even-number function, archives into
// Error after Attempts+1 = 4 runs with count holding the failures, and a
// live summary like the default layout's.
func TestSeedLayoutRunsTheExample(t *testing.T) {
	t.Parallel()
	o, err := parse([]string{"-layout", "seed", "-memory", "-data-dir", t.TempDir(), "-nats-port", strconv.Itoa(freePort(t)),
		"-interval", "10ms", "-retry-initial", "5ms", "-latency", "0", "-replicas", "1", "-summary-every", "20ms"}, func(string) string { return "" })
	require.NoError(t, err)
	feed := newFeed(5)
	p, err := pipeline.Start(context.Background(), o.pipeline(feed, zerolog.Nop()))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	events, errs := p.DB.Collection("Events"), p.DB.Collection("Error")

	ctx, stop := context.WithCancel(context.Background())
	var out syncBuffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		generate(ctx, events, o.interval, o.newEvent, noop.NewTracerProvider().Tracer(""), zerolog.Nop())
	}()
	go func() { defer wg.Done(); summarize(ctx, &out, p.DB, feed, o) }()
	count := func(c store.Collection, filter bson.D) int {
		docs, err := c.Find(context.Background(), filter, store.FindOptions{})
		require.NoError(t, err)
		return len(docs)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(errs, bson.D{}) < 2 || count(events, bson.D{{Key: "state", Value: 1}}) < 2 {
		require.True(t, time.Now().Before(deadline), "no archives and successes within 30s")
		<-time.After(10 * time.Millisecond)
	}
	stop()
	wg.Wait()

	archived, err := errs.Find(context.Background(), bson.D{}, store.FindOptions{})
	require.NoError(t, err)
	for _, a := range archived {
		require.Equal(t, bson.TypeObjectID, a.Lookup("_id").Type, "the generated document's own _id")
		require.EqualValues(t, seedAttempts+1, a.Lookup("count").AsInt64(), "count holds the 4 failures")
		require.Equal(t, string(event.ReasonExhausted), a.Lookup("retrigger", "reason").StringValue())
		_, err := a.LookupErr("type")
		require.Error(t, err, "no type is written")
	}
	succeeded, err := events.Find(context.Background(), bson.D{{Key: "state", Value: 1}}, store.FindOptions{})
	require.NoError(t, err)
	for _, d := range succeeded {
		require.Less(t, d.Lookup("count").AsInt64(), int64(seedAttempts+1))
		require.Equal(t, bson.TypeDateTime, d.Lookup("timestamp").Type, "the generator's document, as the example writes it")
	}
	require.Regexp(t, `new \d+ · retrying \d+ · success \d+ · error \d+ │ archived in Error \d+ │`, out.String())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The banner says how often the demo inserts an event in plain words, and
// that it inserts none with -interval 0.
func TestBannerSaysHowOften(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-interval", "0"}, `demo: no "demo" events inserted (-interval 0): insert your own;`},
		{[]string{"-layout", "seed"}, "demo: {state: 0, count: 0, timestamp} every 2m;"},
		{[]string{"-layout", "seed", "-interval", "0"}, "demo: no documents inserted (-interval 0)"},
		{[]string{"-interval", "90s"}, `demo: a "demo" event every 1m30s;`},
	} {
		o, err := parse(tt.args, func(string) string { return "" })
		require.NoError(t, err)
		got := banner(o, "nats://x", "")
		require.Contains(t, got, tt.want, "%v", tt.args)
		require.NotContains(t, got, "every 0s")
	}
}
