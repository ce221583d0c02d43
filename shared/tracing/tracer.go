package tracing

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/version"
)

// ScopeName is the instrumentation scope of retrigger's spans.
const ScopeName = "github.com/retrigger/retrigger"

// System is the messaging.system of retrigger's spans: the queue the
// application writes to is retrigger's events collection; NATS subjects
// are the destinations.
const System = "retrigger"

// retrigger's own attributes, beside the messaging conventions'.
const (
	AttrEventType = attribute.Key("retrigger.event.type") // the event's type (its handler)
	AttrAttempt   = attribute.Key("retrigger.attempt")    // the run's attempt, 1 for the first
	AttrOutcome   = attribute.Key("retrigger.outcome")    // success, failed, error, crashed; applied or a skip for actions
	AttrReplica   = attribute.Key("retrigger.replica")    // the consumer replica that ran it
	AttrReason    = attribute.Key("retrigger.reason")     // why a document was rejected
	AttrAction    = attribute.Key("retrigger.action")     // retry, cancel, redrive
	AttrOperator  = attribute.Key("retrigger.operator")   // who acted
	// AttrInvalidContext says why the application's trace context was not
	// used: its span then starts a new trace.
	AttrInvalidContext = attribute.Key("retrigger.trace_context.invalid")
	// AttrLink names what a link points at: origin (the application's
	// span), first (the event's first traced run or action), previous (its
	// latest one).
	AttrLink = attribute.Key("retrigger.link")
)

// Tracer makes retrigger's spans. A nil *Tracer is tracing off: its
// methods return at once and allocate nothing.
type Tracer struct {
	tracer trace.Tracer
	desc   string // where the spans go, for String
}

// New makes a Tracer on tp; nil tp is tracing off (a nil *Tracer).
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{tracer: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version.Version), trace.WithSchemaURL(semconv.SchemaURL))}
}

// Span is one of retrigger's spans; the zero Span (tracing off) does
// nothing.
type Span struct{ span trace.Span }

// IDs are the span's trace and span ids in lower-case hex, for the
// history entry, when it is sampled; "" otherwise (a link to a span no
// backend keeps would lead nowhere).
func (s Span) IDs() (traceID, spanID string) {
	if s.span == nil {
		return "", ""
	}
	sc := s.span.SpanContext()
	if !sc.IsSampled() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// Log adds the span's trace_id and span_id to a log line, e.
func (s Span) Log(e *zerolog.Event) *zerolog.Event {
	if s.span == nil || e == nil {
		return e
	}
	sc := s.span.SpanContext()
	return e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
}

// Outcome records what the run or action came to.
func (s Span) Outcome(outcome string) {
	if s.span != nil {
		s.span.SetAttributes(AttrOutcome.String(outcome))
	}
}

// End ends the span; a non-nil err marks it failed, with the error.
func (s Span) End(err error) {
	if s.span == nil {
		return
	}
	if err != nil {
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
		s.span.SetAttributes(semconv.ErrorType(err))
	}
	s.span.End()
}

// Publish starts the producer's span for msg, a message of ev, and writes
// its context into the message's headers (traceparent, and tracestate
// when there is one). End it when JetStream acknowledged the message.
func (t *Tracer) Publish(ev *event.Event, msg *nats.Msg) Span {
	if t == nil || msg == nil {
		return Span{}
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(System),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("send"),
		semconv.MessagingDestinationName(msg.Subject),
		semconv.MessagingMessageID(event.IDString(ev.ID)),
		AttrEventType.String(ev.Type),
	}
	if reason := msg.Header.Get(messaging.HeaderReason); reason != "" {
		attrs = append(attrs, AttrReason.String(reason))
	}
	ctx, s := t.start(context.Background(), "send "+msg.Subject, trace.SpanKindProducer, trace.SpanContext{}, ev, attrs)
	propagation.TraceContext{}.Inject(ctx, Header(msg.Header))
	return s
}

// Run starts the span of one run of ev, a message of subject with headers
// h, on replica. Its parent is the message's publish span; without one
// (the producer does not trace), the application's span on the event's
// first delivery, else none. The returned ctx carries it: the handler's.
func (t *Tracer) Run(ctx context.Context, subject string, h nats.Header, ev *event.Event, replica string) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	return t.start(ctx, "process "+subject, trace.SpanKindConsumer, Extract(h), ev, []attribute.KeyValue{
		semconv.MessagingSystemKey.String(System),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(subject),
		semconv.MessagingMessageID(event.IDString(ev.ID)),
		AttrEventType.String(ev.Type),
		AttrAttempt.Int64(ev.Attempts + 1),
		AttrReplica.String(replica),
	})
}

// Archive starts the archiver's span of moving ev, whose dead letter of
// subject has headers h, into the errors collection.
func (t *Tracer) Archive(ctx context.Context, subject string, h nats.Header, ev *event.Event) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	return t.start(ctx, "archive "+subject, trace.SpanKindConsumer, Extract(h), ev, []attribute.KeyValue{
		semconv.MessagingSystemKey.String(System),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("archive"),
		semconv.MessagingDestinationName(subject),
		semconv.MessagingMessageID(event.IDString(ev.ID)),
		AttrEventType.String(ev.Type),
	})
}

// Action starts the span of an operator's action (retry, cancel,
// redrive) on the event id, a child of ctx's span if any. Its ids go into
// the action's history entry: the event's next run links to it.
func (t *Tracer) Action(ctx context.Context, action string, id bson.RawValue, by string) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, action+" "+System, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		semconv.MessagingSystemKey.String(System),
		semconv.MessagingMessageID(event.IDString(id)),
		AttrAction.String(action),
		AttrOperator.String(by),
	))
	return ctx, Span{s}
}

// start starts a span about ev: a child of parent when it is valid; else
// of the application's span on the event's first delivery; else the root
// of a new trace. Any but the first delivery links to the application's
// span and to the event's first and latest traced runs or actions.
func (t *Tracer) start(ctx context.Context, name string, kind trace.SpanKind, parent trace.SpanContext, ev *event.Event, attrs []attribute.KeyValue) (context.Context, Span) {
	origin, invalid := Origin(ev)
	first := FirstDelivery(ev)
	opts := make([]trace.SpanStartOption, 0, 4)
	switch {
	case parent.IsValid():
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	case first && origin.IsValid():
		ctx = trace.ContextWithRemoteSpanContext(ctx, origin)
	default:
		opts = append(opts, trace.WithNewRoot())
	}
	if !first {
		opts = append(opts, trace.WithLinks(Links(ev, origin)...))
	}
	if invalid != "" {
		attrs = append(attrs, AttrInvalidContext.String(invalid))
	}
	opts = append(opts, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	ctx, s := t.tracer.Start(ctx, name, opts...)
	return ctx, Span{s}
}
