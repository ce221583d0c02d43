// Package metrics defines every Prometheus metric retrigger exports, on a
// registry of its own per process (never the global one), and the
// one-line calls the producer, the consumer replicas and the archiver make
// to move them. A nil *Metrics is valid and records nothing, so a
// component built without metrics needs no checks.
//
// Names follow client_golang's conventions: a retrigger_ prefix, _total
// counters, _seconds durations, low-cardinality labels (an event type is a
// label, an event id never is). deployments/ (the Grafana dashboard, the
// PrometheusRule and their test) reads these names: rename one there too.
package metrics

import (
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// Outcomes of a handler run (retrigger_events_handled_total's outcome).
const (
	OutcomeSuccess = "success" // the event succeeded
	OutcomeRetry   = "retry"   // it failed and will be retried
	OutcomeError   = "error"   // it failed for good (exhausted, permanent, crashed)
)

// Reasons a consumer skips a message (retrigger_messages_skipped_total).
const (
	SkipStale  = "stale"   // the event moved on (ran, archived, changed)
	SkipNotDue = "not_due" // a failed event not due yet
	SkipBusy   = "busy"    // another replica runs it now
)

// Part is a component whose metrics a process exports.
type Part string

// The parts: a process exports the metrics of the parts it runs, and the
// storage, NATS and build metrics every process has.
const (
	Producer Part = "producer"
	Consumer Part = "consumer"
	Archiver Part = "archiver"
)

// Metrics holds retrigger's metrics on their registry.
type Metrics struct {
	reg   *prometheus.Registry
	now   func() time.Time
	parts []Part // exported; nil: every part

	handled       *prometheus.CounterVec
	handlerTime   *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	attempts      *prometheus.HistogramVec
	transitions   *prometheus.CounterVec
	runs          runHandles // Transition's series
	skipped       *prometheus.CounterVec
	changes       prometheus.Counter
	published     *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	publishTime   prometheus.Histogram
	lag           prometheus.Gauge
	swept         prometheus.Counter
	scheduled     prometheus.Counter
	archived      *prometheus.CounterVec
	storageErrors *prometheus.CounterVec
	natsErrors    *prometheus.CounterVec
	leader        prometheus.Gauge
	breaker       *prometheus.GaugeVec
	trips         *prometheus.CounterVec
	probes        *prometheus.CounterVec
	flowWaits     *prometheus.CounterVec
	paused        *prometheus.GaugeVec

	defs []Definition

	mu sync.Mutex
	// the checkpoint: when it was last saved, and when the first change
	// read since was read
	savedAt, pendingSince time.Time
}

// New returns the metrics on a fresh registry that also holds the Go
// runtime's and the process's collectors, and retrigger_build_info for
// version. The registry exports the metrics of parts (none: of every part,
// for a process that runs them all) and those every process has; the
// others are recorded nowhere, so that a consumer does not export the
// producer's counters as 0.
func New(version string, parts ...Part) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now, parts: parts}
	f := factory{m: m, parts: []Part{Consumer}}
	m.handled = f.counterVec("retrigger_events_handled_total", "Handler runs whose outcome was recorded, by event type and outcome (success, retry, error).", "type", "outcome")
	m.handlerTime = f.histogramVec("retrigger_handler_duration_seconds", "How long handlers ran, by event type.", prometheus.ExponentialBuckets(0.005, 2.5, 12), "type")
	m.inFlight = f.gauge("retrigger_handlers_in_flight", "Handlers running now.")
	m.attempts = f.histogramVec("retrigger_attempts_at_success", "The attempt on which events succeeded (1: the first run), by event type.", []float64{1, 2, 3, 4, 5, 7, 10, 15, 20}, "type")
	m.transitions = f.counterVec("retrigger_transitions_total", "State transitions written by consumer replicas, by the state left and the state entered.", "from", "to")
	m.skipped = f.counterVec("retrigger_messages_skipped_total", "Messages a replica acknowledged or handed back without running them, by reason: stale (the event moved on), not_due, busy (another replica runs it).", "reason")
	m.breaker = f.gaugeVec("retrigger_breaker_state", "The breaker of each event type as this replica last read it: 0 closed, 1 open, 2 recovering (its backlog let out in waves).", "type")
	m.trips = f.counterVec("retrigger_breaker_trips_total", "Breaker trips this replica wrote, by event type.", "type")
	m.probes = f.counterVec("retrigger_breaker_probes_total", "Probes this replica ran while a breaker was open, by event type and outcome (success, failure, inconclusive).", "type", "outcome")
	m.flowWaits = f.counterVec("retrigger_flow_waits_total", "Claimed events flow control held back instead of running, by event type and reason (paused, breaker, rate, recovery, key).", "type", "reason")
	m.paused = f.gaugeVec("retrigger_type_paused", "1 while an event type is paused (by hand, or by a partner's Retry-After), as this replica last read it.", "type")
	f.parts = []Part{Producer}
	m.changes = f.counter("retrigger_changes_seen_total", "Changes of the events collection read from the change stream.")
	m.published = f.counterVec("retrigger_published_total", "Messages JetStream acknowledged, duplicates included, by stream.", "stream")
	m.duplicates = f.counterVec("retrigger_publish_duplicates_total", "Published messages JetStream dropped as duplicates (its duplicate window already held them), by stream.", "stream")
	m.publishTime = f.histogram("retrigger_publish_duration_seconds", "Time from a publish to JetStream's acknowledgement.", prometheus.ExponentialBuckets(0.0005, 2.5, 12))
	m.lag = f.gauge("retrigger_change_stream_lag_seconds", "Now minus the cluster time of the last change read from the change stream, when it was read.")
	m.swept = f.counter("retrigger_swept_total", "Stalled events the sweeper published again (duplicates not counted).")
	m.scheduled = f.counter("retrigger_scheduled_total", "Failed events the scheduler published when they came due.")
	f.parts = []Part{Producer, Archiver} // the producer archives what cannot travel
	m.archived = f.counterVec("retrigger_archived_total", "Events moved into the errors collection, by reason (exhausted, permanent, rejected, crashed, cancelled, application).", "reason")
	f.parts = nil // every process
	m.storageErrors = f.counterVec("retrigger_storage_errors_total", "Failed storage operations (not found and duplicate key are answers, not errors), by operation.", "op")
	m.natsErrors = f.counterVec("retrigger_nats_errors_total", "NATS errors, by operation: publish, pull, disconnect, async.", "op")
	f.parts = []Part{Producer}
	m.leader = f.gauge("retrigger_producer_leader", "1 while this process runs the active producer.")
	f.gaugeFunc("retrigger_checkpoint_age_seconds", "How long changes the producer read have waited to be covered by its saved resume token (0: the token is up to date): how much a restart would replay.", m.checkpointAge)
	f.parts = nil
	build := f.gaugeVec("retrigger_build_info", "Always 1, labelled with the version of the build.", "version")
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Definition describes one of retrigger's metrics.
type Definition struct {
	Name   string   // e.g. retrigger_events_handled_total
	Type   string   // counter, gauge or histogram
	Help   string   // what it counts
	Labels []string // its labels
	Parts  []Part   // the parts that export it; nil: every process
}

// Definitions lists retrigger's metrics, those of every part, sorted by
// name: the README's table and the deployments' tests read them from here.
func (m *Metrics) Definitions() []Definition {
	out := append([]Definition(nil), m.defs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// factory makes the metrics of parts (nil: of every process).
type factory struct {
	m     *Metrics
	parts []Part
}

func (f factory) register(c prometheus.Collector, typ, name, help string, labels []string) {
	if f.m.exports(f.parts) {
		f.m.reg.MustRegister(c)
	}
	f.m.defs = append(f.m.defs, Definition{Name: name, Type: typ, Help: help, Labels: labels, Parts: f.parts})
}

// exports reports whether the registry exports a metric of parts.
func (m *Metrics) exports(parts []Part) bool {
	if parts == nil || m.parts == nil {
		return true
	}
	for _, p := range parts {
		if slices.Contains(m.parts, p) {
			return true
		}
	}
	return false
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.register(c, "counter", name, help, nil)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.register(c, "counter", name, help, labels)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.register(g, "gauge", name, help, nil)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn), "gauge", name, help, nil)
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.register(g, "gauge", name, help, labels)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.register(h, "histogram", name, help, nil)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.register(h, "histogram", name, help, labels)
	return h
}

// Registry is the registry holding the metrics, for a test or an
// application that adds its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Transition records a run whose outcome a consumer replica wrote: the
// handled outcome, the transition, the handler's duration (took 0: the
// handler did not run, as for a run that crashed too often) and, on
// success, the attempt it took.
func (m *Metrics) Transition(typ string, from, to event.State, attempt int64, took time.Duration) {
	if m == nil {
		return
	}
	outcome := OutcomeError
	switch to {
	case event.StateSuccess:
		outcome = OutcomeSuccess
		o, ok := m.runs.attempts.load(typ)
		if !ok {
			o = m.attempts.WithLabelValues(typ)
			m.runs.attempts.store(typ, o)
		}
		o.Observe(float64(attempt))
	case event.StateFailed, event.StateNew: // new: a probe that failed, its attempt not spent
		outcome = OutcomeRetry
	}
	c, ok := m.runs.handled.load([2]string{typ, outcome})
	if !ok {
		c = m.handled.WithLabelValues(typ, outcome)
		m.runs.handled.store([2]string{typ, outcome}, c)
	}
	c.Inc()
	c, ok = m.runs.transitions.load([2]event.State{from, to})
	if !ok {
		c = m.transitions.WithLabelValues(from.String(), to.String())
		m.runs.transitions.store([2]event.State{from, to}, c)
	}
	c.Inc()
	if took > 0 {
		o, ok := m.runs.handlerTime.load(typ)
		if !ok {
			o = m.handlerTime.WithLabelValues(typ)
			m.runs.handlerTime.store(typ, o)
		}
		o.Observe(took.Seconds())
	}
}

// runHandles are the series Transition writes, looked up once each: a
// vector's WithLabelValues hashes the labels and takes a lock, four times
// per run. They are created when first written, as WithLabelValues would,
// and there are as many as the replica's types times outcomes and
// transitions.
type runHandles struct {
	attempts, handlerTime handles[string, prometheus.Observer]
	handled               handles[[2]string, prometheus.Counter]
	transitions           handles[[2]event.State, prometheus.Counter]
}

// handles caches a vector's children by their labels.
type handles[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

func (h *handles[K, V]) load(k K) (V, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	v, ok := h.m[k]
	return v, ok
}

func (h *handles[K, V]) store(k K, v V) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[K]V{}
	}
	h.m[k] = v
}

// InFlight adds delta to the handlers running now.
func (m *Metrics) InFlight(delta int) {
	if m != nil {
		m.inFlight.Add(float64(delta))
	}
}

// Skipped counts a message not run, for reason (SkipStale, ...).
func (m *Metrics) Skipped(reason string) {
	if m != nil {
		m.skipped.WithLabelValues(reason).Inc()
	}
}

// ChangeSeen records a change read from the change stream, committed at
// clusterTime.
func (m *Metrics) ChangeSeen(clusterTime bson.Timestamp) {
	if m == nil {
		return
	}
	m.changes.Inc()
	now := m.now()
	if clusterTime.T > 0 {
		m.lag.Set(max(now.Sub(time.Unix(int64(clusterTime.T), 0)).Seconds(), 0))
	}
	m.mu.Lock()
	if m.pendingSince.IsZero() {
		m.pendingSince = now
	}
	m.mu.Unlock()
}

// Checkpointed records that the relay saved its resume token.
func (m *Metrics) Checkpointed() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.savedAt, m.pendingSince = m.now(), time.Time{}
	m.mu.Unlock()
}

// checkpointAge is 0 while no change was read since the last save, and
// otherwise how long the first of them has waited.
func (m *Metrics) checkpointAge() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pendingSince.IsZero() {
		return 0
	}
	return m.now().Sub(m.pendingSince).Seconds()
}

// Published records a message JetStream acknowledged on stream, took after
// its publish.
func (m *Metrics) Published(stream string, took time.Duration, duplicate bool) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(stream).Inc()
	if duplicate {
		m.duplicates.WithLabelValues(stream).Inc()
	}
	if took > 0 {
		m.publishTime.Observe(took.Seconds())
	}
}

// Swept counts an event the sweeper published again.
func (m *Metrics) Swept() {
	if m != nil {
		m.swept.Inc()
	}
}

// Scheduled counts a failed event the scheduler published when due.
func (m *Metrics) Scheduled() {
	if m != nil {
		m.scheduled.Inc()
	}
}

// Archived counts an event moved into errors for reason.
func (m *Metrics) Archived(reason event.Reason) {
	if m != nil {
		m.archived.WithLabelValues(string(reason)).Inc()
	}
}

// StorageError counts a failed storage operation.
func (m *Metrics) StorageError(op string) {
	if m != nil {
		m.storageErrors.WithLabelValues(op).Inc()
	}
}

// NATSError counts a NATS error of op (publish, pull, disconnect, async).
func (m *Metrics) NATSError(op string) {
	if m != nil {
		m.natsErrors.WithLabelValues(op).Inc()
	}
}

// Leader sets whether this process runs the active producer.
func (m *Metrics) Leader(active bool) {
	if m == nil {
		return
	}
	v := 0.0
	if active {
		v = 1
	}
	m.leader.Set(v)
}

// Breaker states of retrigger_breaker_state.
const (
	BreakerClosed     = 0
	BreakerOpen       = 1
	BreakerRecovering = 2
)

// FlowState records what a replica last read of a type's flow control: its
// breaker (BreakerClosed, BreakerOpen, BreakerRecovering) and its pause.
func (m *Metrics) FlowState(typ string, breaker int, paused bool) {
	if m == nil {
		return
	}
	m.breaker.WithLabelValues(typ).Set(float64(breaker))
	p := 0.0
	if paused {
		p = 1
	}
	m.paused.WithLabelValues(typ).Set(p)
}

// BreakerTripped counts a trip this replica wrote.
func (m *Metrics) BreakerTripped(typ string) {
	if m == nil {
		return
	}
	m.trips.WithLabelValues(typ).Inc()
}

// Probed counts a probe's outcome: success, failure or inconclusive.
func (m *Metrics) Probed(typ, outcome string) {
	if m == nil {
		return
	}
	m.probes.WithLabelValues(typ, outcome).Inc()
}

// FlowWait counts a claimed event held back by flow control.
func (m *Metrics) FlowWait(typ, reason string) {
	if m == nil {
		return
	}
	m.flowWaits.WithLabelValues(typ, reason).Inc()
}
