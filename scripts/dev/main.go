// Command dev runs the whole retrigger pipeline in one process on the
// embedded defaults: an in-process nats-server with JetStream on
// 127.0.0.1:4222, the embedded storage engine under ./data, the producer,
// consumer replicas and the archiver, and a demo that inserts an event every
// few seconds for a handler that fails at random. It prints a compact
// summary every few seconds. Ctrl-C drains and exits; a second start on the
// same data directory resumes where the first left off.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/logging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "dev: %v\n", err)
		os.Exit(1)
	}
}

// summary is the first line of -help.
const summary = "runs the whole retrigger pipeline in this process for a local try: an embedded NATS server, the embedded storage engine, " +
	"the producer, consumer replicas, the archiver and a demo event generator. Needs nothing else."

func run(args []string) error {
	o, err := parse(args, nil)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return demo(ctx, o, log)
}

// parse reads the flags and RETRIGGER_* variables (getenv nil: the
// process's), applies the layout and validates.
func parse(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	o.register(fs)
	if err := config.ParseCommand(fs, summary, args, getenv); err != nil {
		return o, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := o.applyLayout(given); err != nil {
		return o, err
	}
	return o, o.validate()
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.layout, "layout", layoutDefault, "data layout: default (typed events in retrigger.events), or seed: the hand-built trigger example's Retries.Events and Retries.Error, counter count, no type, an insert every 2m, its even-number function and Attempts = 3 (flags given still override)")
	fs.StringVar(&o.database, "mongodb-database", "retrigger", "database of the events in the embedded engine (seed layout: Retries)")
	o.store.RegisterFlags(fs)
	fs.StringVar(&o.dataDir, "data-dir", "./data", "directory of the events (unless -memory) and the NATS store; a restart resumes from it (created if missing; not a file)")
	fs.BoolVar(&o.memory, "memory", false, "keep the events in memory instead of -data-dir: nothing survives a stop or a crash")
	fs.DurationVar(&o.syncInterval, "sync-interval", pipeline.LocalSyncInterval, "how long a write to -data-dir may wait to be synced to disk: a crash of this process loses none, an operating system crash or power cut those of the last interval (0: each write synced before it counts; slower: docs/PERFORMANCE.md)")
	fs.StringVar(&o.natsHost, "nats-host", "127.0.0.1", "address of the embedded nats-server: an address of this machine (it has no authentication: keep it on loopback)")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "port of the embedded nats-server, 1 to 65535")
	fs.IntVar(&o.replicas, "replicas", 2, "consumer replicas (at least 1)")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "how often the demo inserts an event (0: never; not negative; seed layout: 2m)")
	fs.Float64Var(&o.failureRate, "failure-rate", 0.5, "share of handler runs that fail, 0 to 1 (default layout: the seed layout runs the example's even-number function)")
	fs.DurationVar(&o.latency, "latency", 20*time.Millisecond, "how long the demo handler works (not negative)")
	fs.IntVar(&o.maxAttempts, "max-attempts", 3, "failed runs before an event is archived into errors (at least 1; seed layout: 4, the example's Attempts = 3)")
	fs.DurationVar(&o.retryInitial, "retry-initial", 2*time.Second, "delay after the first failure; doubles after each further one (positive)")
	fs.DurationVar(&o.summaryEvery, "summary-every", 5*time.Second, "how often the live summary prints (positive)")
	fs.DurationVar(&o.retention, "retention", 10*time.Minute, "delete succeeded events this long after success, keeping the embedded engine small (0 keeps them; not negative)")
	fs.StringVar(&o.traces, "traces", "", "where OpenTelemetry spans go: console (printed on standard output), otlp (to OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318 over HTTP; OTEL_EXPORTER_OTLP_PROTOCOL=grpc for gRPC), none; empty: as the OTEL_* variables say (off without them)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level: trace, debug (every transition), info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", logging.FormatAuto, "log format: auto, json, console")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "address serving the web view at /, /metrics, /healthz, /readyz and the admin API of `retrigger -server` (empty: none)")
	o.flowFlags.Register(fs)
	fs.BoolVar(&o.allowWrites, "allow-writes", true, "offer the web view's actions (retry, cancel, redrive, purge): on by default in the local run, whose admin API on the same address changes data too")
}

type options struct {
	layout, database, traces               string
	store                                  eventstore.Options
	dataDir, natsHost, logLevel, logFormat string
	httpAddr                               string
	memory, allowWrites                    bool
	natsPort, replicas, maxAttempts        int
	interval, latency, retryInitial        time.Duration
	syncInterval                           time.Duration
	summaryEvery, retention                time.Duration
	failureRate                            float64
	flowFlags                              flow.Flags  // -breaker, -rate-limits, -keys, as the consumer takes them
	flow                                   flow.Config // what they say, read by validate
}

// The layouts: retrigger's own, and the hand-built trigger mechanism's
// example project (see README, "Coming from a hand-built trigger").
const (
	layoutDefault = "default"
	layoutSeed    = "seed"
)

// seedAttempts is the example's Attempts setting: it archives an event
// once count exceeds it, after Attempts+1 failed runs.
const seedAttempts = 3

// applyLayout sets the seed layout's values of the flags not given.
func (o *options) applyLayout(given map[string]bool) error {
	switch o.layout {
	case layoutDefault:
		return nil
	case layoutSeed:
	default:
		return config.Invalid("layout", "must be default or seed, got %q", o.layout)
	}
	if given["failure-rate"] {
		return config.Invalid("failure-rate", "the seed layout runs the example's function (an even number from 1 to 10 succeeds): drop -failure-rate, or use -layout default")
	}
	for name, set := range map[string]func(){
		"mongodb-database":  func() { o.database = "Retries" },
		"events-collection": func() { o.store.Events = "Events" },
		"errors-collection": func() { o.store.Errors = "Error" },
		"attempts-field":    func() { o.store.Schema.AttemptsField = "count" },
		"default-type":      func() { o.store.Schema.DefaultType = seedType },
		"interval":          func() { o.interval = 2 * time.Minute },
		"max-attempts":      func() { o.maxAttempts = seedAttempts + 1 },
	} {
		if !given[name] {
			set()
		}
	}
	return nil
}

func (o *options) validate() error {
	if err := o.store.Validate(); err != nil {
		return config.ForFlags(err)
	}
	if err := config.DatabaseName(o.database); err != nil {
		return config.Invalid("mongodb-database", "%v", err)
	}
	switch {
	case o.dataDir == "":
		return config.Invalid("data-dir", "must not be empty")
	case o.natsPort < 1 || o.natsPort > 65535:
		return config.Invalid("nats-port", "must be a port number, got %d", o.natsPort)
	case o.replicas < 1:
		return config.Invalid("replicas", "must be at least 1, got %d", o.replicas)
	case o.interval < 0:
		return config.Invalid("interval", "must not be negative, got %s", o.interval)
	case !(o.failureRate >= 0 && o.failureRate <= 1): // NaN too
		return config.Invalid("failure-rate", "must be between 0 and 1, got %g", o.failureRate)
	case o.latency < 0:
		return config.Invalid("latency", "must not be negative, got %s", o.latency)
	case o.maxAttempts < 1:
		return config.Invalid("max-attempts", "must be at least 1, got %d", o.maxAttempts)
	case o.retryInitial <= 0:
		return config.Invalid("retry-initial", "must be positive, got %s", o.retryInitial)
	case o.summaryEvery <= 0:
		return config.Invalid("summary-every", "must be positive, got %s", o.summaryEvery)
	case o.retention < 0:
		return config.Invalid("retention", "must not be negative, got %s", o.retention)
	case o.syncInterval < 0:
		return config.Invalid("sync-interval", "must not be negative, got %s", o.syncInterval)
	case o.natsHost == "":
		return config.Invalid("nats-host", "must not be empty")
	case o.traces != "" && o.traces != "console" && o.traces != "otlp" && o.traces != "none":
		return config.Invalid("traces", "must be console, otlp or none, got %q", o.traces)
	}
	if st, err := os.Stat(o.dataDir); err == nil && !st.IsDir() {
		return config.Invalid("data-dir", "%s is a file: name a directory (it is created if missing)", o.dataDir)
	}
	var err error
	if o.flow, err = o.flowFlags.Config(); err != nil {
		return err
	}
	if err := o.flow.Validate(slices.Sorted(maps.Keys(o.handlers()))); err != nil {
		var fe *flow.Error
		if errors.As(err, &fe) {
			return config.Invalid(fe.Setting, "%v", err)
		}
		return err
	}
	return nil
}
