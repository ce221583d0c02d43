package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// Every method moves its metric, and the exposition lints clean.
func TestMetricsMoveAndLint(t *testing.T) {
	t.Parallel()
	m := New("v1.2.3")
	clock := time.Unix(2000, 0)
	m.now = func() time.Time { return clock }
	m.Transition("mail", event.StateNew, event.StateSuccess, 1, 20*time.Millisecond)
	m.Transition("mail", event.StateNew, event.StateFailed, 1, 20*time.Millisecond)
	m.InFlight(1)
	m.Skipped(SkipStale)
	m.ChangeSeen(bson.Timestamp{T: 1990})
	m.Published("RETRIGGER_EVENTS", time.Millisecond, true)
	m.Swept()
	m.Scheduled()
	m.Archived(event.ReasonExhausted)
	m.StorageError("find")
	m.NATSError("publish")
	m.Leader(true)
	if got := testutil.ToFloat64(m.lag); got != 10 {
		t.Errorf("lag %v, want 10", got)
	}
	clock = clock.Add(3 * time.Second)
	if got := m.checkpointAge(); got != 3 {
		t.Errorf("checkpoint age %v, want 3 (a change waits since 3s)", got)
	}
	m.Checkpointed()
	if got := m.checkpointAge(); got != 0 {
		t.Errorf("checkpoint age %v after a save, want 0", got)
	}
	if got := testutil.ToFloat64(m.handled.WithLabelValues("mail", OutcomeRetry)); got != 1 {
		t.Errorf("handled retry %v", got)
	}
	problems, err := promlint.NewWithMetricFamilies(gather(t, m)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func gather(t *testing.T, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func TestNilRecordsNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.Transition("x", 0, 1, 1, time.Second)
	m.InFlight(1)
	m.ChangeSeen(bson.Timestamp{})
	m.Checkpointed()
	m.Leader(true)
	db, err := embedded.Open(context.Background(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if m.WrapDatabase(db) != store.Database(db) {
		t.Error("a nil Metrics wraps nothing")
	}
}

// The wrapped database counts failures, not answers.
func TestWrapDatabaseCountsErrors(t *testing.T) {
	t.Parallel()
	m := New("dev")
	db, err := embedded.Open(context.Background(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	c := m.WrapDatabase(db).Collection("events")
	ctx := context.Background()
	if err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatal(err)
	}
	if _, err := c.FindOne(ctx, bson.D{{Key: "_id", Value: 2}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := c.FindOne(ctx, bson.D{{Key: "$bogus", Value: 1}}); err == nil {
		t.Fatal("a bad filter fails")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.FindOne(cancelled, bson.D{{Key: "_id", Value: 1}}); err == nil {
		t.Fatal("a cancelled call fails")
	}
	late, cancelLate := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelLate()
	if _, err := c.FindOne(late, bson.D{{Key: "_id", Value: 1}}); err == nil {
		t.Fatal("a call past its deadline fails")
	}
	if got := testutil.ToFloat64(m.storageErrors.WithLabelValues("find")); got != 2 {
		t.Errorf("find errors %v, want 2: a bad filter and a deadline passed count, a cancel does not", got)
	}
	out, _ := testutil.CollectAndLint(m.storageErrors)
	if len(out) > 0 {
		t.Errorf("lint: %v", out)
	}
	if got := testutil.ToFloat64(m.storageErrors.WithLabelValues("find")); got != 2 {
		t.Errorf("find errors %v, want 2", got)
	}
	if n := testutil.CollectAndCount(m.storageErrors); n != 1 {
		t.Errorf("%d series: a duplicate and a not found are not errors", n)
	}
	if !strings.HasPrefix(m.storageErrors.WithLabelValues("find").Desc().String(), "Desc{fqName: \"retrigger_storage_errors_total\"") {
		t.Error(m.storageErrors.WithLabelValues("find").Desc().String())
	}
}

// A process exports the metrics of the parts it runs and those of every
// process, never another part's as 0: a consumer has no
// retrigger_producer_leader.
func TestPartsExportTheirMetrics(t *testing.T) {
	t.Parallel()
	exported := func(m *Metrics) map[string]bool {
		// every metric once, so that the vectors show too
		m.Transition("t", event.StateNew, event.StateSuccess, 1, time.Millisecond)
		m.Skipped(SkipBusy)
		m.Published("s", time.Millisecond, true)
		m.Archived(event.ReasonExhausted)
		m.StorageError("find")
		m.NATSError("pull")
		m.FlowState("t", BreakerOpen, true)
		m.BreakerTripped("t")
		m.Probed("t", "failure")
		m.FlowWait("t", "breaker")
		families, err := m.Registry().Gather()
		require.NoError(t, err)
		out := map[string]bool{}
		for _, f := range families {
			out[f.GetName()] = true
		}
		return out
	}
	parts := map[string][]Part{}
	for _, d := range New("test").Definitions() {
		parts[d.Name] = d.Parts
	}
	for _, tt := range []struct {
		part Part
		want []string
		not  []string
	}{
		{Consumer, []string{"retrigger_events_handled_total", "retrigger_handlers_in_flight", "retrigger_storage_errors_total", "retrigger_build_info",
			"retrigger_breaker_state", "retrigger_breaker_trips_total", "retrigger_breaker_probes_total", "retrigger_flow_waits_total", "retrigger_type_paused"},
			[]string{"retrigger_producer_leader", "retrigger_changes_seen_total", "retrigger_swept_total", "retrigger_published_total", "retrigger_archived_total"}},
		{Archiver, []string{"retrigger_archived_total", "retrigger_nats_errors_total"},
			[]string{"retrigger_producer_leader", "retrigger_scheduled_total", "retrigger_handlers_in_flight", "retrigger_events_handled_total"}},
		{Producer, []string{"retrigger_producer_leader", "retrigger_changes_seen_total", "retrigger_published_total", "retrigger_checkpoint_age_seconds", "retrigger_archived_total"},
			[]string{"retrigger_handlers_in_flight", "retrigger_events_handled_total"}},
	} {
		got := exported(New("test", tt.part))
		for _, name := range tt.want {
			require.True(t, got[name], "%s exports %s", tt.part, name)
		}
		for _, name := range tt.not {
			require.False(t, got[name], "%s exports %s, a metric of %v", tt.part, name, parts[name])
		}
	}
	all := exported(New("test"))
	for name := range parts {
		require.True(t, all[name], "a process of every part exports %s", name)
	}
}

// Transition's series, looked up once and kept, count every run, and
// appear as they are first written: no attempts before a success, no
// handler time for a run that did not run its handler.
func TestTransitionCountsEveryRun(t *testing.T) {
	t.Parallel()
	m := New("v1")
	m.Transition("mail", event.StateNew, event.StateError, 1, 0) // crashed too often: not run
	require.Zero(t, testutil.CollectAndCount(m.attempts))
	require.Zero(t, testutil.CollectAndCount(m.handlerTime))
	for range 3 {
		m.Transition("mail", event.StateNew, event.StateSuccess, 1, time.Millisecond)
		m.Transition("sms", event.StateFailed, event.StateSuccess, 2, time.Millisecond)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(m.handled.WithLabelValues("mail", OutcomeSuccess)))
	require.Equal(t, 3.0, testutil.ToFloat64(m.handled.WithLabelValues("sms", OutcomeSuccess)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.handled.WithLabelValues("mail", OutcomeError)))
	require.Equal(t, 3.0, testutil.ToFloat64(m.transitions.WithLabelValues("new", "success")))
	require.Equal(t, 3.0, testutil.ToFloat64(m.transitions.WithLabelValues("failed", "success")))
	require.Equal(t, 2, testutil.CollectAndCount(m.attempts))
	require.Equal(t, 2, testutil.CollectAndCount(m.handlerTime))
}
