package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/consumer/handlers"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/filelock"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/tracing"
)

// demoType is the event type the generator inserts; seedType runs the
// seed layout's documents, which have none.
const (
	demoType = "demo"
	seedType = "seed"
)

func demo(ctx context.Context, o options, log zerolog.Logger) error {
	feed := newFeed(5)
	tr, stopTracing, err := tracing.Setup(ctx, tracing.Config{ServiceName: "retrigger-dev", Exporter: o.traces, Global: true,
		OnError: func(err error) { log.Warn().Err(err).Msg("tracing") }})
	if err != nil {
		return config.Invalid("traces", "%v", err)
	}
	defer func() { _ = stopTracing(context.WithoutCancel(ctx)) }()
	po := o.pipeline(feed, log)
	po.Tracing = tr
	p, err := pipeline.Start(ctx, po)
	if err != nil {
		return startError(err)
	}
	url, stopHTTP, err := serve(p, o.httpAddr, o.allowWrites, log)
	if err != nil {
		_ = p.Close()
		return err
	}
	defer stopHTTP()
	fmt.Print(banner(o, p.NATS.ClientURL(), url))
	fmt.Print(storage(p.DB.Recovery()))

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		generate(ctx, p.DB.Collection(o.store.WithDefaults().Events), o.interval, o.newEvent, otel.Tracer("retrigger-dev demo"), log)
	}()
	go func() { defer wg.Done(); summarize(ctx, os.Stdout, p.DB, feed, o) }()
	<-ctx.Done()
	wg.Wait()
	fmt.Println("\nstopping: draining handlers in flight…")
	start := time.Now()
	if err := p.Close(); err != nil {
		return err
	}
	fmt.Print(farewell(o, time.Since(start)))
	return nil
}

// pipeline is the in-process deployment the local run starts.
func (o options) pipeline(feed *feed, log zerolog.Logger) pipeline.Options {
	po := pipeline.Options{
		DataDir:  o.dataDir,
		Memory:   o.memory,
		NATSHost: o.natsHost,
		NATSPort: o.natsPort,
		Replicas: o.replicas,
	}
	po.Store.Database = o.database
	po.Store.SyncInterval = o.syncInterval
	po.Producer.Store, po.Worker.Store, po.Archiver.Store = o.store, o.store, o.store
	po.Producer.Logger = log
	po.Producer.Retention.After = o.retention
	po.Producer.Sweeper.Interval = 5 * time.Second
	po.Producer.Sweeper.Stall = 30 * time.Second
	po.Worker.Logger = log
	po.Worker.Handlers = o.handlers()
	po.Worker.Policies = retry.Policies{Default: retry.Policy{
		InitialInterval: o.retryInitial, Multiplier: 2, MaxInterval: time.Minute, RandomizationFactor: 0.2, MaxAttempts: int64(o.maxAttempts),
	}}
	po.Worker.Flow = o.flow
	po.Worker.DrainTimeout = 3 * time.Second
	po.Worker.OnTransition = feed.add
	po.Archiver.Logger = log
	po.Archiver.DrainTimeout = 3 * time.Second
	po.Archiver.OnTransition = feed.add
	return po
}

// startError adds to a failed start what the operator can do about it.
func startError(err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w\n(is another retrigger or nats-server running? stop it, or pass -nats-port)", err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%w\n(-nats-host must be an address of this machine, such as 127.0.0.1)", err)
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EEXIST):
		return fmt.Errorf("%w\n(-data-dir must be a directory, or a path where one can be made)", err)
	case errors.Is(err, filelock.ErrLocked):
		return fmt.Errorf("%w\n(another local run uses this -data-dir: stop it, or pass another -data-dir)", err)
	case errors.Is(err, embedded.ErrFormat):
		return fmt.Errorf("%w\n(-data-dir holds a data file this build cannot read)", err)
	}
	return err
}

// storage says what the embedded store found in -data-dir at start: a new
// store, a conversion from an older format, the journal replayed, and a
// warning when it cut off a torn or damaged journal tail.
func storage(rec embedded.Recovery) string {
	if rec.Path == "" {
		return ""
	}
	if len(rec.Dropped) > 0 {
		return "warning: storage: " + rec.String() + "\n"
	}
	return "storage: " + rec.String() + "\n"
}

// The flood rates of the embedded engine, durable (the default) and in
// memory, as the load generator measured them on 2 shared cores
// (docs/PERFORMANCE.md, "The embedded engine").
const (
	durableRate = "5,600 to 6,800 events/s"
	syncedRate  = "1,900 to 2,200 events/s" // -sync-interval 0
	memoryRate  = "6,000 to 8,000 events/s"
)

// banner is what the local run prints once it runs; httpURL is where its
// metrics, health and admin API are served ("": nowhere).
func banner(o options, natsURL, httpURL string) string {
	var b strings.Builder
	where := o.dataDir
	if o.memory {
		where = "memory (NATS store in " + o.dataDir + ")"
	}
	fmt.Fprintf(&b, "retrigger local pipeline: NATS %s, events in %s, %d consumer replicas, 1 producer, 1 archiver\n", natsURL, where, o.replicas)
	if httpURL != "" {
		fmt.Fprintf(&b, "metrics, health and the admin API on %s (/metrics, /healthz, /readyz; retrigger -server %s stats)\n", httpURL, httpURL)
		fmt.Fprintf(&b, "web view on %s/ (%s)\n", httpURL, map[bool]string{true: "actions allowed; -allow-writes=false for read-only", false: "read-only"}[o.allowWrites])
	}
	if o.memory {
		b.WriteString("-memory: the events live in this process only; stopping it, or a crash, loses every one of them, retries included. " +
			"It buys little speed: flooded, about " + memoryRate + " against " + durableRate + " durable, on 2 cores (docs/PERFORMANCE.md). Drop -memory to keep them in -data-dir.\n")
	} else if o.syncInterval > 0 {
		b.WriteString("durable: every write is in the journal in " + o.dataDir + " before it counts, and a crash of this process loses none; " +
			"an operating system crash or a power cut may lose the last " + o.syncInterval.String() + " of them (-sync-interval 0: none, at about " + syncedRate + "). " +
			"Flooded, about " + durableRate + " on 2 cores (-memory: about " + memoryRate + ", and nothing survives a stop; docs/PERFORMANCE.md)\n")
	} else {
		b.WriteString("durable: every write is synced to " + o.dataDir + " before it counts, and no crash loses one; flooded, about " + syncedRate +
			" on 2 cores (the default -sync-interval 100ms: about " + durableRate + "; docs/PERFORMANCE.md)\n")
	}
	if ip := net.ParseIP(o.natsHost); (ip == nil && o.natsHost != "localhost") || (ip != nil && !ip.IsLoopback()) {
		fmt.Fprintf(&b, "warning: -nats-host %s: the embedded NATS server has no authentication, and listens beyond this machine.\n", o.natsHost)
	}
	so := o.store.WithDefaults()
	if o.layout == layoutSeed {
		fmt.Fprintf(&b, "layout seed: the hand-built trigger example's %s.%s and %s.%s, its counter %q, no type (documents run as %q)\n",
			o.database, so.Events, o.database, so.Errors, so.Schema.Attempts(), so.Schema.DefaultType)
		fmt.Fprintf(&b, "demo: %s; the example's function succeeds on an even number from 1 to 10; %d runs (Attempts = %d), then %s. Ctrl-C to stop.\n\n",
			o.every(fmt.Sprintf("{state: 0, %s: 0, timestamp}", so.Schema.Attempts()), "documents"), o.maxAttempts, o.maxAttempts-1, so.Errors)
		return b.String()
	}
	fmt.Fprintf(&b, "demo: %s; the handler fails %.0f%% of runs; %d attempts, then %s. Ctrl-C to stop.\n\n",
		o.every(fmt.Sprintf("a %q event", demoType), fmt.Sprintf("%q events", demoType)), o.failureRate*100, o.maxAttempts, so.Errors)
	return b.String()
}

// every says how often the generator inserts one, or that it inserts no
// such many (-interval 0).
func (o options) every(one, many string) string {
	if o.interval == 0 {
		return "no " + many + " inserted (-interval 0): insert your own"
	}
	return one + " every " + durationText(o.interval)
}

// durationText is d without the zero units that time.Duration's String
// writes: 2m, not 2m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// handlers are the demo's handlers: its type's, and the default type's
// when one is set.
func (o options) handlers() map[string]consumer.Handler {
	h, typ := handlers.Demo(handlers.DemoConfig{FailureRate: o.failureRate, Latency: o.latency}), demoType
	if o.layout == layoutSeed {
		h, typ = handlers.EvenNumber(o.latency, nil), seedType
	}
	hs := map[string]consumer.Handler{typ: h}
	if t := o.store.Schema.DefaultType; t != "" {
		hs[t] = h
	}
	return hs
}

// newEvent is the document the generator inserts as the nth: a typed demo
// event, or the example project's {state: 0, count: 0, timestamp}.
func (o options) newEvent(n int, now time.Time) bson.D {
	if o.layout == layoutSeed {
		return bson.D{{Key: "state", Value: 0}, {Key: o.store.Schema.Attempts(), Value: 0}, {Key: "timestamp", Value: now}}
	}
	return bson.D{
		{Key: "type", Value: demoType},
		{Key: "payload", Value: bson.D{{Key: "order", Value: n}, {Key: "email", Value: fmt.Sprintf("customer%d@example.com", n)}}},
		{Key: "createdAt", Value: now},
	}
}

// farewell is the last line of a clean stop.
func farewell(o options, took time.Duration) string {
	if o.memory {
		return fmt.Sprintf("stopped cleanly in %s; -memory kept nothing: the events are gone, and a new start begins empty\n", took.Round(time.Millisecond))
	}
	return fmt.Sprintf("stopped cleanly in %s; start again to resume from %s\n", took.Round(time.Millisecond), o.dataDir)
}

// generate inserts a demo event every interval until ctx ends. It plays
// the application: with tracing on, each insert has a span, whose context
// the event carries in its traceparent and tracestate fields.
func generate(ctx context.Context, events store.Collection, every time.Duration, doc func(int, time.Time) bson.D, tracer trace.Tracer, log zerolog.Logger) {
	if every == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n++
		sctx, span := tracer.Start(ctx, "insert demo event", trace.WithSpanKind(trace.SpanKindProducer))
		d := doc(n, time.Now())
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(sctx, carrier) // nothing without a span
		if tp := carrier["traceparent"]; tp != "" {
			d = append(d, bson.E{Key: "traceparent", Value: tp})
		}
		if ts := carrier["tracestate"]; ts != "" {
			d = append(d, bson.E{Key: "tracestate", Value: ts})
		}
		err := events.InsertOne(sctx, d)
		span.End()
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("demo generator: inserting an event")
		}
	}
}

// feed keeps the last few transitions since it was last read, and counts
// them all.
type feed struct {
	mu    sync.Mutex
	last  []consumer.Transition
	keep  int
	total atomic.Int64
}

func newFeed(keep int) *feed { return &feed{keep: keep} }

func (f *feed) add(t consumer.Transition) {
	f.total.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = append(f.last, t)
	if len(f.last) > f.keep {
		f.last = f.last[len(f.last)-f.keep:]
	}
}

// recent returns the last few transitions since the previous call.
func (f *feed) recent() []consumer.Transition {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.last
	f.last = nil
	return out
}

// summarize prints counts per state, the archive, the rate of transitions
// and the last few transitions, every o.summaryEvery.
func summarize(ctx context.Context, w io.Writer, db store.Database, f *feed, o options) {
	t := time.NewTicker(o.summaryEvery)
	defer t.Stop()
	st := eventstore.New(db, o.store)
	ops := admin.New(st, nil, messaging.Names{})
	prevTotal, prevAt := f.total.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		count := func(w eventstore.Where, f eventstore.Filter) int64 {
			n, err := st.Count(ctx, w, f)
			if err != nil {
				return -1
			}
			return n
		}
		in := func(s event.State) int64 {
			return count(eventstore.InEvents, eventstore.Filter{States: []event.State{s}})
		}
		total, now := f.total.Load(), time.Now()
		rate := float64(total-prevTotal) / now.Sub(prevAt).Seconds()
		prevTotal, prevAt = total, now
		fmt.Fprintf(w, "%s  new %d · retrying %d · success %d · error %d │ archived in %s %d │ %.1f transitions/s\n",
			now.Format(time.TimeOnly), in(event.StateNew), in(event.StateFailed),
			in(event.StateSuccess), in(event.StateError), o.store.WithDefaults().Errors, count(eventstore.InErrors, eventstore.Filter{}), rate)
		if all, err := ops.Flow(ctx); err == nil {
			for _, fs := range all {
				if line := flowLine(fs, now); line != "" {
					fmt.Fprintf(w, "    %s\n", line)
				}
			}
		}
		for _, tr := range f.recent() {
			fmt.Fprintf(w, "    %s  %s\n", tr.At.Format(time.TimeOnly), describe(tr, o.store.WithDefaults().Errors))
		}
	}
}

// flowLine says what holds a type back, if anything: its breaker, its
// pause, events waiting for their keys, the rate and key limits it was
// given. "" on the happy path.
func flowLine(f admin.FlowStatus, now time.Time) string {
	var parts []string
	switch f.Breaker {
	case flow.Open:
		parts = append(parts, fmt.Sprintf("breaker open since %s, next probe in %s (%s)", now.Sub(f.Since).Round(time.Second), max(f.NextProbe.Sub(now), 0).Round(time.Second), f.Reason))
	case flow.Recovering:
		parts = append(parts, fmt.Sprintf("recovering: %d at once", f.WaveLimit))
	}
	if p := f.Pause; p != nil {
		until := "until resumed"
		if !p.Until.IsZero() {
			until = "for " + p.Until.Sub(now).Round(time.Second).String()
		}
		parts = append(parts, fmt.Sprintf("paused by %s %s", p.By, until))
	}
	if f.Parked > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting for their keys", f.Parked))
	}
	for _, l := range strings.Split(f.Limits, "; ") { // the rate and keys given; the stock breaker is the happy path's
		if l != "" && !strings.HasPrefix(l, "breaker ") {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("flow: %s %s · %d waiting", f.Type, strings.Join(parts, " · "), f.Waiting)
}

func describe(tr consumer.Transition, errorsCollection string) string {
	id := tr.ID
	if len(id) > 8 {
		id = "…" + id[len(id)-6:]
	}
	switch {
	case tr.Archived:
		return fmt.Sprintf("%s %s archived into %s after %d attempts", id, tr.Type, errorsCollection, tr.Attempts)
	case tr.To == event.StateSuccess:
		return fmt.Sprintf("%s %s attempt %d succeeded", id, tr.Type, tr.Attempts+1)
	case tr.To == event.StateFailed:
		return fmt.Sprintf("%s %s attempt %d failed, will retry: %s", id, tr.Type, tr.Attempts, tr.Error)
	default:
		return fmt.Sprintf("%s %s attempt %d failed, no retries left: %s", id, tr.Type, tr.Attempts, tr.Error)
	}
}
