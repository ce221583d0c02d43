package event

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The application's trace context is read leniently: a field of the wrong
// type never fails the event, and says why it was not read.
func TestParseTraceContext(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name          string
		fields        bson.D
		parent, state string
		wantErr       string
	}{
		{"none", nil, "", "", ""},
		{"both", bson.D{{Key: FieldTraceParent, Value: tp}, {Key: FieldTraceState, Value: "congo=t61rcWkgMzE"}}, tp, "congo=t61rcWkgMzE", ""},
		{"any string is read as given", bson.D{{Key: FieldTraceParent, Value: "not-a-traceparent"}}, "not-a-traceparent", "", ""},
		{"null reads as missing", bson.D{{Key: FieldTraceParent, Value: nil}}, "", "", ""},
		{"a number", bson.D{{Key: FieldTraceParent, Value: 7}}, "", "", "traceparent must be a string, not int"},
		{"a document", bson.D{{Key: FieldTraceParent, Value: bson.D{{Key: "traceparent", Value: tp}}}}, "", "", "traceparent must be a string, not object"},
		{"binary", bson.D{{Key: FieldTraceParent, Value: bson.Binary{Data: []byte{1}}}}, "", "", "traceparent must be a string, not binary"},
		{"tracestate an array", bson.D{{Key: FieldTraceParent, Value: tp}, {Key: FieldTraceState, Value: bson.A{"x"}}}, tp, "", "tracestate must be a string, not array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := append(bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "email"}}, tt.fields...)
			ev, err := Parse(raw(t, doc))
			require.NoError(t, err, "a trace context never fails an event")
			require.Equal(t, tt.parent, ev.TraceParent)
			require.Equal(t, tt.state, ev.TraceState)
			require.Equal(t, tt.wantErr, ev.TraceContextError)
		})
	}
}

// A history entry's trace and span ids are read back.
func TestParseHistoryTrace(t *testing.T) {
	t.Parallel()
	ev, err := Parse(raw(t, bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "email"}, {Key: FieldRetrigger, Value: bson.D{{Key: "history", Value: bson.A{
		bson.D{{Key: HistoryOutcome, Value: "failed"}, {Key: HistoryTraceID, Value: "4bf92f3577b34da6a3ce929d0e0e4736"}, {Key: HistorySpanID, Value: "00f067aa0ba902b7"}},
		bson.D{{Key: HistoryOutcome, Value: "success"}, {Key: HistoryTraceID, Value: 5}},
	}}}}}))
	require.NoError(t, err)
	require.Len(t, ev.History, 2)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", ev.History[0].TraceID)
	require.Equal(t, "00f067aa0ba902b7", ev.History[0].SpanID)
	require.Empty(t, ev.History[1].TraceID, "a trace id of the wrong type reads as none")
}
