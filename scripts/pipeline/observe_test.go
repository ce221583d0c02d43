package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// The history of an event that fails twice and then succeeds: three
// entries, in order, each with its start, duration, outcome, error and
// replica, written by the transitions themselves.
func TestHistoryFailsTwiceThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(func(_ string, call int) error {
		if call <= 2 {
			return errBoom
		}
		return nil
	}), func(o *Options) { o.Worker.Policies = fastPolicy(5) })
	start := time.Now().Add(-time.Millisecond)
	id := b.insertJob(t)
	ev := b.waitState(t, id, event.StateSuccess, 2)
	require.Len(t, ev.History, 3)
	replicas := map[string]bool{}
	for _, w := range b.Workers() {
		replicas[w.Replica()] = true
	}
	prev := start
	for i, h := range ev.History {
		want := "failed"
		if i == 2 {
			want = "success"
		}
		require.Equal(t, want, h.Outcome, "entry %d", i)
		require.EqualValues(t, i+1, h.Number, "entry %d is attempt %d", i, i+1)
		require.True(t, replicas[h.Replica], "entry %d names a replica that ran it: %q", i, h.Replica)
		require.False(t, h.At.Before(prev.Truncate(time.Millisecond)), "entry %d starts after the one before", i)
		require.GreaterOrEqual(t, h.Took, time.Duration(0))
		prev = h.At
	}
	require.Equal(t, "boom", ev.History[0].Error)
	require.Equal(t, "boom", ev.History[1].Error)
	require.Empty(t, ev.History[2].Error)
}

// failOnce fails the first FindOneAndUpdate (a claim) on the events
// collection after it is armed: a storage error for the metrics to count.
type failOnce struct {
	store.Database
	armed atomic.Bool
}

func (f *failOnce) Collection(name string) store.Collection {
	c := f.Database.Collection(name)
	if name != "events" {
		return c
	}
	return failOnceColl{c, f}
}

type failOnceColl struct {
	store.Collection
	f *failOnce
}

func (c failOnceColl) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	if c.f.armed.CompareAndSwap(true, false) {
		return nil, errors.New("injected storage failure")
	}
	return c.Collection.FindOneAndUpdate(ctx, filter, update)
}

// exposition reads /metrics as a scraper would.
func exposition(t *testing.T, url string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	return body, mfs
}

// value is the sum of a metric's series whose labels include want: a
// counter's or gauge's value, a histogram's count.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	var sum float64
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func get200(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Every metric moves in a small run, the exposition lints clean, and
// /readyz fails while NATS is down and recovers when it is back, while
// /healthz stays live.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	var (
		release  = make(chan struct{})
		blocking sync.Once
		started  = make(chan bson.RawValue, 1)
	)
	handler := func(_ context.Context, ev *consumer.Event) error {
		switch ev.Payload.Lookup("do").StringValue() {
		case "fail":
			if ev.Attempts == 0 {
				return errBoom
			}
		case "exhaust":
			return errBoom
		case "later":
			return consumer.After(time.Hour, errBoom)
		case "block":
			blocking.Do(func() { started <- ev.ID })
			<-release
		}
		return nil
	}
	fail := &failOnce{}
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers = map[string]consumer.Handler{"job": handler}
		o.Worker.Policies = fastPolicy(2)
		// Long enough for the relay to see a failure not due yet: the
		// scheduler publishes it.
		o.Worker.Policies.Default.InitialInterval = 300 * time.Millisecond
		o.Worker.Policies.Default.MaxInterval = 2 * time.Hour // and a retry after an hour is not cut short
		o.WrapStore = func(db store.Database) store.Database { fail.Database = db; return fail }
		// The sweeper republishes anything new at once: the unserved
		// event twice, the second time a duplicate.
		o.Producer.Sweeper.Interval = 100 * time.Millisecond
		o.Producer.Sweeper.Stall = time.Millisecond
		// No checkpoint is saved during the test: its age grows.
		o.Producer.Relay.CheckpointInterval = time.Hour
	})
	defer close(release)
	srv := httptest.NewServer(b.Health.Mux(b.Metrics.Handler()))
	defer srv.Close()
	waitFor(t, 10*time.Second, "/readyz ok", func() bool { return get200(t, srv.URL+"/readyz") == http.StatusOK })

	job := func(do string) bson.ObjectID {
		return b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "payload", Value: bson.D{{Key: "do", Value: do}}})
	}
	fail.armed.Store(true) // the first claim fails
	ok := job("ok")
	failing := job("fail")
	exhausted := job("exhaust")
	later := job("later")
	b.insert(t, bson.E{Key: "type", Value: "orphan"}) // no replica handles it
	b.waitState(t, ok, event.StateSuccess, 0)
	publishCopy(t, b, ok, "retrigger.events.job") // of an event that moved on
	b.waitState(t, failing, event.StateSuccess, 1)
	b.waitArchived(t, exhausted)
	b.waitState(t, later, event.StateFailed, 1)
	publishCopy(t, b, later, "retrigger.events.job") // not due for an hour

	blocked := job("block")
	<-started
	publishCopy(t, b, blocked, "retrigger.events.job") // another replica finds it running

	// Stop NATS: not ready, still live; then back.
	want := map[string][]string{
		"retrigger_events_handled_total":      {"type", "job", "outcome", "success"},
		"retrigger_handler_duration_seconds":  {"type", "job"},
		"retrigger_handlers_in_flight":        nil,
		"retrigger_attempts_at_success":       {"type", "job"},
		"retrigger_transitions_total":         {"from", "failed", "to", "success"},
		"retrigger_messages_skipped_total":    {"reason", "stale"},
		"retrigger_changes_seen_total":        nil,
		"retrigger_published_total":           {"stream", "RETRIGGER_EVENTS"},
		"retrigger_publish_duplicates_total":  {"stream", "RETRIGGER_EVENTS"},
		"retrigger_publish_duration_seconds":  nil,
		"retrigger_checkpoint_age_seconds":    nil,
		"retrigger_change_stream_lag_seconds": nil,
		"retrigger_swept_total":               nil,
		"retrigger_scheduled_total":           nil,
		"retrigger_archived_total":            {"reason", "exhausted"},
		"retrigger_storage_errors_total":      {"op", "update"},
		"retrigger_producer_leader":           nil,
		"retrigger_build_info":                {"version", "dev"},
	}
	// Gauges that are 0 on the happy path: present, with the type.
	present := map[string][]string{
		"retrigger_breaker_state": {"type", "job"},
		"retrigger_type_paused":   {"type", "job"},
	}
	also := [][]string{
		{"retrigger_events_handled_total", "outcome", "retry"},
		{"retrigger_events_handled_total", "outcome", "error"},
		{"retrigger_messages_skipped_total", "reason", "not_due"},
		{"retrigger_messages_skipped_total", "reason", "busy"},
		{"retrigger_published_total", "stream", "RETRIGGER_DLQ"},
	}
	var (
		mfs     map[string]*dto.MetricFamily
		missing []string
	)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // scraping, as Prometheus does
	defer tick.Stop()
	for {
		_, mfs = exposition(t, srv.URL)
		missing = missing[:0]
		for name, labels := range want {
			if value(mfs, name, labels...) <= 0 {
				missing = append(missing, name+fmt.Sprint(labels))
			}
		}
		for _, a := range also {
			if value(mfs, a[0], a[1:]...) <= 0 {
				missing = append(missing, fmt.Sprint(a))
			}
		}
		for name, labels := range present {
			if value(mfs, name, labels...) != 0 {
				missing = append(missing, name+fmt.Sprint(labels)+fmt.Sprint(" at 0, not ", value(mfs, name, labels...)))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("these metrics did not move in 10s: %v", missing)
		}
		<-tick.C
	}

	b.StopNATS()
	waitFor(t, 10*time.Second, "/readyz failing while NATS is down", func() bool {
		return get200(t, srv.URL+"/readyz") == http.StatusServiceUnavailable
	})
	require.Equal(t, http.StatusOK, get200(t, srv.URL+"/healthz"), "an outage does not make the process unlive")
	require.NoError(t, b.StartNATS())
	waitFor(t, 20*time.Second, "/readyz ok once NATS is back", func() bool { return get200(t, srv.URL+"/readyz") == http.StatusOK })

	body, mfs := exposition(t, srv.URL)
	require.Positive(t, value(mfs, "retrigger_nats_errors_total", "op", "disconnect"))
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	require.NoError(t, err)
	var texts []string
	for _, p := range problems {
		texts = append(texts, p.Metric+": "+p.Text)
	}
	sort.Strings(texts)
	require.Empty(t, texts, "promlint")
	var names []string
	for name := range mfs {
		if strings.HasPrefix(name, "retrigger_") {
			names = append(names, name)
		}
	}
	// The breaker's trips and probes and the flow waits move in the flow
	// control tests (flow_test.go).
	require.Len(t, names, len(want)+1+len(present), "every retrigger metric is checked above: %v", names)
}
