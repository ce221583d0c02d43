package handlers

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retrigger/retrigger/shared/tracing"
)

// The request carries the run's span as W3C traceparent (and its
// tracestate), so the partner's own spans join the run's trace; without
// a span, none.
func TestHTTPSendsTheRunsTraceparent(t *testing.T) {
	t.Parallel()
	b := setup(t, HTTPConfig{Headers: map[string]string{"traceparent": "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"}}, respondWith(http.StatusOK, ""))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ev := testEvent(t)
	ctx, run := tracing.New(tp).Run(context.Background(), "retrigger.events.order.created", nil, ev, "r1")
	require.NoError(t, b.handler(ctx, ev))
	run.End(nil)
	sc := rec.Ended()[0].SpanContext()
	got := <-b.requests
	require.Equal(t, []string{"00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"}, got.header.Values("Traceparent"),
		"the run's context, replacing a configured header of the same name")

	require.NoError(t, b.handler(context.Background(), ev))
	got = <-b.requests
	require.Equal(t, []string{"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"}, got.header.Values("Traceparent"), "no span: the request is as configured")
}
