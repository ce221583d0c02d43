package pipeline

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/consumer/handlers"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/tracing"
)

// traced is a pipeline whose components trace into an in-memory recorder,
// and the application's tracer on the same provider.
type traced struct {
	*bundle
	rec *tracetest.SpanRecorder
	tr  *tracing.Tracer
	app trace.Tracer
}

func setupTraced(t *testing.T, rec *recorder, tune func(*Options)) *traced {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tr := tracing.New(tp)
	b := setup(t, rec, func(o *Options) {
		o.Tracing = tr
		if tune != nil {
			tune(o)
		}
	})
	return &traced{bundle: b, rec: sr, tr: tr, app: tp.Tracer("the application")}
}

// insertTraced inserts a job as an application in a span of its own
// would, handing its context over in the document (the README's recipe),
// and returns the span's context.
func (tb *traced) insertTraced(t *testing.T, extra ...bson.E) (bson.ObjectID, trace.SpanContext) {
	t.Helper()
	ctx, span := tb.app.Start(context.Background(), "checkout", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	fields := append([]bson.E{{Key: "traceparent", Value: carrier["traceparent"]}}, extra...)
	return tb.insertJob(t, fields...), span.SpanContext()
}

// spans are the ended spans of the event id, by name, in end order.
func (tb *traced) spans(id string) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range tb.rec.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "messaging.message.id" && kv.Value.AsString() == id {
				out[s.Name()] = append(out[s.Name()], s)
			}
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// byAttempt sorts runs by their attempt.
func byAttempt(runs []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	sort.Slice(runs, func(i, j int) bool {
		return attr(runs[i], "retrigger.attempt").AsInt64() < attr(runs[j], "retrigger.attempt").AsInt64()
	})
	return runs
}

// parented reports whether the parent of every child is among parents: a
// publish's span ends with JetStream's ack, which may come after the run
// it led to.
func parented(children, parents []sdktrace.ReadOnlySpan) bool {
	for _, c := range children {
		found := false
		for _, p := range parents {
			found = found || p.SpanContext().SpanID() == c.Parent().SpanID()
		}
		if !found {
			return false
		}
	}
	return true
}

// spanOf finds the span with the given id among spans.
func spanOf(t *testing.T, spans []sdktrace.ReadOnlySpan, id trace.SpanID) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.SpanContext().SpanID() == id {
			return s
		}
	}
	require.Failf(t, "no such span", "span %s is not among the %d given", id, len(spans))
	return nil
}

// links maps each link's kind (origin, first, previous) to its span.
func links(s sdktrace.ReadOnlySpan) map[string]trace.SpanContext {
	out := map[string]trace.SpanContext{}
	for _, l := range s.Links() {
		for _, kv := range l.Attributes {
			if kv.Key == tracing.AttrLink {
				out[kv.Value.AsString()] = l.SpanContext
			}
		}
	}
	return out
}

// An event inserted with the application's traceparent, whose partner
// fails twice and then succeeds: the first run is in the application's
// trace, under the publish its message carries; each retry is a trace of
// its own, linked to the application's span and the runs before it; each
// run sends its own context to the partner, and its ids are in the
// event's history.
func TestTraceFailsTwiceThenSucceeds(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		received []string // the traceparent of each request the partner got
	)
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Get("traceparent"))
		n := len(received)
		mu.Unlock()
		if n <= 2 {
			http.Error(w, "partner down", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(partner.Close)
	h, err := handlers.HTTP(handlers.HTTPConfig{URL: partner.URL})
	require.NoError(t, err)
	tb := setupTraced(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 1
		o.Worker.Handlers["job"] = h
	})
	subject := messaging.DefaultNames().EventSubject("job")
	sub, err := tb.Conn.SubscribeSync(subject)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, tb.Conn.Flush())

	oid, app := tb.insertTraced(t)
	id := event.IDString(bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]})
	ev := tb.waitState(t, oid, event.StateSuccess, 2)
	var spans map[string][]sdktrace.ReadOnlySpan
	waitFor(t, 10*time.Second, "the three runs' spans", func() bool {
		spans = tb.spans(id)
		return len(spans["process "+subject]) == 3 && parented(spans["process "+subject], spans["send "+subject])
	})
	runs := byAttempt(spans["process "+subject])
	sends := spans["send "+subject]

	// The first run: application -> publish -> run, one trace.
	send1 := spanOf(t, sends, runs[0].Parent().SpanID())
	require.Equal(t, app.SpanID(), send1.Parent().SpanID(), "the first publish is a child of the application's span")
	require.Equal(t, app.TraceID(), send1.SpanContext().TraceID())
	require.Equal(t, app.TraceID(), runs[0].SpanContext().TraceID(), "the first run is in the application's trace")
	require.Equal(t, trace.SpanKindProducer, send1.SpanKind())
	require.Empty(t, runs[0].Links())
	// Its message carries the publish's context, for any NATS client. (The
	// event may have been published twice before it ran, by the relay and
	// by the sweeper of a producer just started: look at each message.)
	want := "00-" + app.TraceID().String() + "-" + send1.SpanContext().SpanID().String() + "-01"
	var seen []string
	for len(seen) == 0 || seen[len(seen)-1] != want {
		msg, err := sub.NextMsg(10 * time.Second)
		require.NoError(t, err, "no message carried %s; seen %v", want, seen)
		seen = append(seen, msg.Header.Get("traceparent"))
	}

	// The retries: each a new trace, linked to the origin and the runs.
	for i, run := range runs[1:] {
		send := spanOf(t, sends, run.Parent().SpanID())
		require.False(t, send.Parent().IsValid(), "retry %d's publish starts a trace", i+2)
		require.NotEqual(t, app.TraceID(), run.SpanContext().TraceID())
		require.NotEqual(t, runs[i].SpanContext().TraceID(), run.SpanContext().TraceID())
		l := links(run)
		require.Equal(t, app.SpanID(), l["origin"].SpanID(), "retry %d links to the application's span", i+2)
		require.Equal(t, runs[0].SpanContext().SpanID(), l["first"].SpanID(), "retry %d links to the first run", i+2)
		if i == 1 {
			require.Equal(t, runs[1].SpanContext().SpanID(), l["previous"].SpanID(), "the third run links to the second")
		} else {
			require.NotContains(t, l, "previous")
		}
		require.Equal(t, links(send), l, "the publish links as its run does")
	}

	for i, run := range runs {
		require.Equal(t, trace.SpanKindConsumer, run.SpanKind())
		require.Equal(t, "retrigger", attr(run, "messaging.system").AsString())
		require.Equal(t, "process", attr(run, "messaging.operation.type").AsString())
		require.Equal(t, subject, attr(run, "messaging.destination.name").AsString())
		require.Equal(t, "job", attr(run, "retrigger.event.type").AsString())
		require.EqualValues(t, i+1, attr(run, "retrigger.attempt").AsInt64())
		want, code := "failed", codes.Error
		if i == 2 {
			want, code = "success", codes.Unset
		}
		require.Equal(t, want, attr(run, "retrigger.outcome").AsString())
		require.Equal(t, code, run.Status().Code)
		if code == codes.Error {
			require.Contains(t, run.Status().Description, "503")
		}
		// The history names each run's span; the partner got its context.
		sc := run.SpanContext()
		require.Equal(t, sc.TraceID().String(), ev.History[i].TraceID, "history entry %d", i)
		require.Equal(t, sc.SpanID().String(), ev.History[i].SpanID, "history entry %d", i)
		mu.Lock()
		require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", received[i], "the partner continues run %d", i+1)
		mu.Unlock()
	}
}

// A redriven event's next run is a new trace linked to the application's
// span, to the first run and to the operator's redrive; the archive
// continues its dead letter's publish, and every step's span is in the
// history.
func TestTraceRedriveLinks(t *testing.T) {
	t.Parallel()
	var healed sync.Map
	tb := setupTraced(t, newRecorder(func(id string, _ int) error {
		if _, ok := healed.Load(id); ok {
			return nil
		}
		return errBoom
	}), func(o *Options) { o.Producer.Sweeper.Interval = time.Hour })
	ops := admin.New(eventstore.New(tb.Database(), eventstore.Options{}), nil, tb.Options().Producer.Names).WithTracing(tb.tr)

	oid, app := tb.insertTraced(t, bson.E{Key: "maxAttempts", Value: int64(1)})
	id := event.IDString(bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]})
	tb.waitArchived(t, oid)
	healed.Store(id, true)
	res, err := ops.Redrive(context.Background(), admin.ActionRequest{Query: admin.Query{IDs: []string{oid.Hex()}}, By: "ada"}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, res.Applied)
	ev := tb.waitState(t, oid, event.StateSuccess, 0)
	require.Equal(t, []string{"error", "archived", "redriven", "success"}, outcomesOf(ev.History))

	names := messaging.DefaultNames()
	var spans map[string][]sdktrace.ReadOnlySpan
	waitFor(t, 10*time.Second, "the runs', the archive's and the redrive's spans", func() bool {
		spans = tb.spans(id)
		return len(spans["process "+names.EventSubject("job")]) == 2 && len(spans["archive "+names.DLQSubject("job")]) == 1 && len(spans["redrive retrigger"]) == 1 &&
			parented(spans["archive "+names.DLQSubject("job")], spans["send "+names.DLQSubject("job")])
	})
	runs := byAttempt(spans["process "+names.EventSubject("job")])
	first, after := runs[0], runs[1]
	if first.StartTime().After(after.StartTime()) {
		first, after = after, first
	}
	archive := spans["archive "+names.DLQSubject("job")][0]
	redrive := spans["redrive retrigger"][0]

	require.Equal(t, app.TraceID(), first.SpanContext().TraceID(), "the first run is in the application's trace")
	// The dead letter: a new trace, linked to the origin and the run.
	dlq := spanOf(t, spans["send "+names.DLQSubject("job")], archive.Parent().SpanID())
	require.False(t, dlq.Parent().IsValid())
	require.Equal(t, app.SpanID(), links(dlq)["origin"].SpanID())
	require.Equal(t, first.SpanContext().SpanID(), links(dlq)["first"].SpanID())
	require.Equal(t, "exhausted", attr(archive, "retrigger.outcome").AsString())
	// The operator's redrive.
	require.Equal(t, "ada", attr(redrive, "retrigger.operator").AsString())
	require.Equal(t, "applied", attr(redrive, "retrigger.outcome").AsString())
	// The run after it: a new trace, linked to the origin, the first run
	// and the redrive.
	require.NotEqual(t, app.TraceID(), after.SpanContext().TraceID())
	require.NotEqual(t, first.SpanContext().TraceID(), after.SpanContext().TraceID())
	l := links(after)
	require.Equal(t, app.SpanID(), l["origin"].SpanID())
	require.Equal(t, first.SpanContext().SpanID(), l["first"].SpanID())
	require.Equal(t, redrive.SpanContext().SpanID(), l["previous"].SpanID())

	for i, s := range []sdktrace.ReadOnlySpan{first, archive, redrive, after} {
		require.Equal(t, s.SpanContext().TraceID().String(), ev.History[i].TraceID, "history entry %d (%s)", i, ev.History[i].Outcome)
		require.Equal(t, s.SpanContext().SpanID().String(), ev.History[i].SpanID, "history entry %d (%s)", i, ev.History[i].Outcome)
	}
}

// A malformed traceparent never fails its event: it runs, in a new trace
// whose spans say why the context was not used.
func TestTraceMalformedContext(t *testing.T) {
	t.Parallel()
	tb := setupTraced(t, newRecorder(nil), nil)
	subject := messaging.DefaultNames().EventSubject("job")
	for _, tc := range []struct {
		name  string
		value any
		why   string
	}{
		{"wrong length", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01", "not a W3C trace context"},
		{"bad hex", "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", "not a W3C trace context"},
		{"all zeros", "00-00000000000000000000000000000000-0000000000000000-00", "not a W3C trace context"},
		{"wrong type", 42, "traceparent must be a string, not int"},
		{"a document", bson.D{{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, "traceparent must be a string, not object"},
	} {
		oid := tb.insertJob(t, bson.E{Key: "traceparent", Value: tc.value})
		id := event.IDString(bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]})
		ev := tb.waitState(t, oid, event.StateSuccess, 0)
		var spans map[string][]sdktrace.ReadOnlySpan
		waitFor(t, 10*time.Second, tc.name+": its publish's and its run's spans", func() bool {
			spans = tb.spans(id)
			// The publish's span ends with JetStream's ack, which may come
			// after the run.
			return len(spans["process "+subject]) == 1 && parented(spans["process "+subject], spans["send "+subject])
		})
		run := spans["process "+subject][0]
		send := spanOf(t, spans["send "+subject], run.Parent().SpanID())
		require.False(t, send.Parent().IsValid(), "%s: a new trace", tc.name)
		for _, s := range []sdktrace.ReadOnlySpan{send, run} {
			require.Contains(t, attr(s, "retrigger.trace_context.invalid").AsString(), tc.why, tc.name)
		}
		require.Equal(t, run.SpanContext().TraceID().String(), ev.History[0].TraceID, tc.name)
	}
}

// Tracing off, the default: no message carries a context and no history
// entry names a span, even for an event that hands one over.
func TestTraceOff(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), func(o *Options) { o.Replicas = 1 })
	sub, err := b.Conn.SubscribeSync(messaging.DefaultNames().EventSubject("job"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, b.Conn.Flush())
	oid := b.insertJob(t, bson.E{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	ev := b.waitState(t, oid, event.StateSuccess, 0)
	require.Empty(t, ev.History[0].TraceID)
	msg, err := sub.NextMsg(10 * time.Second)
	require.NoError(t, err)
	require.Empty(t, msg.Header.Get("traceparent"))
}
