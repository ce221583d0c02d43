// Command loadgen floods retrigger with events and reports how it kept up:
// throughput, latency percentiles, retry lateness, outcomes, peak RSS, and
// the invariants (none lost, none double-counted, none left non-terminal).
// By default it runs the whole pipeline in this process on the embedded
// engine; with -mongodb-uri and -nats-url it loads an external deployment.
// Its flow modes (-outage, -keys, -rate-limit, -breaker) drive flow
// control and report what the handler saw of it. It exits 1 when an
// invariant fails, a flow promise was seen broken or the run could not be
// done, 2 on a bad flag. See docs/PERFORMANCE.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/retrigger/retrigger/scripts/loadtest"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/logging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/tracing"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// helpSummary is the first line of -help.
const helpSummary = "floods retrigger with events, waits until each is terminal, and reports throughput, latency and whether any was lost or double-counted. " +
	"Needs nothing else (it runs the pipeline in this process), or an external deployment with -mongodb-uri and -nats-url."

// stopSignals end a run early: the first drains and reports, a second one
// quits at once. Both remove the run's files.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

type settings struct {
	o                                       loadtest.Options
	json, quiet, cost                       bool
	cpuProfile, ceilingProfile, heapProfile string
	logLevel, traces                        string
	tmpBase                                 string // where the run's temporary directory goes; "" is os.TempDir
}

func (s *settings) register(fs *flag.FlagSet) {
	o := &s.o
	fs.IntVar(&o.Count, "count", 10000, "events to insert (1 to 2000000)")
	fs.Float64Var(&o.Rate, "rate", 0, "events inserted per second (a finite number, not negative; 0: as fast as possible)")
	fs.IntVar(&o.Inserters, "inserters", 1, "goroutines inserting at once when -rate is 0 (1 to 64)")
	fs.Float64Var(&o.FailureRate, "failure-rate", 0, "share of handler runs that fail, 0 to 1")
	fs.Int64Var(&o.FailFirst, "fail-first", 0, "fail every event's first N runs and no other (not with -failure-rate): 1 retries each once, -max-attempts or more archives each")
	fs.Int64Var(&o.MaxAttempts, "max-attempts", 3, "failed runs before an event is archived into errors (at least 1)")
	fs.IntVar(&o.PayloadSize, "payload-size", 256, "bytes of filler in each event's payload (not negative)")
	fs.DurationVar(&o.HandlerLatency, "handler-latency", 0, "how long each handler run works (not negative)")
	fs.IntVar(&o.Replicas, "replicas", 2, "consumer replicas (1 to 64)")
	fs.IntVar(&o.Concurrency, "concurrency", 16, "handlers running at once in each replica (at least 1)")
	fs.DurationVar(&o.RetryInitial, "retry-initial", loadtestDefault.RetryInitial, "delay after the first failure; doubles after each further one (positive)")
	fs.DurationVar(&o.RetryMax, "retry-max", loadtestDefault.RetryMax, "longest delay between attempts (at least -retry-initial)")
	fs.StringVar(&o.Policy, "policy", loadtest.PolicyLoad, fmt.Sprintf("retry policy: load (fast, for a flood: -retry-initial, -retry-max, -max-attempts) or stock (the consumer's defaults: %s doubling to %s, %d attempts; not with those three flags)",
		short(retry.DefaultInitialInterval), short(retry.DefaultMaxInterval), retry.DefaultMaxAttempts))
	fs.DurationVar(&o.Timeout, "timeout", loadtestDefault.Timeout, "bound on inserting and waiting for every event to be terminal (positive)")
	fs.StringVar(&o.Type, "type", "loadtest", "event type inserted and handled (an event type: printable ASCII without '.', '*', '>' or spaces)")
	fs.DurationVar(&o.Outage, "outage", 0, "flow: the handler's partner is down (every call fails with a retryable error, as a 503) for this long from the first insert, then answers; reports the calls it got, the breaker's trip and the time from recovery to drained (not negative; 0: no outage)")
	fs.IntVar(&o.Keys, "keys", 0, "flow: event i carries payload key i%N (payload.k), which the workers limit per -key-mode; reports the runs per key at once and the successes out of insertion order (0 to 1000000; 0: no keys)")
	fs.StringVar(&o.KeyMode, "key-mode", "", "flow, with -keys: ordered (the default: one run at a time per key, in insertion order) or concurrency:C (at most C runs of one key at once)")
	fs.StringVar(&o.RateLimit, "rate-limit", "", "flow: how often runs of the type start, across the replicas, as -rate-limits takes a type's rate: 50/s, 300/m, 5/s,burst=10; reports the rate the handler saw and the most starts in any one second")
	fs.StringVar(&o.Breaker, "breaker", "on", "flow: every type's circuit breaker in the workers: on (the stock breaker), off, or knobs as the consumer's -breaker takes them, e.g. 'min-runs=10,failure-ratio=90%'")
	fs.IntVar(&o.BackoffFlood, "backoff-flood", 0, "keep this many events of another type (TYPE-backoff) in a one-hour backoff during the load, and report how soon the others start (not negative)")
	fs.StringVar(&o.Storage, "storage", loadtest.StorageMemory, "embedded engine: memory, or file (durable: a journal on disk, as scripts/dev uses)")
	fs.DurationVar(&o.SyncInterval, "sync-interval", pipeline.LocalSyncInterval, "file storage: how long a write may wait for the journal's sync, as scripts/dev -sync-interval (0: each write synced before it returns)")
	fs.DurationVar(&o.Retention, "retention", loadtestDefault.Retention, "embedded: delete succeeded events this long after success, keeping the engine's live set small (not negative; 0 keeps them)")
	fs.DurationVar(&o.SweepInterval, "sweep-interval", loadtestDefault.SweepInterval, "embedded: time between the producer's sweeps, which apply the retention (not negative)")
	fs.BoolVar(&o.Ceiling, "ceiling", false, "embedded: afterwards, measure the engine alone on the same writes, for the ratio")
	fs.IntVar(&o.CeilingUpdaters, "ceiling-updaters", 2, "goroutines writing transitions in the ceiling run (at least 1)")
	fs.StringVar(&o.MongoURI, "mongodb-uri", "", "external mode: MongoDB replica set of the deployment (with -nats-url); shown with its credentials masked")
	fs.StringVar(&o.Database, "mongodb-database", "retrigger_loadtest", "external mode: database of the events and errors collections")
	fs.StringVar(&o.NATSURL, "nats-url", "", "external mode: NATS of the deployment (with -mongodb-uri); shown with its credentials masked")
	fs.StringVar(&o.Names.StreamPrefix, "stream-prefix", "RETRIGGER", "prefix of the JetStream stream and consumer names (no '.', '*', '>', '/', '\\' or spaces)")
	fs.StringVar(&o.Names.SubjectPrefix, "subject-prefix", "retrigger", "prefix of the NATS subjects: '.'-separated tokens, none empty, without '*', '>' or spaces")
	fs.DurationVar(&o.ProgressEvery, "progress-every", loadtestDefault.ProgressEvery, "how often the progress line updates (not negative)")
	fs.BoolVar(&s.cost, "cost", false, "embedded: run the load three times (CPU profile, every allocation recorded, round trips counted) and print the CPU and allocations per event by part (producer, worker, archiver, storage engine, NATS client, nats-server, handler) and the round trips per event: commands per component, change events the relay reads and the documents MongoDB looks up for them, NATS messages")
	fs.BoolVar(&s.json, "json", false, "print the results as one JSON object")
	fs.BoolVar(&s.quiet, "quiet", false, "no progress line")
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the load phase to this file")
	fs.StringVar(&s.ceilingProfile, "ceiling-cpuprofile", "", "write a CPU profile of the ceiling run to this file")
	fs.StringVar(&s.heapProfile, "memprofile", "", "write a heap profile taken at the end of the load phase to this file")
	fs.StringVar(&s.traces, "traces", "off", "embedded: trace the pipeline with OpenTelemetry: off; drop (every span made, sampler 1.0, and batched to an exporter that drops it: what tracing costs without the export); otlp or console (as the OTEL_* variables say, console on stdout)")
	fs.StringVar(&s.logLevel, "log-level", "warn", "level of the components' logs on stderr: trace, debug, info, warn, error")
}

// short writes d without its zero units: 10m, not 10m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// loadtestDefault holds the library defaults the flags show.
var loadtestDefault = loadtest.Defaults()

// run runs the command with args and the environment getenv, and returns
// its exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runIn(context.Background(), "", args, getenv, stdout, stderr)
}

// runIn is run under ctx, with the run's temporary directory in tmpBase
// ("": os.TempDir).
func runIn(ctx context.Context, tmpBase string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	s := settings{tmpBase: tmpBase}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.register(fs)
	if err := config.ParseCommand(fs, helpSummary, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	if s.o.Policy == loadtest.PolicyStock {
		// The stock policy sets these; a flag given for one is an error.
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for _, k := range []struct {
			name string
			zero func()
		}{
			{"max-attempts", func() { s.o.MaxAttempts = 0 }},
			{"retry-initial", func() { s.o.RetryInitial = 0 }},
			{"retry-max", func() { s.o.RetryMax = 0 }},
		} {
			if given[k.name] {
				fmt.Fprintf(stderr, "loadgen: %v\n", config.Invalid(k.name, "cannot be used with -policy stock, which sets it to the consumer's default"))
				return 2
			}
			k.zero()
		}
	}
	if s.o.Retention < 0 {
		fmt.Fprintf(stderr, "loadgen: %v\n", config.Invalid("retention", "must not be negative, got %s", s.o.Retention))
		return 2
	}
	if s.o.Retention == 0 {
		s.o.Retention = -1 // the library's zero means its default
	}
	if err := s.o.Validate(); err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	tr, stopTracing, err := s.tracing(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", config.Invalid("traces", "%v", err))
		return 2
	}
	defer func() { _ = stopTracing(context.WithoutCancel(ctx)) }()
	s.o.Tracing = tr
	log, err := logging.New(stderr, s.logLevel, logging.FormatConsole)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", config.Invalid("log-level", "%v", err))
		return 2
	}
	s.o.Logger = log
	if s.heapProfile != "" {
		runtime.MemProfileRate = 64 << 10 // finer than the default 512 KiB, for a per-component split
	}
	for _, p := range []struct {
		path string
		w    *io.Writer
	}{{s.cpuProfile, &s.o.CPUProfile}, {s.ceilingProfile, &s.o.CeilingCPUProfile}, {s.heapProfile, &s.o.HeapProfile}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		defer f.Close()
		*p.w = f
	}
	if !s.quiet {
		s.o.Progress = progressPrinter(stderr)
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	return s.load(ctx, stop, stdout, stderr)
}

// load runs the load test, with the in-process pipeline's files in a
// temporary directory that it removes on every way out it controls: a
// return, a panic in this goroutine, a first stop signal (which drains and
// reports) and a second one (which quits at once).
func (s *settings) load(ctx context.Context, stop context.CancelFunc, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp(s.tmpBase, "retrigger-loadgen-")
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: creating a temporary directory: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s.o.Dir = dir
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stopSignals...)
	done := make(chan struct{})
	defer func() { signal.Stop(sigs); close(done) }()
	go func() {
		select {
		case <-sigs:
			stop()
		case <-done:
			return
		}
		fmt.Fprintln(stderr, "loadgen: stopping and checking what ran; interrupt again to quit at once")
		select {
		case <-sigs:
			_ = os.RemoveAll(dir)
			fmt.Fprintln(stderr, "loadgen: interrupted twice; quitting without a report")
			os.Exit(130)
		case <-done:
		}
	}()
	if s.cost {
		return s.costs(ctx, stdout, stderr)
	}
	if !s.json {
		printHeader(stdout, s.o)
	}
	res, runErr := loadtest.Run(ctx, s.o)
	if s.json {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(jsonResult{Result: res, Error: errString(runErr)}); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
	} else if runErr == nil || res.Inserted > 0 {
		printResult(stdout, res)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", runErr)
		return 1
	}
	if !res.Invariants.OK || (res.Flow != nil && len(res.Flow.Broken) > 0) {
		return 1
	}
	return 0
}

// tracing is the pipeline's tracer for -traces.
func (s *settings) tracing(ctx context.Context) (*tracing.Tracer, func(context.Context) error, error) {
	switch s.traces {
	case "off":
		return nil, func(context.Context) error { return nil }, nil
	case "drop":
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		return tracing.New(tp), tp.Shutdown, nil
	case "otlp", "console":
		return tracing.Setup(ctx, tracing.Config{ServiceName: "retrigger-loadgen", Exporter: s.traces})
	}
	return nil, nil, fmt.Errorf("must be off, drop, otlp or console, got %q", s.traces)
}

type jsonResult struct {
	loadtest.Result
	Error string `json:"error,omitempty"`
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// costs runs loadtest.Cost and prints its table (or its JSON).
func (s *settings) costs(ctx context.Context, stdout, stderr io.Writer) int {
	res, err := loadtest.Cost(ctx, s.o)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	if s.json {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "cost per event: %d events, each failing its first %d runs, %d replicas (%.0f events/s in the CPU run)\n",
		res.Events, res.FailFirst, s.o.Replicas, res.Load.Throughput)
	fmt.Fprintf(stdout, "%-48s %12s %12s %12s\n", "part", "CPU µs", "allocs", "bytes")
	for _, p := range append(res.Parts, res.Own) {
		fmt.Fprintf(stdout, "%-48s %12.1f %12.1f %12.0f\n", p.Part, p.CPUMicros, p.Allocs, p.Bytes)
	}
	if rt := res.RoundTrips; rt != nil {
		fmt.Fprintf(stdout, "\nround trips per event (a third run, counted; periodic work included):\n")
		for _, c := range []string{"worker", "producer", "archiver"} {
			ops := make([]string, 0, len(rt.Commands[c]))
			for op := range rt.Commands[c] {
				ops = append(ops, op)
			}
			sort.Strings(ops)
			line := make([]string, len(ops))
			for i, op := range ops {
				line[i] = fmt.Sprintf("%s %.2f", op, rt.Commands[c][op])
			}
			fmt.Fprintf(stdout, "  %-9s %5.2f commands: %s\n", c, rt.Total[c], strings.Join(line, ", "))
		}
		fmt.Fprintf(stdout, "  relay     %5.2f change events read, %.2f documents MongoDB looks up for them (updateLookup)\n", rt.Changes, rt.Lookups)
		fmt.Fprintf(stdout, "  NATS      %5.2f messages stored, %.2f delivered, %.2f acknowledged\n", rt.Stored, rt.Delivered, rt.Acked)
	}
	return 0
}
