package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/retrigger/retrigger/shared/version"
)

// The OpenTelemetry environment variables Setup reads itself; the OTLP
// exporters read the rest of OTEL_EXPORTER_OTLP_* (headers, timeout,
// certificates, compression, insecure), the batch span processor
// OTEL_BSP_*, and the resource OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES.
const (
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvExporter       = "OTEL_TRACES_EXPORTER"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvSampler        = "OTEL_TRACES_SAMPLER"
	EnvSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
)

// Config says how Setup builds a process's tracing; the OTEL_*
// environment variables say the rest.
type Config struct {
	// ServiceName is the resource's service.name unless OTEL_SERVICE_NAME
	// or OTEL_RESOURCE_ATTRIBUTES name one, e.g. "retrigger-consumer".
	ServiceName string
	// Exporter, when set, replaces OTEL_TRACES_EXPORTER (the local run's
	// -traces flag): otlp, console or none, or a comma-separated list.
	Exporter string
	// Console is where the console exporter writes. Default os.Stdout.
	Console io.Writer
	// Getenv reads the variables above. Default os.Getenv. (The exporters,
	// the batch processor and the resource read the process's own.)
	Getenv func(string) string
	// Global makes the provider and the W3C propagators OpenTelemetry's
	// global ones, so a handler's own instrumentation joins the run's
	// trace, and sends OpenTelemetry's internal errors (an exporter that
	// cannot reach its collector) to OnError.
	Global  bool
	OnError func(error)
}

// Setup builds the process's tracing from cfg and the environment. Tracing
// is on when an exporter is configured: OTEL_TRACES_EXPORTER (otlp,
// console; none is off), or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which implies otlp. Otherwise,
// or with OTEL_SDK_DISABLED=true, it is off: Setup returns a nil *Tracer
// and a shutdown that does nothing. OTLP goes over HTTP (http/protobuf,
// the default) or gRPC (grpc), by OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL. The sampler is OTEL_TRACES_SAMPLER with
// OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on). Its errors name
// the variable to fix. shutdown flushes the spans not yet exported.
func Setup(ctx context.Context, cfg Config) (t *Tracer, shutdown func(context.Context) error, err error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	noop := func(context.Context) error { return nil }
	if v := strings.TrimSpace(getenv(EnvSDKDisabled)); strings.EqualFold(v, "true") {
		return nil, noop, nil
	}
	names, err := exporterNames(cfg.Exporter, getenv)
	if err != nil || len(names) == 0 {
		return nil, noop, err
	}
	sampler, err := samplerFromEnv(getenv)
	if err != nil {
		return nil, noop, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(version.Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, noop, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES or OTEL_SERVICE_NAME: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sampler), sdktrace.WithResource(res)}
	var described []string
	for _, name := range names {
		switch name {
		case "console":
			w := cfg.Console
			if w == nil {
				w = os.Stdout
			}
			exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
			if err != nil {
				return nil, noop, fmt.Errorf("creating the console exporter: %w", err)
			}
			// Printed as each span ends: the console is for watching.
			opts = append(opts, sdktrace.WithSyncer(exp))
			described = append(described, "console")
		case "otlp":
			protocol := firstSet(getenv, EnvTracesProtocol, EnvProtocol)
			var exp sdktrace.SpanExporter
			switch protocol {
			case "", "http/protobuf":
				protocol = "http/protobuf"
				exp, err = otlptracehttp.New(ctx)
			case "grpc":
				exp, err = otlptracegrpc.New(ctx)
			default:
				return nil, noop, fmt.Errorf("%s: unknown OTLP protocol %q (want grpc or http/protobuf)", protocolVar(getenv), protocol)
			}
			if err != nil {
				return nil, noop, fmt.Errorf("creating the OTLP exporter (%s): %w", protocol, err)
			}
			opts = append(opts, sdktrace.WithBatcher(exp))
			endpoint := firstSet(getenv, EnvTracesEndpoint, EnvEndpoint)
			if endpoint == "" {
				endpoint = "the default endpoint"
			}
			described = append(described, fmt.Sprintf("otlp (%s) to %s", protocol, endpoint))
		}
	}
	tp := sdktrace.NewTracerProvider(opts...)
	if cfg.Global {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
		if cfg.OnError != nil {
			otel.SetErrorHandler(otel.ErrorHandlerFunc(cfg.OnError))
		}
	}
	t = New(tp)
	t.desc = strings.Join(described, ", ")
	return t, tp.Shutdown, nil
}

// String says where the spans go: "off", "console", "otlp (grpc) to ...".
func (t *Tracer) String() string {
	if t == nil {
		return "off"
	}
	if t.desc == "" {
		return "on"
	}
	return t.desc
}

// exporterNames are the exporters configured; none: tracing is off.
func exporterNames(override string, getenv func(string) string) ([]string, error) {
	v, from := override, "the exporter"
	if v == "" {
		v, from = getenv(EnvExporter), EnvExporter
	}
	if strings.TrimSpace(v) == "" {
		if firstSet(getenv, EnvTracesEndpoint, EnvEndpoint) != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var names []string
	for _, name := range strings.Split(v, ",") {
		switch name = strings.TrimSpace(name); name {
		case "none":
		case "otlp", "console":
			names = append(names, name)
		default:
			return nil, fmt.Errorf("%s: unknown exporter %q (want otlp, console or none)", from, name)
		}
	}
	return names, nil
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER names, as the SDK
// would read it, with errors that name the variable instead of a warning.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv(EnvSampler)))
	arg := strings.TrimSpace(getenv(EnvSamplerArg))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(r >= 0 && r <= 1) { // NaN too
			return 0, fmt.Errorf("%s: %q is not a ratio from 0 to 1", EnvSamplerArg, arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("%s: unknown sampler %q (want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", EnvSampler, name)
}

func firstSet(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

func protocolVar(getenv func(string) string) string {
	if strings.TrimSpace(getenv(EnvTracesProtocol)) != "" {
		return EnvTracesProtocol
	}
	return EnvProtocol
}
