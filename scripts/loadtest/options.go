package loadtest

import (
	"errors"
	"io"
	"math"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Retry policies of the load's type.
const (
	// PolicyLoad retries fast, for a flood: RetryInitial, doubling up to
	// RetryMax, MaxAttempts attempts (defaults 100ms, 1s, 3).
	PolicyLoad = "load"
	// PolicyStock is the consumer's stock policy (retry.DefaultPolicy):
	// what a deployment that sets nothing runs, e.g. through an outage.
	PolicyStock = "stock"
)

// Key modes of a run with keys (Options.KeyMode).
const (
	KeyOrdered = "ordered" // one run at a time per key, in insertion order
)

// Storage modes of the embedded engine.
const (
	StorageMemory = "memory" // the events live in memory (the load test's default)
	StorageFile   = "file"   // durable, a journal on disk, as `scripts/dev` uses (see SyncInterval)
)

// Options of a load test. The zero value of each field means its default;
// the flag of each field is in brackets.
type Options struct {
	// Count is how many events to insert [-count]. Default 10000.
	Count int
	// Rate inserts that many events per second [-rate]; 0 inserts as fast
	// as possible with Inserters goroutines.
	Rate float64
	// Inserters insert at once when Rate is 0 [-inserters]. Default 1.
	Inserters int
	// FailureRate is the share of handler runs that fail, 0 to 1
	// [-failure-rate].
	FailureRate float64
	// FailFirst fails every event's first FailFirst runs, and no other
	// [-fail-first]: a deterministic load (1: each event is retried once;
	// MaxAttempts or more: each is archived). Not with FailureRate.
	FailFirst int64
	// MaxAttempts is how many runs may fail before an event is archived
	// into errors [-max-attempts]. Default 3.
	MaxAttempts int64
	// PayloadSize is the size in bytes of the filler string in each event's
	// payload [-payload-size]. Default 256.
	PayloadSize int
	// HandlerLatency is how long each handler run works [-handler-latency].
	HandlerLatency time.Duration
	// Replicas is the number of consumer workers [-replicas]. Default 2.
	Replicas int
	// Concurrency bounds the handlers running at once in each replica
	// [-concurrency]. Default 16.
	Concurrency int
	// RetryInitial is the delay after the first failure, doubling after
	// each further one up to RetryMax [-retry-initial, -retry-max].
	// Defaults 100ms and 1s.
	RetryInitial, RetryMax time.Duration
	// Policy is the retry policy [-policy]: PolicyLoad (the default:
	// RetryInitial, RetryMax and MaxAttempts) or PolicyStock (the
	// consumer's defaults; those three then take its values and may not be
	// set otherwise).
	Policy string
	// Timeout bounds inserting and waiting for every event to be terminal
	// [-timeout]. Default 2m. Verification runs after it.
	Timeout time.Duration
	// Type is the event type the generator inserts and handles [-type].
	// Default "loadtest".
	Type string
	// BackoffFlood keeps that many events of another type (Type-backoff)
	// in a one-hour backoff during the load [-backoff-flood]: they fail
	// once before it starts. Then the start delay of the load's events,
	// and of new events of the flood's type, shows what waiting costs.
	BackoffFlood int

	// Flow control (docs/DESIGN.md, Flow control). Each mode adds what it
	// measured to Result.Flow.

	// Outage makes the handler's partner fail every call, with a plain
	// retryable error as a 503 would, for this long from the first insert
	// [-outage]; then it answers.
	Outage time.Duration
	// Keys gives event i the payload key i%Keys (payload.k) [-keys], which
	// the workers limit as KeyMode says [-key-mode]: KeyOrdered (the
	// default) or "concurrency:C" (at most C runs of one key at once).
	Keys    int
	KeyMode string
	// RateLimit limits how often runs of the load's type start, across
	// the replicas [-rate-limit], as flow.ParseRates reads a type's rate:
	// "50/s", "300/m", "5/s,burst=10".
	RateLimit string
	// Breaker is every type's breaker in the workers [-breaker]: "on"
	// (the default: the stock breaker), "off", or knobs as
	// flow.ParseBreaker reads them ("min-runs=10,failure-ratio=90%").
	Breaker string

	// Tracing traces the in-process pipeline's components [-traces]; nil:
	// off.
	Tracing *tracing.Tracer

	// Embedded mode (MongoURI empty).

	// Storage is StorageMemory or StorageFile [-storage]. Default memory.
	Storage string
	// SyncInterval is how long a StorageFile write may wait for its
	// journal's sync [-sync-interval]: 0 syncs each before it returns (see
	// embedded.Options.SyncInterval); the local run's is
	// pipeline.LocalSyncInterval.
	SyncInterval time.Duration
	// Retention deletes succeeded events this long after success
	// [-retention], so the engine's live set stays small; negative keeps
	// them. Default 1s.
	Retention time.Duration
	// SweepInterval is how often the producer sweeps and applies the
	// retention [-sweep-interval]. Default 1s.
	SweepInterval time.Duration
	// Ceiling also measures the embedded engine alone on the same write
	// pattern, after the pipeline [-ceiling].
	Ceiling bool
	// CeilingUpdaters apply the transitions in the ceiling run
	// [-ceiling-updaters]. Default 2.
	CeilingUpdaters int
	// Dir, when set, holds the files of the in-process pipeline and of the
	// ceiling run (the NATS store; the events with StorageFile), each in a
	// directory of its own made inside it; the caller removes Dir. Empty:
	// each takes a temporary directory that it removes when it closes.
	Dir string

	// External mode: set MongoURI and NATSURL.

	// MongoURI is the MongoDB replica set [-mongodb-uri].
	MongoURI string
	// Database holds the events and errors collections [-mongodb-database].
	// Default "retrigger_loadtest".
	Database string
	// NATSURL is the NATS server [-nats-url].
	NATSURL string
	// Names are the stream and subject prefixes [-stream-prefix,
	// -subject-prefix]. Default messaging.DefaultNames().
	Names messaging.Names

	// CPUProfile, when set, receives a CPU profile of the load phase
	// (pipeline start to the last terminal state); CeilingCPUProfile one of
	// the ceiling run.
	CPUProfile, CeilingCPUProfile io.Writer
	// HeapProfile, when set, receives a heap profile taken at the end of
	// the load phase, before anything is stopped; AllocsAtStart one taken
	// when the load phase starts (its allocation counts, subtracted from
	// the end's, are the load's).
	HeapProfile, AllocsAtStart io.Writer
	// RoundTrips (embedded) counts the load's round trips: the commands
	// each component sends to the storage, the change events the relay
	// reads and the lookups MongoDB would make for them, the NATS
	// messages stored, delivered and acknowledged (Result.RoundTrips).
	RoundTrips bool
	// Progress, when set, is called about every ProgressEvery (default 1s)
	// while the load runs, and once at its end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Logger receives the components' warnings.
	Logger zerolog.Logger

	// tamper, in tests, changes the stored events after the load and
	// before verification, so a test can see the checker fail.
	tamper func(t *target)
}

// External reports whether the options target an external deployment.
func (o Options) External() bool { return o.MongoURI != "" || o.NATSURL != "" }

func (o Options) withDefaults() Options {
	if o.Count == 0 {
		o.Count = 10000
	}
	if o.Inserters == 0 {
		o.Inserters = 1
	}
	if o.Policy == "" {
		o.Policy = PolicyLoad
	}
	if o.Policy == PolicyStock {
		stock := retry.DefaultPolicy()
		if o.MaxAttempts == 0 {
			o.MaxAttempts = stock.MaxAttempts
		}
		if o.RetryInitial == 0 {
			o.RetryInitial = stock.InitialInterval
		}
		if o.RetryMax == 0 {
			o.RetryMax = stock.MaxInterval
		}
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.PayloadSize == 0 {
		o.PayloadSize = 256
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.RetryInitial == 0 {
		o.RetryInitial = 100 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Type == "" {
		o.Type = "loadtest"
	}
	if o.Storage == "" {
		o.Storage = StorageMemory
	}
	if o.Retention == 0 {
		o.Retention = time.Second
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Second
	}
	if o.CeilingUpdaters == 0 {
		o.CeilingUpdaters = 2
	}
	if o.Keys > 0 && o.KeyMode == "" {
		o.KeyMode = KeyOrdered
	}
	if o.Breaker == "" {
		o.Breaker = "on"
	}
	if o.Database == "" {
		o.Database = "retrigger_loadtest"
	}
	if o.Names == (messaging.Names{}) {
		o.Names = messaging.DefaultNames()
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = time.Second
	}
	return o
}

// Validate reports the first setting to fix, naming its flag.
func (o Options) Validate() error { return o.withDefaults().validate() }

func (o Options) validate() error {
	switch {
	case o.Count < 1:
		return config.Invalid("count", "must be at least 1, got %d", o.Count)
	case o.Count > 2_000_000:
		// The tracker keeps about 100 bytes per event in this process.
		return config.Invalid("count", "must be at most 2000000, got %d", o.Count)
	case !(o.Rate >= 0) || math.IsInf(o.Rate, 1): // NaN too
		return config.Invalid("rate", "must be a finite number, not negative, got %g", o.Rate)
	case o.Inserters < 1 || o.Inserters > 64:
		return config.Invalid("inserters", "must be between 1 and 64, got %d", o.Inserters)
	case !(o.FailureRate >= 0 && o.FailureRate <= 1): // NaN too
		return config.Invalid("failure-rate", "must be between 0 and 1, got %g", o.FailureRate)
	case o.FailFirst < 0:
		return config.Invalid("fail-first", "must not be negative, got %d", o.FailFirst)
	case o.FailFirst > 0 && o.FailureRate > 0:
		return config.Invalid("fail-first", "cannot be used with -failure-rate: choose random or deterministic failures")
	case o.BackoffFlood < 0:
		return config.Invalid("backoff-flood", "must not be negative, got %d", o.BackoffFlood)
	case o.MaxAttempts < 1:
		return config.Invalid("max-attempts", "must be at least 1, got %d", o.MaxAttempts)
	case o.PayloadSize < 0:
		return config.Invalid("payload-size", "must not be negative, got %d", o.PayloadSize)
	case o.HandlerLatency < 0:
		return config.Invalid("handler-latency", "must not be negative, got %s", o.HandlerLatency)
	case o.Replicas < 1 || o.Replicas > 64:
		return config.Invalid("replicas", "must be between 1 and 64, got %d", o.Replicas)
	case o.Concurrency < 1:
		return config.Invalid("concurrency", "must be at least 1, got %d", o.Concurrency)
	case o.RetryInitial <= 0:
		return config.Invalid("retry-initial", "must be positive, got %s", o.RetryInitial)
	case o.RetryMax < o.RetryInitial:
		return config.Invalid("retry-max", "must be at least -retry-initial %s, got %s", o.RetryInitial, o.RetryMax)
	case o.Timeout <= 0:
		return config.Invalid("timeout", "must be positive, got %s", o.Timeout)
	case o.Storage != StorageMemory && o.Storage != StorageFile:
		return config.Invalid("storage", "must be %q or %q, got %q", StorageMemory, StorageFile, o.Storage)
	case o.SweepInterval < 0:
		return config.Invalid("sweep-interval", "must not be negative, got %s", o.SweepInterval)
	case o.SyncInterval < 0:
		return config.Invalid("sync-interval", "must not be negative, got %s", o.SyncInterval)
	case o.CeilingUpdaters < 1:
		return config.Invalid("ceiling-updaters", "must be at least 1, got %d", o.CeilingUpdaters)
	case o.ProgressEvery < 0:
		return config.Invalid("progress-every", "must not be negative, got %s", o.ProgressEvery)
	}
	if err := event.ValidateType(o.Type); err != nil {
		return config.Invalid("type", "%v", err)
	}
	if err := o.validatePolicy(); err != nil {
		return err
	}
	if err := o.validateFlow(); err != nil {
		return err
	}
	if err := o.Names.Validate(); err != nil {
		return config.ForFlags(err)
	}
	if o.External() {
		switch {
		case o.MongoURI == "":
			return config.Invalid("mongodb-uri", "is required with -nats-url: the external deployment's MongoDB replica set")
		case o.NATSURL == "":
			return config.Invalid("nats-url", "is required with -mongodb-uri: the external deployment's NATS")
		case o.Ceiling:
			return errors.New("invalid -ceiling (RETRIGGER_CEILING): the engine ceiling measures the embedded engine; it cannot run against an external deployment")
		}
	}
	return nil
}

// Defaults returns the options with every default filled in.
func Defaults() Options { return Options{}.withDefaults() }

// WithDefaults returns o with its zero fields set to their defaults.
func (o Options) WithDefaults() Options { return o.withDefaults() }

// validatePolicy checks the retry policy; with PolicyStock, the knobs it
// sets may only hold its values.
func (o Options) validatePolicy() error {
	switch o.Policy {
	case PolicyLoad:
		return nil
	case PolicyStock:
	default:
		return config.Invalid("policy", "must be %q or %q, got %q", PolicyLoad, PolicyStock, o.Policy)
	}
	stock := retry.DefaultPolicy()
	for _, k := range []struct {
		flag      string
		got, want any
	}{
		{"max-attempts", o.MaxAttempts, stock.MaxAttempts},
		{"retry-initial", o.RetryInitial, stock.InitialInterval},
		{"retry-max", o.RetryMax, stock.MaxInterval},
	} {
		if k.got != k.want {
			return config.Invalid(k.flag, "cannot be used with -policy %s, which sets it to the consumer's %v (got %v)", PolicyStock, k.want, k.got)
		}
	}
	return nil
}
