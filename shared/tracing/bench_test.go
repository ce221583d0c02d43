package tracing

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

// Run: go test -run '^$' -bench Hooks -benchmem ./shared/tracing/

// BenchmarkHooks is what tracing adds to one event's first delivery: the
// publish's span and its header, the run's span from the header, its ids
// for the history, its outcome and end. Off is a nil *Tracer (no exporter
// configured); on is sampler 1.0 with the spans batched to an exporter
// that drops them (their export, encoding included, is not measured).
// One message is reused: the producer builds its own anyway, and the
// publish only sets its trace headers.
func BenchmarkHooks(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "email"},
		{Key: event.FieldTraceParent, Value: appParent}})
	if err != nil {
		b.Fatal(err)
	}
	ev, err := event.Parse(doc)
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		tr   *Tracer
	}{{"off", nil}, {"on", New(tp)}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			msg := messaging.NewMsg(subject, "id@c1", ev.ID, 0, nil)
			for b.Loop() {
				pub := bb.tr.Publish(&ev, msg)
				_, run := bb.tr.Run(ctx, subject, msg.Header, &ev, "r1")
				_, _ = run.IDs()
				run.Outcome("success")
				run.End(nil)
				pub.End(nil)
			}
		})
	}
}
