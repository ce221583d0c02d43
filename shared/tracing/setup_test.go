package tracing

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// Tracing is off unless an exporter is configured, and off costs nothing:
// Setup returns a nil *Tracer.
func TestSetupOff(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		{},
		{EnvExporter: "none"},
		{EnvExporter: " none "},
		{EnvSampler: "always_on"}, // a sampler alone exports nothing
		{EnvSDKDisabled: "true", EnvExporter: "otlp", EnvEndpoint: "http://127.0.0.1:1"},
	} {
		tr, shutdown, err := Setup(context.Background(), Config{Getenv: env(vars)})
		require.NoError(t, err, "%v", vars)
		require.Nil(t, tr, "%v", vars)
		require.Equal(t, "off", tr.String())
		require.NoError(t, shutdown(context.Background()))
	}
}

// A bad variable stops the start with an error that names it.
func TestSetupErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"exporter", map[string]string{EnvExporter: "jaeger"}, `OTEL_TRACES_EXPORTER: unknown exporter "jaeger"`},
		{"protocol", map[string]string{EnvExporter: "otlp", EnvProtocol: "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL: unknown OTLP protocol "http/json"`},
		{"traces protocol", map[string]string{EnvExporter: "otlp", EnvTracesProtocol: "udp"}, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unknown OTLP protocol "udp"`},
		{"sampler", map[string]string{EnvExporter: "console", EnvSampler: "sometimes"}, `OTEL_TRACES_SAMPLER: unknown sampler "sometimes"`},
		{"ratio", map[string]string{EnvExporter: "console", EnvSampler: "traceidratio", EnvSamplerArg: "1.5"}, `OTEL_TRACES_SAMPLER_ARG: "1.5" is not a ratio from 0 to 1`},
		{"ratio NaN", map[string]string{EnvExporter: "console", EnvSampler: "parentbased_traceidratio", EnvSamplerArg: "NaN"}, `OTEL_TRACES_SAMPLER_ARG`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, _, err := Setup(context.Background(), Config{Getenv: env(tt.vars)})
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, tr)
		})
	}
	_, _, err := Setup(context.Background(), Config{Exporter: "zipkin", Getenv: env(nil)})
	require.ErrorContains(t, err, `unknown exporter "zipkin"`)
}

// The console exporter prints each span as it ends.
func TestSetupConsole(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	tr, shutdown, err := Setup(context.Background(), Config{ServiceName: "retrigger-test", Exporter: "console", Console: &out,
		Getenv: env(map[string]string{EnvSampler: "always_on"})})
	require.NoError(t, err)
	require.Equal(t, "console", tr.String())
	_, s := tr.Run(context.Background(), subject, nil, parse(t), "r1")
	s.End(nil)
	require.NoError(t, shutdown(context.Background()))
	require.Contains(t, out.String(), `"Name":"process retrigger.events.email"`)
	require.Contains(t, out.String(), `"Value":"retrigger-test"`)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// receiver is an OTLP trace receiver served in-process with the official
// generated code of the OTLP protocol, over gRPC and HTTP: what the
// exporters send arrives as a real collector would receive it.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	attrs map[string]string // resource attributes
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			r.attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// ServeHTTP is OTLP/HTTP with protobuf bodies, on /v1/traces.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want a POST of application/x-protobuf to /v1/traces", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var er collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &er); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, _ := r.Export(req.Context(), &er)
	b, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

func (r *receiver) received() ([]*tracepb.Span, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	attrs := map[string]string{}
	for k, v := range r.attrs {
		attrs[k] = v
	}
	return append([]*tracepb.Span(nil), r.spans...), attrs
}

// End to end with a real OTLP receiver, over gRPC and HTTP: Setup reads
// the standard variables, and an event's spans arrive with their
// attributes, parent, links and the resource's service name. (Not
// parallel: the exporters read the process's environment.)
func TestOTLPReceivesSpans(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			recv := &receiver{attrs: map[string]string{}}
			var endpoint string
			if protocol == "grpc" {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				srv := grpc.NewServer()
				collectortrace.RegisterTraceServiceServer(srv, recv)
				go func() { _ = srv.Serve(lis) }()
				t.Cleanup(srv.Stop)
				endpoint = "http://" + lis.Addr().String()
			} else {
				srv := httptest.NewServer(recv)
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			vars := map[string]string{
				EnvEndpoint: endpoint, // implies the otlp exporter
				EnvProtocol: protocol,
				EnvSampler:  "parentbased_traceidratio", EnvSamplerArg: "1.0",
				"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
			}
			for k, v := range vars {
				t.Setenv(k, v)
			}
			tr, shutdown, err := Setup(context.Background(), Config{ServiceName: "retrigger-consumer"})
			require.NoError(t, err)
			require.Equal(t, "otlp ("+protocol+") to "+endpoint, tr.String())

			ev := parse(t, bson.E{Key: event.FieldTraceParent, Value: appParent})
			msg := messaging.NewMsg(subject, "order-1@c1", ev.ID, 0, nil)
			pub := tr.Publish(ev, msg)
			_, run := tr.Run(context.Background(), subject, msg.Header, ev, "r1")
			run.Outcome("failed")
			run.End(io.ErrUnexpectedEOF)
			pub.End(nil)
			tid, sid := run.IDs()
			ev.Attempts, ev.History = 1, []event.Attempt{{Outcome: "failed", Number: 1, TraceID: tid, SpanID: sid}}
			_, retry := tr.Run(context.Background(), subject, nil, ev, "r2")
			retry.End(nil)

			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, shutdown(sctx), "flushing to the receiver")
			spans, res := recv.received()
			require.Len(t, spans, 3)
			require.Equal(t, "retrigger-consumer", res["service.name"])
			require.Equal(t, "test", res["deployment.environment.name"])
			byName := map[string][]*tracepb.Span{}
			for _, s := range spans {
				byName[s.GetName()] = append(byName[s.GetName()], s)
			}
			send := byName["send "+subject][0]
			require.Equal(t, appSpan, hexOf(send.GetParentSpanId()))
			require.Equal(t, appTrace, hexOf(send.GetTraceId()))
			require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, send.GetKind())
			runs := byName["process "+subject]
			require.Len(t, runs, 2)
			require.Equal(t, send.GetSpanId(), runs[0].GetParentSpanId())
			require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, runs[0].GetStatus().GetCode())
			require.Empty(t, runs[1].GetParentSpanId(), "the retry is a new trace")
			require.Len(t, runs[1].GetLinks(), 2)
			require.Equal(t, appSpan, hexOf(runs[1].GetLinks()[0].GetSpanId()))
			require.Equal(t, sid, hexOf(runs[1].GetLinks()[1].GetSpanId()))
			var system string
			for _, kv := range runs[1].GetAttributes() {
				if kv.GetKey() == "messaging.system" {
					system = kv.GetValue().GetStringValue()
				}
			}
			require.Equal(t, "retrigger", system)
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
