package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/retrigger/retrigger/shared/event"
)

// Names of the W3C trace context's fields, in documents and headers.
const (
	TraceParent = event.FieldTraceParent
	TraceState  = event.FieldTraceState
)

// Origin is the application's span that inserted ev: the span context of
// its traceparent and tracestate fields, read by OpenTelemetry's W3C
// propagator. When the event carries a context that cannot be used (a
// field of the wrong BSON type, a traceparent of the wrong length, not
// lower-case hex, an unknown version, all-zero ids), invalid says why and
// the span context is the zero one: the event runs all the same, in a new
// trace. An event without a traceparent has neither.
func Origin(ev *event.Event) (sc trace.SpanContext, invalid string) {
	if ev.TraceContextError != "" {
		return trace.SpanContext{}, ev.TraceContextError
	}
	if ev.TraceParent == "" {
		return trace.SpanContext{}, ""
	}
	// The carrier holds copies of the strings: ev itself does not escape,
	// so a caller's Event stays on its stack with tracing off.
	sc = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), fields{ev.TraceParent, ev.TraceState}))
	if !sc.IsValid() {
		return sc, fmt.Sprintf("traceparent %s is not a W3C trace context (version-traceid-spanid-flags in lower-case hex, the ids not all zeros)", quote(ev.TraceParent))
	}
	return sc, ""
}

// quote quotes s for a message, cut to 80 bytes.
func quote(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}

// fields reads an event's trace context fields as a propagation carrier.
type fields struct{ parent, state string }

func (f fields) Get(key string) string {
	switch key {
	case TraceParent:
		return f.parent
	case TraceState:
		return f.state
	}
	return ""
}

func (fields) Set(string, string) {}
func (fields) Keys() []string     { return []string{TraceParent, TraceState} }

// FirstDelivery reports whether ev is on its first way through: it never
// ran, was never archived, redriven or acted on. Its spans belong to the
// application's trace; any later span starts a trace of its own.
func FirstDelivery(ev *event.Event) bool {
	return len(ev.History) == 0 && ev.Attempts == 0 && ev.Redrives == 0
}

// Links are the links of a span about ev after its first delivery: to the
// application's span (origin), and to the first and the latest of the
// runs and actions its history names a sampled span of.
func Links(ev *event.Event, origin trace.SpanContext) []trace.Link {
	links := make([]trace.Link, 0, 3)
	if origin.IsValid() {
		links = append(links, trace.Link{SpanContext: origin, Attributes: linkOrigin})
	}
	var first, last trace.SpanContext
	for _, h := range ev.History {
		if sc := entrySpan(h); sc.IsValid() {
			if !first.IsValid() {
				first = sc
			}
			last = sc
		}
	}
	if first.IsValid() {
		links = append(links, trace.Link{SpanContext: first, Attributes: linkFirst})
	}
	if last.IsValid() && !last.Equal(first) {
		links = append(links, trace.Link{SpanContext: last, Attributes: linkPrevious})
	}
	return links
}

var (
	linkOrigin   = []attribute.KeyValue{AttrLink.String("origin")}
	linkFirst    = []attribute.KeyValue{AttrLink.String("first")}
	linkPrevious = []attribute.KeyValue{AttrLink.String("previous")}
)

// entrySpan is the span a history entry names; the zero one if none or
// malformed (the history is read leniently).
func entrySpan(h event.Attempt) trace.SpanContext {
	if h.TraceID == "" {
		return trace.SpanContext{}
	}
	tid, err := trace.TraceIDFromHex(h.TraceID)
	if err != nil {
		return trace.SpanContext{}
	}
	sid, err := trace.SpanIDFromHex(h.SpanID)
	if err != nil {
		return trace.SpanContext{}
	}
	// Only sampled spans are written into the history.
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

// Header is a NATS message's headers as a propagation carrier. NATS
// header names are case-sensitive: retrigger writes the W3C names in
// lower case, as the W3C header names, and reads the canonical MIME form
// (Traceparent) too.
type Header nats.Header

func (h Header) Get(key string) string {
	if v := nats.Header(h).Get(key); v != "" {
		return v
	}
	return nats.Header(h).Get(http.CanonicalHeaderKey(key))
}

func (h Header) Set(key, value string) { nats.Header(h).Set(key, value) }

func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Extract is the span context a message's headers carry; the zero one
// when they carry none or a malformed one.
func Extract(h nats.Header) trace.SpanContext {
	if len(h) == 0 {
		return trace.SpanContext{}
	}
	if h.Get(TraceParent) == "" && h.Get(http.CanonicalHeaderKey(TraceParent)) == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), Header(h)))
}

// Inject writes the context of ctx's span, if any, into an HTTP request's
// headers (traceparent, and tracestate when there is one): the receiver's
// spans join the run's trace. Without a span it writes nothing.
func Inject(ctx context.Context, h http.Header) {
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// LogHook adds trace_id and span_id to a log line whose context (zerolog's
// Event.Ctx) carries a span. Every component's logger has it, so a line
// about an event, given the run's ctx, names the run's span.
var LogHook zerolog.Hook = logHook{}

type logHook struct{}

func (logHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	if sc := trace.SpanContextFromContext(e.GetCtx()); sc.IsValid() {
		e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
	}
}
