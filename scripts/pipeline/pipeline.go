// Package pipeline runs the whole of retrigger in one process: an in-process
// nats-server with JetStream, the embedded storage engine, the producer,
// consumer replicas and the archiver. The local run, the load generator and
// the end-to-end tests stand on it. Each component can be stopped and started
// again on its own, as a crash or a rollout would.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/filelock"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Options of a pipeline. Zero fields take their defaults.
// LocalSyncInterval is how long a write of the local run (scripts/dev
// -sync-interval) may wait for its journal's sync: a crash of the process
// loses none of them, an operating system crash those of the last
// interval, as MongoDB's journal commit interval does (embedded.Options).
const LocalSyncInterval = 100 * time.Millisecond

type Options struct {
	// DataDir holds the NATS store and, unless Memory, the storage files.
	// Empty: a temporary directory, removed by Close. One pipeline at a
	// time: Open refuses a directory another process holds (its lock file,
	// retrigger.lock), naming that process.
	DataDir string
	// Memory keeps the events in memory instead of DataDir/retrigger.db.
	Memory bool
	// NATSHost and NATSPort where the embedded server listens. Defaults
	// 127.0.0.1 and a free port (-1); 4222 is the usual one.
	NATSHost string
	NATSPort int
	// NATSMaxPayload bounds one message; 0 keeps nats-server's 1 MiB.
	NATSMaxPayload int32
	// Store tunes the embedded engine (its Path is set from DataDir).
	Store embedded.Options
	// Replicas is the number of consumer workers. Default 2; negative: none
	// (start them with StartWorker).
	Replicas int

	// WrapStore, when set, wraps the storage the components use (to count
	// or fail operations in tests).
	WrapStore func(store.Database) store.Database
	// StoreFor, when set, wraps the storage one component uses, on top of
	// WrapStore: component is "producer", "worker" or "archiver" (to count
	// each one's operations).
	StoreFor func(component string, db store.Database) store.Database

	// Tracing, when set, traces the components whose options have none.
	Tracing *tracing.Tracer

	Producer producer.Config
	Worker   consumer.Config
	Archiver consumer.ArchiverConfig
}

// Pipeline is a running in-process deployment.
type Pipeline struct {
	opts   Options
	tmpDir string
	lock   *filelock.Lock

	DB   *embedded.DB
	db   store.Database // what the components use: DB, maybe wrapped
	NATS *server.Server
	Conn *nats.Conn
	// Metrics and Health of every component (observe.go).
	Metrics *metrics.Metrics
	Health  *health.Health

	mu       sync.Mutex
	producer *component[*producer.Producer]
	workers  []*component[*consumer.Worker]
	archiver *component[*consumer.Archiver]
}

// component is one running part with its own lifetime.
type component[T any] struct {
	Value  T
	cancel context.CancelFunc
	done   chan error
}

func run[T interface{ Run(context.Context) error }](v T) *component[T] {
	ctx, cancel := context.WithCancel(context.Background())
	c := &component[T]{Value: v, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- v.Run(ctx) }()
	return c
}

// stop cancels the component and waits for its drain.
func (c *component[T]) stop() error {
	if c == nil {
		return nil
	}
	c.cancel()
	return <-c.done
}

// Open starts NATS and the storage engine, without components.
func Open(ctx context.Context, o Options) (*Pipeline, error) {
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.NATSPort == 0 {
		o.NATSPort = -1
	}
	p := &Pipeline{opts: o}
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "retrigger-")
		if err != nil {
			return nil, fmt.Errorf("creating a temporary data directory: %w", err)
		}
		p.tmpDir, o.DataDir = dir, dir
	}
	// Before anything uses the directory: a second run on it would share
	// the NATS store and the storage files with the first.
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		p.Close()
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	var err error
	if p.lock, err = filelock.Acquire(filepath.Join(o.DataDir, "retrigger.lock"), "the data directory "+o.DataDir); err != nil {
		p.Close()
		return nil, err
	}
	so := o.Store
	if !o.Memory {
		so.Path = filepath.Join(o.DataDir, "retrigger.db")
	}
	p.DB, err = embedded.Open(ctx, so)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.NATS, err = natsserver.Start(natsserver.Options{Host: o.NATSHost, Port: o.NATSPort, StoreDir: filepath.Join(o.DataDir, "nats"), MaxPayload: o.NATSMaxPayload})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Conn, err = nats.Connect(p.NATS.ClientURL(), nats.Name("retrigger-pipeline"), nats.MaxReconnects(-1))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("connecting to the embedded nats-server: %w", err)
	}
	p.db = p.DB
	if o.WrapStore != nil {
		p.db = o.WrapStore(p.DB)
	}
	p.observe(&o)
	p.opts = o
	return p, nil
}

// Start opens the pipeline and runs every component.
func Start(ctx context.Context, o Options) (*Pipeline, error) {
	p, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := p.StartProducer(); err != nil {
		p.Close()
		return nil, err
	}
	for range max(p.opts.Replicas, 0) {
		if err := p.StartWorker(); err != nil {
			p.Close()
			return nil, err
		}
	}
	if err := p.StartArchiver(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Database is the storage the components use.
func (p *Pipeline) Database() store.Database { return p.db }

// storeOf is the storage component uses.
func (p *Pipeline) storeOf(component string) store.Database {
	if p.opts.StoreFor == nil {
		return p.db
	}
	return p.opts.StoreFor(component, p.db)
}

// Options returns the options in force.
func (p *Pipeline) Options() Options { return p.opts }

// StartProducer runs a producer; it fails if one runs.
func (p *Pipeline) StartProducer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.producer != nil {
		return errors.New("producer already running")
	}
	pr, err := producer.New(p.opts.Producer, p.storeOf("producer"), p.Conn)
	if err != nil {
		return err
	}
	// The streams exist before consumers bind to them.
	if err := pr.Setup(context.Background()); err != nil {
		return err
	}
	p.producer = run(pr)
	select {
	case <-pr.Ready():
		return nil
	case err := <-p.producer.done:
		p.producer.done <- err
		return fmt.Errorf("producer stopped while starting: %v", err)
	case <-time.After(30 * time.Second):
		return errors.New("producer not watching the events collection after 30s")
	}
}

// Producer returns the running producer, or nil.
func (p *Pipeline) Producer() *producer.Producer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.producer == nil {
		return nil
	}
	return p.producer.Value
}

// StopProducer stops the producer and waits for its final checkpoint.
func (p *Pipeline) StopProducer() error {
	p.mu.Lock()
	c := p.producer
	p.producer = nil
	p.mu.Unlock()
	return c.stop()
}

// StartWorker adds a consumer replica.
func (p *Pipeline) StartWorker() error { return p.StartWorkerWith(p.opts.Worker) }

// StartWorkerWith adds a consumer replica with its own configuration, such
// as another set of handlers.
func (p *Pipeline) StartWorkerWith(cfg consumer.Config) error {
	w, err := consumer.NewWorker(cfg, p.storeOf("worker"), p.Conn)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers = append(p.workers, run(w))
	return nil
}

// Workers returns the running replicas.
func (p *Pipeline) Workers() []*consumer.Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*consumer.Worker, len(p.workers))
	for i, c := range p.workers {
		out[i] = c.Value
	}
	return out
}

// StopWorkers stops every replica, draining in-flight handlers.
func (p *Pipeline) StopWorkers() error {
	p.mu.Lock()
	ws := p.workers
	p.workers = nil
	p.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartArchiver runs the archiver.
func (p *Pipeline) StartArchiver() error {
	a, err := consumer.NewArchiver(p.opts.Archiver, p.storeOf("archiver"), p.Conn)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.archiver != nil {
		return errors.New("archiver already running")
	}
	p.archiver = run(a)
	return nil
}

// StopArchiver stops the archiver.
func (p *Pipeline) StopArchiver() error {
	p.mu.Lock()
	c := p.archiver
	p.archiver = nil
	p.mu.Unlock()
	return c.stop()
}

// Close stops the components (producer first, so nothing new is published),
// then closes NATS and the storage engine. Safe to call twice.
func (p *Pipeline) Close() error {
	errs := []error{p.StopProducer(), p.StopWorkers(), p.StopArchiver()}
	if p.Conn != nil {
		p.Conn.Close()
	}
	if p.NATS != nil {
		p.NATS.Shutdown()
		p.NATS.WaitForShutdown()
	}
	if p.DB != nil {
		errs = append(errs, p.DB.Close(context.Background()))
	}
	errs = append(errs, p.lock.Release())
	p.lock = nil
	if p.tmpDir != "" {
		errs = append(errs, os.RemoveAll(p.tmpDir))
		p.tmpDir = ""
	}
	return errors.Join(errs...)
}

// ArchiverStats returns the running archiver's counters, or nil.
func (p *Pipeline) ArchiverStats() *consumer.ArchiverStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.archiver == nil {
		return nil
	}
	return p.archiver.Value.Stats()
}
