// Package tracing follows one event across retrigger's processes with
// OpenTelemetry: from the application's span that inserted it, through
// the producer's publish, each run of its handler, to the archive and the
// operators' actions.
//
// The application hands its context over in the event document itself,
// as the W3C traceparent and tracestate strings at the top level
// (event.FieldTraceParent, event.FieldTraceState). Every span about an
// event is shaped by the event alone, as awa does (its ADR-039, after the
// OpenTelemetry messaging conventions):
//
//   - the event's first delivery (no run in its history yet) belongs to the
//     application's trace: the publish span is a child of the
//     application's span, and the run a child of the publish (of the
//     application's span when the producer does not trace);
//   - everything later (each retry, the dead letter and its archive, each
//     run after a redrive) starts a new trace, linked to the application's
//     span ("origin"), to the event's first traced run or action ("first")
//     and to its latest one ("previous"). One trace does not last for the
//     days of a backoff, nor inherit a sampling decision made long ago.
//
// Each traced run or action writes its trace and span ids into the event's
// history entry, which is how later spans find it. A message carries the
// context of its publish span in its traceparent header (W3C, lower case),
// so that any NATS client can continue it; a run's span rides in the
// handler's ctx (Inject hands it to an HTTP request).
//
// A nil *Tracer is tracing off: every method returns at once and
// allocates nothing, so a process without an exporter pays nothing.
// Setup builds one from the standard OTEL_* environment variables.
package tracing
