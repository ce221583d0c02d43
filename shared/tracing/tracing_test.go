package tracing

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	appTrace    = "4bf92f3577b34da6a3ce929d0e0e4736"
	appSpan     = "00f067aa0ba902b7"
	appParent   = "00-" + appTrace + "-" + appSpan + "-01"
	subject     = "retrigger.events.email"
	dlqSubject  = "retrigger.dlq.email"
	invalidAttr = "retrigger.trace_context.invalid"
)

func setup(t *testing.T) (*tracetest.SpanRecorder, *Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, New(tp)
}

// parse reads an event document as every component does.
func parse(t *testing.T, fields ...bson.E) *event.Event {
	t.Helper()
	doc, err := bson.Marshal(append(bson.D{{Key: "_id", Value: "order-1"}, {Key: "type", Value: "email"}}, fields...))
	require.NoError(t, err)
	ev, err := event.Parse(doc)
	require.NoError(t, err, "a trace context never fails an event")
	return &ev
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// A context the application gives that cannot be used never fails the
// event: its spans start a new trace and say why the context was not
// used.
func TestMalformedContextStartsANewTrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		value  any
		reason string
	}{
		{"too short", "00-" + appTrace + "-" + appSpan, "not a W3C trace context"},
		{"too long a trace id", "00-" + appTrace + "00-" + appSpan + "-01", "not a W3C trace context"},
		{"bad hex", "00-" + strings.Replace(appTrace, "4", "g", 1) + "-" + appSpan + "-01", "not a W3C trace context"},
		{"upper-case hex", "00-" + strings.ToUpper(appTrace) + "-" + appSpan + "-01", "not a W3C trace context"},
		{"all-zero trace id", "00-00000000000000000000000000000000-" + appSpan + "-01", "not a W3C trace context"},
		{"all-zero span id", "00-" + appTrace + "-0000000000000000-01", "not a W3C trace context"},
		{"version ff", "ff-" + appTrace + "-" + appSpan + "-01", "not a W3C trace context"},
		{"empty", "", ""},
		{"a number", int64(7), "traceparent must be a string, not long"},
		{"a document", bson.D{{Key: "traceparent", Value: appParent}}, "traceparent must be a string, not object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec, tr := setup(t)
			ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: tt.value})
			sc, invalid := Origin(ev)
			require.False(t, sc.IsValid())
			require.Contains(t, invalid, tt.reason)

			msg := messaging.NewMsg(subject, "id@1", ev.ID, 0, nil)
			tr.Publish(ev, msg).End(nil)
			_, run := tr.Run(context.Background(), subject, msg.Header, ev, "r1")
			run.End(nil)
			spans := rec.Ended()
			require.Len(t, spans, 2)
			require.False(t, spans[0].Parent().IsValid(), "the publish starts a new trace")
			require.Equal(t, spans[0].SpanContext().SpanID(), spans[1].Parent().SpanID(), "the run continues the message's")
			for _, s := range spans {
				if tt.reason == "" {
					require.NotContains(t, attrs(s), attribute.Key(invalidAttr))
				} else {
					require.Contains(t, attrs(s)[invalidAttr].AsString(), tt.reason)
				}
			}
		})
	}
}

func TestOriginOfAValidContext(t *testing.T) {
	t.Parallel()
	ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent}, bson.E{Key: event.FieldTraceState, Value: "congo=t61rcWkgMzE"})
	sc, invalid := Origin(ev)
	require.Empty(t, invalid)
	require.Equal(t, appTrace, sc.TraceID().String())
	require.Equal(t, appSpan, sc.SpanID().String())
	require.True(t, sc.IsSampled())
	require.Equal(t, "congo=t61rcWkgMzE", sc.TraceState().String())
	// A malformed tracestate is dropped, the traceparent kept (W3C).
	sc, invalid = Origin(parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent}, bson.E{Key: event.FieldTraceState, Value: "=,=="}))
	require.Empty(t, invalid)
	require.True(t, sc.IsValid())
}

// The shape of an event's spans: its first delivery in the application's
// trace, each later one a trace of its own linked to the origin and to the
// first and latest traced runs.
func TestSpansOfAnEvent(t *testing.T) {
	t.Parallel()
	rec, tr := setup(t)
	ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent}, bson.E{Key: event.FieldTraceState, Value: "congo=t61rcWkgMzE"})

	// First delivery: publish -> run, in the application's trace.
	msg := messaging.NewMsg(subject, "order-1@c1", ev.ID, 0, nil)
	pub := tr.Publish(ev, msg)
	require.Equal(t, []string{"congo=t61rcWkgMzE"}, msg.Header.Values(TraceState))
	ctx, run1 := tr.Run(context.Background(), subject, msg.Header, ev, "r1")
	require.Equal(t, run1.span.SpanContext(), trace.SpanContextFromContext(ctx), "the handler's ctx carries the run")
	run1.Outcome("failed")
	run1.End(errors.New("boom"))
	pub.End(nil)
	first := run1.span.SpanContext()
	tid, sid := run1.IDs()
	require.Equal(t, first.TraceID().String(), tid)
	require.Equal(t, first.SpanID().String(), sid)

	// The retry: the history names the first run.
	ev.Attempts = 1
	ev.History = []event.Attempt{{Outcome: "failed", Number: 1, TraceID: tid, SpanID: sid}}
	retry := messaging.NewMsg(subject, "order-1@v2", ev.ID, 2, nil)
	pub2 := tr.Publish(ev, retry)
	_, run2 := tr.Run(context.Background(), subject, retry.Header, ev, "r2")
	run2.Outcome("success")
	run2.End(nil)
	pub2.End(nil)

	spans := map[string]sdktrace.ReadOnlySpan{}
	for i, s := range rec.Ended() {
		spans[[]string{"run1", "pub1", "run2", "pub2"}[i]] = s
	}
	require.Equal(t, "send "+subject, spans["pub1"].Name())
	require.Equal(t, trace.SpanKindProducer, spans["pub1"].SpanKind())
	require.Equal(t, appSpan, spans["pub1"].Parent().SpanID().String(), "the first publish is a child of the application's span")
	require.Equal(t, appTrace, spans["pub1"].SpanContext().TraceID().String())
	require.Equal(t, "process "+subject, spans["run1"].Name())
	require.Equal(t, trace.SpanKindConsumer, spans["run1"].SpanKind())
	require.Equal(t, spans["pub1"].SpanContext().SpanID(), spans["run1"].Parent().SpanID(), "the first run continues its message")
	require.Empty(t, spans["run1"].Links())
	require.Equal(t, codes.Error, spans["run1"].Status().Code)
	a := attrs(spans["run1"])
	require.Equal(t, "retrigger", a["messaging.system"].AsString())
	require.Equal(t, "process", a["messaging.operation.type"].AsString())
	require.Equal(t, subject, a["messaging.destination.name"].AsString())
	require.Equal(t, "order-1", a["messaging.message.id"].AsString())
	require.Equal(t, "email", a["retrigger.event.type"].AsString())
	require.EqualValues(t, 1, a["retrigger.attempt"].AsInt64())
	require.Equal(t, "failed", a["retrigger.outcome"].AsString())
	require.Equal(t, "r1", a["retrigger.replica"].AsString())
	require.Equal(t, "send", attrs(spans["pub1"])["messaging.operation.type"].AsString())

	require.False(t, spans["pub2"].Parent().IsValid(), "a retry starts a new trace")
	require.NotEqual(t, appTrace, spans["pub2"].SpanContext().TraceID().String())
	require.Equal(t, spans["pub2"].SpanContext().SpanID(), spans["run2"].Parent().SpanID())
	require.EqualValues(t, 2, attrs(spans["run2"])["retrigger.attempt"].AsInt64())
	for _, name := range []string{"pub2", "run2"} {
		links := spans[name].Links()
		require.Len(t, links, 2, name)
		require.Equal(t, appSpan, links[0].SpanContext.SpanID().String())
		require.Equal(t, "origin", links[0].Attributes[0].Value.AsString())
		require.Equal(t, first.SpanID(), links[1].SpanContext.SpanID())
		require.Equal(t, "first", links[1].Attributes[0].Value.AsString())
	}
}

// Links name the application's span, the first traced entry of the
// history and its latest, skipping entries without a span or with a
// malformed one.
func TestLinks(t *testing.T) {
	t.Parallel()
	ev := parse(t)
	ev.History = []event.Attempt{
		{Outcome: "failed"}, // not traced
		{Outcome: "failed", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"},
		{Outcome: "failed", TraceID: "nothex", SpanID: "b7ad6b7169203331"},
		{Outcome: "archived", TraceID: "1af7651916cd43dd8448eb211c80319c", SpanID: "c7ad6b7169203331"},
		{Outcome: "redriven", TraceID: "2af7651916cd43dd8448eb211c80319c", SpanID: "d7ad6b7169203331"},
	}
	links := Links(ev, trace.SpanContext{})
	require.Len(t, links, 2)
	require.Equal(t, "b7ad6b7169203331", links[0].SpanContext.SpanID().String())
	require.Equal(t, "first", links[0].Attributes[0].Value.AsString())
	require.Equal(t, "d7ad6b7169203331", links[1].SpanContext.SpanID().String())
	require.Equal(t, "previous", links[1].Attributes[0].Value.AsString())
	require.Empty(t, Links(parse(t), trace.SpanContext{}))
}

// The headers of a message carry the publish's context under the W3C
// name, lower case; the canonical form is read too.
func TestMessageHeaders(t *testing.T) {
	t.Parallel()
	rec, tr := setup(t)
	ev := parse(t)
	msg := messaging.NewMsg(subject, "order-1@c1", ev.ID, 0, nil)
	tr.Publish(ev, msg).End(nil)
	sc := rec.Ended()[0].SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	require.Equal(t, []string{want}, msg.Header[TraceParent])
	require.Equal(t, sc.SpanID(), Extract(msg.Header).SpanID())
	require.Equal(t, sc.SpanID(), Extract(nats.Header{"Traceparent": {want}}).SpanID())
	require.False(t, Extract(nats.Header{TraceParent: {"junk"}}).IsValid())
	require.False(t, Extract(nil).IsValid())
}

// An archive of a rejected document that never ran stays in the
// application's trace, names the rejection, and continues its dead
// letter's publish.
func TestArchiveOfARejectedDocument(t *testing.T) {
	t.Parallel()
	rec, tr := setup(t)
	ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent})
	msg := messaging.NewMsg(dlqSubject, "order-1@rejected", ev.ID, 0, nil)
	msg.Header.Set(messaging.HeaderReason, "invalid event field \"payload\"")
	tr.Publish(ev, msg).End(nil)
	_, arch := tr.Archive(context.Background(), dlqSubject, msg.Header, ev)
	arch.Outcome("rejected")
	arch.End(nil)
	spans := rec.Ended()
	require.Equal(t, appSpan, spans[0].Parent().SpanID().String())
	require.Contains(t, attrs(spans[0])["retrigger.reason"].AsString(), "payload")
	require.Equal(t, "archive "+dlqSubject, spans[1].Name())
	require.Equal(t, spans[0].SpanContext().SpanID(), spans[1].Parent().SpanID())
	require.Equal(t, "archive", attrs(spans[1])["messaging.operation.name"].AsString())
}

// An unsampled span's ids are not written into the history: a link to
// it would lead nowhere.
func TestUnsampledSpansHaveNoIDs(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	tr := New(tp)
	_, s := tr.Run(context.Background(), subject, nil, parse(t), "r1")
	tid, sid := s.IDs()
	s.End(nil)
	require.Empty(t, tid)
	require.Empty(t, sid)
}

// Inject hands the run's span to an HTTP request, and nothing without one.
func TestInject(t *testing.T) {
	t.Parallel()
	rec, tr := setup(t)
	ctx, s := tr.Run(context.Background(), subject, nil, parse(t), "r1")
	h := http.Header{}
	Inject(ctx, h)
	s.End(nil)
	sc := rec.Ended()[0].SpanContext()
	require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", h.Get("traceparent"))
	h = http.Header{}
	Inject(context.Background(), h)
	require.Empty(t, h)
}

// A log line given a ctx with a span names it.
func TestLogHook(t *testing.T) {
	t.Parallel()
	rec, tr := setup(t)
	var buf strings.Builder
	log := zerolog.New(&buf).Hook(LogHook)
	ctx, s := tr.Run(context.Background(), subject, nil, parse(t), "r1")
	log.Info().Ctx(ctx).Msg("about the event")
	log.Info().Ctx(context.Background()).Msg("about nothing")
	s.Log(log.Info()).Msg("from the span")
	s.End(nil)
	sc := rec.Ended()[0].SpanContext()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Contains(t, lines[0], `"trace_id":"`+sc.TraceID().String()+`","span_id":"`+sc.SpanID().String()+`"`)
	require.NotContains(t, lines[1], "trace_id")
	require.Contains(t, lines[2], `"trace_id":"`+sc.TraceID().String()+`","span_id":"`+sc.SpanID().String()+`"`)
}

// Tracing off (a nil *Tracer) allocates nothing on any path an event
// takes: the publish, the run, the archive, an action, their spans, the
// HTTP handler's Inject, and log lines through the hook.
func TestOffAllocatesNothing(t *testing.T) {
	var tr *Tracer
	ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent})
	msg := messaging.NewMsg(subject, "order-1@c1", ev.ID, 0, nil)
	ctx := context.Background()
	h := http.Header{}
	log := zerolog.New(nil).Level(zerolog.InfoLevel).Hook(LogHook)
	allocs := testing.AllocsPerRun(100, func() {
		s := tr.Publish(ev, msg)
		s.End(nil)
		rctx, run := tr.Run(ctx, subject, msg.Header, ev, "r1")
		_, _ = run.IDs()
		run.Outcome("success")
		run.Log(log.Debug()).Msg("")
		log.Debug().Ctx(rctx).Msg("")
		Inject(rctx, h)
		run.End(nil)
		_, a := tr.Archive(ctx, dlqSubject, msg.Header, ev)
		a.End(errors.ErrUnsupported)
		_, act := tr.Action(ctx, "retry", ev.ID, "ada")
		act.End(nil)
	})
	require.Zero(t, allocs)
	require.Empty(t, msg.Header.Get(TraceParent))
	require.Empty(t, h)
}

// FuzzOrigin: whatever an application writes as its trace context, the
// event parses, and Origin gives a valid span context or says why not,
// never both, never a panic.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{appParent, "", "00-" + appTrace + "-" + appSpan + "-00", "01-" + appTrace + "-" + appSpan + "-01-extra",
		"00-00000000000000000000000000000000-" + appSpan + "-01", "ff-" + appTrace + "-" + appSpan + "-01", "garbage", strings.Repeat("0", 200)} {
		f.Add(s, "congo=t61rcWkgMzE", false)
		f.Add(s, "", true)
	}
	f.Fuzz(func(t *testing.T, parent, state string, asDocument bool) {
		var v any = parent
		if asDocument {
			v = bson.D{{Key: "traceparent", Value: parent}}
		}
		doc, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: event.FieldTraceParent, Value: v}, {Key: event.FieldTraceState, Value: state}})
		if err != nil {
			t.Skip() // not valid UTF-8 for a key, ...
		}
		ev, err := event.Parse(doc)
		if err != nil {
			t.Fatalf("the trace context failed the event: %v", err)
		}
		sc, invalid := Origin(&ev)
		switch {
		case sc.IsValid() && invalid != "":
			t.Fatalf("valid and invalid: %q", invalid)
		case !sc.IsValid() && invalid == "" && (asDocument || parent != ""):
			t.Fatalf("%q was dropped without saying why", parent)
		case sc.IsValid() && !strings.Contains(parent, sc.TraceID().String()):
			t.Fatalf("the trace id %s is not the one of %q", sc.TraceID(), parent)
		}
	})
}
