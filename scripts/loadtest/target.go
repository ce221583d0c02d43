package loadtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
	"github.com/retrigger/retrigger/shared/version"
)

// drainTimeout bounds the drain of the load test's components: every event
// is terminal by then, or the run timed out.
const drainTimeout = 5 * time.Second

// PipelineStats are the components' counters at the end of the load.
type PipelineStats struct {
	// Producer (embedded mode only).
	Published  int64 `json:"published"`
	Duplicates int64 `json:"duplicates"`
	Swept      int64 `json:"swept"`
	Retired    int64 `json:"retired"`
	Restarts   int64 `json:"restarts"`
	// Workers.
	Stale   int64 `json:"stale"`
	Early   int64 `json:"early"`
	Retried int64 `json:"retried"`
	Held    int64 `json:"held"`
	// Archiver (embedded mode only).
	ArchiverRepeated int64 `json:"archiver_repeated"`
}

// target is where the load goes: the in-process pipeline (pipe set), or an
// external deployment on which the run's own worker replicas handle the
// events while the deployment's producer and archiver move them.
type target struct {
	events, errs store.Collection
	db           store.Database
	pipe         *pipeline.Pipeline
	// metrics are the workers' (embedded: the pipeline's).
	metrics *metrics.Metrics

	// External mode.
	nc      *nats.Conn
	workers []*consumer.Worker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan error // a worker that stopped by itself

	stopOnce sync.Once
	stats    PipelineStats
}

func workerConfig(o Options, tr *tracker) consumer.Config {
	handlers := map[string]consumer.Handler{o.Type: tr.handle}
	if tr.flood != nil {
		handlers[tr.flood.typ] = tr.flood.handle
	}
	policy := retry.Policy{
		InitialInterval: o.RetryInitial, Multiplier: 2, MaxInterval: o.RetryMax,
		RandomizationFactor: 0.2, MaxAttempts: o.MaxAttempts,
	}
	if o.Policy == PolicyStock {
		policy = retry.DefaultPolicy()
	}
	fc, _ := o.flowConfig() // validated
	return consumer.Config{
		Names:         o.Names,
		Handlers:      handlers,
		Policies:      retry.Policies{Default: policy},
		Flow:          fc,
		Concurrency:   o.Concurrency,
		MaxAckPending: max(1000, o.Replicas*o.Concurrency),
		DrainTimeout:  drainTimeout,
		OnTransition:  tr.onTransition,
		Logger:        o.Logger,
	}
}

// pipelineOptions are the options of the in-process pipeline, which the
// engine ceiling also opens its engine with.
func pipelineOptions(o Options, tr *tracker) pipeline.Options {
	po := pipeline.Options{Memory: o.Storage == StorageMemory, Replicas: o.Replicas, Tracing: o.Tracing}
	po.Store.SyncInterval = o.SyncInterval
	po.Producer.Names = o.Names
	po.Producer.Retention.After = max(o.Retention, 0)
	po.Producer.Retention.Interval = o.SweepInterval
	po.Producer.Sweeper.Interval = o.SweepInterval
	po.Producer.Logger = o.Logger
	if tr != nil {
		po.Worker = workerConfig(o, tr)
		po.Archiver.OnTransition = tr.onTransition
	}
	po.Archiver.Names = o.Names
	po.Archiver.DrainTimeout = drainTimeout
	po.Archiver.Logger = o.Logger
	return po
}

// runDir makes a directory of its own in o.Dir for one in-process
// pipeline, or returns "" (a temporary directory the pipeline removes).
func runDir(o Options, prefix string) (string, error) {
	if o.Dir == "" {
		return "", nil
	}
	dir, err := os.MkdirTemp(o.Dir, prefix)
	if err != nil {
		return "", fmt.Errorf("creating the pipeline's directory: %w", err)
	}
	return dir, nil
}

// openEmbedded starts the pipeline as pipeline.Start does, each component
// under a pprof label ("component": nats-server, producer, consumer,
// archiver) that the goroutines it starts inherit, so a CPU profile of the
// run splits by component (go tool pprof -tags). The nats-server label
// also covers the shared client connection's goroutines and the engine's
// background expiry; the engine's writes run in the goroutine that calls
// them, under that component's label.
func openEmbedded(ctx context.Context, o Options, tr *tracker, trips *tripCount) (*target, error) {
	var (
		p   *pipeline.Pipeline
		err error
	)
	po := pipelineOptions(o, tr)
	if po.DataDir, err = runDir(o, "load-"); err != nil {
		return nil, err
	}
	if trips != nil {
		po.StoreFor = trips.counter.Store
	}
	labelled("nats-server", func() { p, err = pipeline.Open(ctx, po) })
	if err != nil {
		return nil, fmt.Errorf("starting the in-process pipeline: %w", err)
	}
	labelled("producer", func() { err = p.StartProducer() })
	for i := 0; i < o.Replicas && err == nil; i++ {
		labelled("consumer", func() { err = p.StartWorker() })
	}
	if err == nil {
		labelled("archiver", func() { err = p.StartArchiver() })
	}
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("starting the in-process pipeline: %w", err)
	}
	return &target{
		events:  p.DB.Collection("events"),
		errs:    p.DB.Collection("errors"),
		db:      p.DB,
		pipe:    p,
		metrics: p.Metrics,
		failed:  make(chan error),
	}, nil
}

func openExternal(ctx context.Context, o Options, tr *tracker) (*target, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := mongostore.Open(octx, o.MongoURI, o.Database)
	if err != nil {
		return nil, fmt.Errorf("connecting to MongoDB: %w", err)
	}
	nc, err := nats.Connect(o.NATSURL, nats.Name("retrigger-loadgen"), nats.MaxReconnects(-1))
	if err != nil {
		_ = db.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("connecting to NATS %s: %w", redact.URL(o.NATSURL), redact.Error(err, o.NATSURL))
	}
	t := &target{
		events:  db.Collection("events"),
		errs:    db.Collection("errors"),
		db:      db,
		nc:      nc,
		metrics: metrics.New(version.Version),
		failed:  make(chan error, o.Replicas),
	}
	wctx, wcancel := context.WithCancel(context.Background())
	t.cancel = wcancel
	cfg := workerConfig(o, tr)
	cfg.Metrics = t.metrics
	for range o.Replicas {
		w, err := consumer.NewWorker(cfg, db, nc)
		if err != nil {
			t.close()
			return nil, err
		}
		t.workers = append(t.workers, w)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			if err := w.Run(wctx); err != nil {
				t.failed <- fmt.Errorf("worker replica stopped: %w (does the deployment's producer run, so the streams exist?)", err)
			}
		}()
	}
	return t, nil
}

// stop stops the components so the storage no longer changes, and keeps
// their counters. Safe to call twice.
func (t *target) stop() error {
	var err error
	t.stopOnce.Do(func() {
		if t.pipe != nil {
			pr, ws := t.pipe.Producer(), t.pipe.Workers()
			arch := t.pipe.ArchiverStats()
			// The producer first: its retention counter is final once it
			// stopped, and nothing new is published.
			err = errors.Join(t.pipe.StopProducer(), t.pipe.StopWorkers(), t.pipe.StopArchiver())
			if pr != nil {
				s := pr.Stats()
				t.stats.Published, t.stats.Duplicates, t.stats.Swept = s.Published.Load(), s.Duplicates.Load(), s.Swept.Load()
				t.stats.Retired, t.stats.Restarts = s.Retired.Load(), s.Restarts.Load()
			}
			t.addWorkerStats(ws)
			if arch != nil {
				t.stats.ArchiverRepeated = arch.Repeated.Load()
			}
			return
		}
		if t.cancel != nil {
			t.cancel()
			t.wg.Wait()
		}
		t.addWorkerStats(t.workers)
	})
	return err
}

func (t *target) addWorkerStats(ws []*consumer.Worker) {
	for _, w := range ws {
		s := w.Stats()
		t.stats.Stale += s.Stale.Load()
		t.stats.Early += s.Early.Load()
		t.stats.Retried += s.Retried.Load()
		t.stats.Held += s.Held.Load()
	}
}

// flowStore reads flow control's documents, where the workers keep them.
func (t *target) flowStore() *eventstore.Store {
	return eventstore.New(t.db, eventstore.Options{})
}

// close stops everything and releases the connections and the engine.
func (t *target) close() error {
	err := t.stop()
	if t.pipe != nil {
		return errors.Join(err, t.pipe.Close())
	}
	if t.nc != nil {
		_ = t.nc.FlushTimeout(5 * time.Second)
		t.nc.Close()
	}
	return errors.Join(err, t.db.Close(context.Background()))
}

// labelled runs f under the pprof label component=name.
func labelled(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("component", name), func(context.Context) { f() })
}

// runFilter selects the documents of one run.
func runFilter(runID string) bson.D {
	return bson.D{{Key: event.FieldPayload + ".run", Value: runID}}
}

// scan reads where every event of the run is now.
func (t *target) scan(ctx context.Context, runID string) (map[string]Stored, error) {
	out := map[string]Stored{}
	docs, err := t.events.Find(ctx, runFilter(runID), store.FindOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the run's events: %w", err)
	}
	for _, doc := range docs {
		ev, _ := event.Parse(doc) // a malformed field reads as its default
		id := event.IDString(doc.Lookup(event.FieldID))
		st := out[id]
		st.InEvents, st.State, st.Attempts = true, ev.State, ev.Attempts
		out[id] = st
	}
	docs, err = t.errs.Find(ctx, runFilter(runID), store.FindOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the run's errors: %w", err)
	}
	for _, doc := range docs {
		ev, _ := event.Parse(doc)
		id := event.IDString(doc.Lookup(event.FieldID))
		st := out[id]
		st.InErrors, st.ErrorsAttempts = true, ev.Attempts
		out[id] = st
	}
	return out, nil
}

// countArchived counts the run's documents in errors (external mode, where
// the archiver's transitions are not observed).
func (t *target) countArchived(ctx context.Context, runID string) (int64, error) {
	return t.errs.Count(ctx, runFilter(runID))
}

// producerSetup creates the streams and indexes a producer would, on db.
func producerSetup(ctx context.Context, cfg producer.Config, p *pipeline.Pipeline) error {
	pr, err := producer.New(cfg, p.DB, p.Conn)
	if err != nil {
		return err
	}
	return pr.Setup(ctx)
}
