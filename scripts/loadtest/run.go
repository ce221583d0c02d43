package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/pprof"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/redact"
)

// Progress is the state of a run, reported while it goes.
type Progress struct {
	Elapsed  time.Duration
	Count    int     // events to insert
	Inserted int64   // inserts done
	Terminal int64   // events in a terminal state
	InFlight int64   // inserted, not terminal yet
	Rate     float64 // terminal states per second since the last report
	Done     bool    // the last report of the load
}

// Settings are the options a run used, as its results show them.
type Settings struct {
	Count          int     `json:"count"`
	Rate           float64 `json:"rate"` // 0: as fast as possible
	Inserters      int     `json:"inserters,omitempty"`
	FailureRate    float64 `json:"failure_rate"`
	FailFirst      int64   `json:"fail_first,omitempty"`
	MaxAttempts    int64   `json:"max_attempts"`
	PayloadSize    int     `json:"payload_size"`
	HandlerLatency string  `json:"handler_latency"`
	Replicas       int     `json:"replicas"`
	Concurrency    int     `json:"concurrency"`
	RetryInitial   string  `json:"retry_initial"`
	RetryMax       string  `json:"retry_max"`
	Policy         string  `json:"policy"`
	Timeout        string  `json:"timeout"`
	Type           string  `json:"type"`
	BackoffFlood   int     `json:"backoff_flood,omitempty"`
	Storage        string  `json:"storage,omitempty"`
	SyncInterval   string  `json:"sync_interval,omitempty"` // file storage: "0s" syncs every write
	Retention      string  `json:"retention,omitempty"`
	SweepInterval  string  `json:"sweep_interval,omitempty"`
	// Flow control.
	Breaker   string `json:"breaker"`
	Outage    string `json:"outage,omitempty"`
	Keys      int    `json:"keys,omitempty"`
	KeyMode   string `json:"key_mode,omitempty"`
	RateLimit string `json:"rate_limit,omitempty"`
}

// Outcomes count where the events ended.
type Outcomes struct {
	Succeeded           int `json:"succeeded"`
	SucceededFirstTime  int `json:"succeeded_first_time"`
	SucceededAfterRetry int `json:"succeeded_after_retry"`
	Archived            int `json:"archived"`
	NotTerminal         int `json:"not_terminal"`
}

// Result is what a run measured and found.
type Result struct {
	Mode      string    `json:"mode"` // "embedded" or "external"
	Target    string    `json:"target"`
	Settings  Settings  `json:"settings"`
	StartedAt time.Time `json:"started_at"`
	Machine   Machine   `json:"machine"`
	// LoadAvgStart and LoadAvgEnd are the machine's 1-minute load average
	// before and after the load: other work running at the same time shows
	// there.
	LoadAvgStart float64 `json:"load_avg_start"`
	LoadAvgEnd   float64 `json:"load_avg_end"`

	Inserted int  `json:"inserted"`
	Terminal int  `json:"terminal"`
	TimedOut bool `json:"timed_out"`
	// Seconds runs from the first insert to the last terminal state;
	// Throughput is Terminal / Seconds.
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput_eps"`
	// InsertSeconds runs from the first insert to the end of the last;
	// MaxInsertLagMs is how late the paced generator started an insert.
	InsertSeconds  float64 `json:"insert_seconds"`
	MaxInsertLagMs float64 `json:"max_insert_lag_ms,omitempty"`

	// Latency: insert to success, of the events that succeeded first time.
	Latency Summary `json:"latency"`
	// RetryLateness: when each retry's handler started, after it was due.
	RetryLateness Summary `json:"retry_lateness"`
	// StartDelay: insert to the first start of the handler, of every event.
	StartDelay Summary `json:"start_delay"`
	// BackoffFlood: what a run with -backoff-flood saw.
	BackoffFlood *FloodResult `json:"backoff_flood,omitempty"`
	// Flow: what a run with a flow mode (-outage, -keys, -rate-limit,
	// -breaker) saw of flow control.
	Flow *FlowResult `json:"flow,omitempty"`

	Outcomes        Outcomes      `json:"outcomes"`
	HandlerRuns     int64         `json:"handler_runs"`
	HandlerFailures int64         `json:"handler_failures"`
	Foreign         int64         `json:"foreign"` // handler runs and transitions of events this run did not insert
	Pipeline        PipelineStats `json:"pipeline"`

	// PeakRSS is the peak resident set of this whole process during the
	// load (see PeakRSSScope).
	PeakRSS      int64  `json:"peak_rss_bytes"`
	PeakRSSScope string `json:"peak_rss_scope"`

	Ceiling    *CeilingResult `json:"ceiling,omitempty"`
	RoundTrips *RoundTrips    `json:"round_trips,omitempty"`
	Invariants Report         `json:"invariants"`
	Notes      []string       `json:"notes"`
}

// Run runs a load test. It returns an error when the run could not be done
// as asked (a connection, an insert, a component failed); a finished run
// whose invariants fail is not an error: see Result.Invariants.OK.
func Run(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	res := Result{
		Mode:      "embedded",
		StartedAt: time.Now().UTC().Truncate(time.Second),
		Machine:   machine(),
		Settings:  settings(o),
		Notes:     []string{},

		LoadAvgStart: loadAverage(),
	}
	external := o.External()
	if external {
		res.Mode = "external"
		res.Target = fmt.Sprintf("external deployment: NATS %s, MongoDB database %q; %d consumer replicas in this process, the deployment's producer and archiver", redact.URL(o.NATSURL), o.Database, o.Replicas)
		res.Notes = append(res.Notes,
			fmt.Sprintf("external mode: the deployment's producer and archiver must run on this database and these stream names, and no consumer replica of the deployment may handle type %s; succeeded events its retention deleted cannot be told from lost ones and are counted as unverified", o.Type),
			"external mode has not been run against a real MongoDB by the retrigger test suite")
	} else {
		storage := o.Storage
		if o.Storage == StorageFile {
			storage = "file, each write synced"
			if o.SyncInterval > 0 {
				storage = "file, synced every " + o.SyncInterval.String()
			}
		}
		res.Target = fmt.Sprintf("in-process pipeline: embedded engine (%s), embedded nats-server with JetStream (file store), 1 producer, %d consumer replicas, 1 archiver", storage, o.Replicas)
		if o.Retention > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("retention: the producer deletes succeeded events %s after success (checked every %s), so the embedded engine's live set stays small; deleted events are checked through their observed success transitions and the retention count", o.Retention, o.SweepInterval))
		}
	}

	tr := newTracker(o.Count, o.FailureRate, o.HandlerLatency)
	tr.failFirst = o.FailFirst
	runID := bson.NewObjectID().Hex()
	if o.BackoffFlood > 0 {
		tr.flood = newFlood(o, runID)
	}
	if o.flowMode() {
		tr.fl = newFlowTracker(o, &tr.firstInsert)
	}
	rssReset := resetPeakRSS()
	var (
		t   *target
		err error
	)
	var trips *tripCount
	if external {
		t, err = openExternal(ctx, o, tr)
	} else {
		if o.RoundTrips {
			trips = newTripCount()
		}
		t, err = openEmbedded(ctx, o, tr, trips)
	}
	if err != nil {
		return res, err
	}
	defer t.close()
	if err := trips.start(ctx, t, o.Names); err != nil {
		return res, err
	}
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return res, fmt.Errorf("starting the CPU profile: %w", err)
		}
	}
	if o.AllocsAtStart != nil {
		if err := pprof.Lookup("allocs").WriteTo(o.AllocsAtStart, 0); err != nil {
			return res, fmt.Errorf("writing the allocation profile: %w", err)
		}
	}

	if tr.flood != nil {
		fctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := tr.flood.fill(fctx, t, o.BackoffFlood)
		cancel()
		if err != nil {
			return res, err
		}
		res.BackoffFlood = &FloodResult{Events: o.BackoffFlood, InBackoff: tr.flood.failed.Load(), Type: tr.flood.typ}
	}
	gen := newGenerator(o, tr, t.events, runID)
	loadErr := load(ctx, o, t, tr, gen, runID, &res)
	if tr.flood != nil && loadErr == nil {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		delays, err := tr.flood.fresh(fctx, t)
		cancel()
		if err != nil {
			loadErr = err
		} else {
			res.BackoffFlood.FreshStartDelay = Summarize(delays)
		}
	}

	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if o.HeapProfile != nil {
		if err := pprof.Lookup("heap").WriteTo(o.HeapProfile, 0); err != nil {
			res.Notes = append(res.Notes, "writing the heap profile: "+err.Error())
		}
	}
	res.PeakRSS = peakRSS()
	res.LoadAvgEnd = loadAverage()
	res.PeakRSSScope = "whole process (NATS server, storage engine, producer, consumer replicas, archiver and load generator share it), from the pipeline's start to the end of the load"
	if external {
		res.PeakRSSScope = "whole load generator process (its consumer replicas and tracking), from the start to the end of the load"
	}
	if !rssReset {
		res.PeakRSSScope += "; the high-water mark could not be reset, so it covers the whole process life"
	}

	// Freeze the storage, then verify.
	if err := t.stop(); err != nil {
		res.Notes = append(res.Notes, "stopping the components: "+err.Error())
	}
	res.Pipeline = t.stats
	if res.RoundTrips, err = trips.result(ctx, t, o.Count); err != nil {
		res.Notes = append(res.Notes, "counting the round trips: "+err.Error())
	}
	if o.tamper != nil {
		o.tamper(t)
	}
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	stored, err := t.scan(vctx, runID)
	if err != nil {
		return res, errors.Join(loadErr, err)
	}
	checker := Checker{Retired: t.stats.Retired, RetiredKnown: !external, ArchivesObserved: !external,
		FailedProbes: counter(t.metrics, "retrigger_breaker_probes_total", o.Type, "outcome")["failure"], FailedProbesKnown: t.metrics != nil}
	res.Invariants = checker.Check(observations(tr), stored)
	inv := res.Invariants
	res.Outcomes = Outcomes{
		Succeeded:           inv.Succeeded,
		SucceededFirstTime:  inv.SucceededFirstTime,
		SucceededAfterRetry: inv.Succeeded - inv.SucceededFirstTime,
		Archived:            inv.Archived,
		NotTerminal:         inv.NonTerminal,
	}
	res.Latency = Summarize(firstTimeLatencies(tr))
	res.RetryLateness = Summarize(tr.retryLateness())
	res.StartDelay = Summarize(tr.startDelays())
	res.Foreign = tr.foreign.Load()
	for i := range tr.recs {
		res.HandlerRuns += int64(tr.recs[i].runs.Load())
		res.HandlerFailures += int64(tr.recs[i].failures.Load())
	}
	if tr.fl != nil {
		res.Flow = flowResult(vctx, o, t, tr, &res)
	}
	if err := t.close(); err != nil {
		res.Notes = append(res.Notes, "closing: "+err.Error())
	}
	if loadErr != nil {
		return res, loadErr
	}

	if o.Ceiling && ctx.Err() == nil {
		c, err := Ceiling(ctx, o)
		if err != nil {
			return res, fmt.Errorf("measuring the engine ceiling: %w", err)
		}
		if c.EventsPerSec > 0 {
			c.Ratio = round(res.Throughput/c.EventsPerSec, 3)
		}
		res.Ceiling = &c
	}
	return res, nil
}

// load runs the generator and waits until every inserted event is terminal,
// the timeout expires, ctx ends or something fails.
func load(ctx context.Context, o Options, t *target, tr *tracker, gen *generator, runID string, res *Result) error {
	lctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	genDone := make(chan error, 1)
	labelled("generator", func() {
		go func() { genDone <- gen.run(lctx) }()
	})
	if o.Outage > 0 {
		// When the breaker trips, as operators see it.
		watched := make(chan struct{})
		labelled("generator", func() {
			go func() { defer close(watched); tr.fl.watchTrip(lctx, t.flowStore(), o.Type, tr.base) }()
		})
		defer func() { cancel(); <-watched }()
	}
	generating := true

	start := time.Now()
	check := time.NewTicker(20 * time.Millisecond)
	defer check.Stop()
	var report <-chan time.Time
	if o.Progress != nil && o.ProgressEvery > 0 {
		tk := time.NewTicker(o.ProgressEvery)
		defer tk.Stop()
		report = tk.C
	}
	var (
		lastTerminal int64
		lastReport   = start
		lastPoll     time.Time
		failure      error
	)
	terminal := func() int64 { return tr.terminal.Load() }
	if t.pipe == nil {
		// External: the archiver's work shows as documents in errors.
		terminal = func() int64 { return tr.terminal.Load() + tr.archived.Load() }
	}
	progress := func(done bool) {
		if o.Progress == nil {
			return
		}
		now, term := time.Now(), terminal()
		ins := tr.inserted.Load()
		p := Progress{Elapsed: now.Sub(start), Count: o.Count, Inserted: ins, Terminal: term, InFlight: max(ins-term, 0), Done: done}
		if dt := now.Sub(lastReport).Seconds(); dt > 0 {
			p.Rate = float64(term-lastTerminal) / dt
		}
		lastTerminal, lastReport = term, now
		o.Progress(p)
	}
loop:
	for {
		select {
		case err := <-genDone:
			generating = false
			if err != nil {
				failure = fmt.Errorf("inserting events: %w", err)
				break loop
			}
		case <-check.C:
		case <-report:
			progress(false)
		case err := <-t.failed:
			failure = err
			break loop
		case <-lctx.Done():
			res.TimedOut = ctx.Err() == nil
			break loop
		}
		if t.pipe == nil && time.Since(lastPoll) >= 500*time.Millisecond {
			lastPoll = time.Now()
			if n, err := t.countArchived(lctx, runID); err == nil {
				if n > tr.archived.Load() {
					// The newest archive happened at most a poll ago.
					storeMax(&tr.lastDoneAt, tr.since())
				}
				tr.archived.Store(n)
			}
		}
		if !generating && terminal() >= tr.inserted.Load() {
			break
		}
	}
	cancel()
	if generating {
		<-genDone
	}
	progress(true)

	res.Inserted = int(tr.inserted.Load())
	res.Terminal = int(terminal())
	if first := gen.firstAt.Load(); first > 0 {
		res.InsertSeconds = round(time.Duration(gen.lastAt.Load()-first).Seconds(), 3)
		if last := tr.lastDoneAt.Load(); last > first {
			res.Seconds = round(time.Duration(last-first).Seconds(), 3)
			res.Throughput = round(float64(res.Terminal)/res.Seconds, 1)
		}
	}
	if o.Rate > 0 {
		res.MaxInsertLagMs = ms(time.Duration(gen.maxLag.Load()))
	}
	if res.TimedOut {
		res.Notes = append(res.Notes, fmt.Sprintf("timed out after %s with %d of %d inserted events terminal", o.Timeout, res.Terminal, res.Inserted))
	}
	if ctx.Err() != nil {
		res.Notes = append(res.Notes, "interrupted before every event was terminal")
	}
	return failure
}

func observations(tr *tracker) []Observation {
	obs := make([]Observation, len(tr.recs))
	for i := range tr.recs {
		r := &tr.recs[i]
		obs[i] = Observation{
			ID:               tr.ids[i].Hex(),
			Inserted:         r.insertedAt.Load() != 0,
			Runs:             int(r.runs.Load()),
			Failures:         r.failures.Load(),
			Successes:        int(r.successes.Load()),
			Archives:         int(r.archives.Load()),
			TerminalAttempts: r.terminalAttempts.Load(),
			Probes:           r.probes(),
		}
	}
	return obs
}

// firstTimeLatencies are insert-to-success times of the events that
// succeeded at their first run.
func firstTimeLatencies(tr *tracker) []time.Duration {
	var out []time.Duration
	for i := range tr.recs {
		r := &tr.recs[i]
		ins, done := r.insertedAt.Load(), r.terminalAt.Load()
		if ins != 0 && done != 0 && r.successes.Load() == 1 && r.archives.Load() == 0 && r.failures.Load() == 0 {
			out = append(out, time.Duration(done-ins))
		}
	}
	return out
}

func settings(o Options) Settings {
	s := Settings{
		Count: o.Count, Rate: o.Rate, FailureRate: o.FailureRate, FailFirst: o.FailFirst, MaxAttempts: o.MaxAttempts,
		PayloadSize: o.PayloadSize, HandlerLatency: o.HandlerLatency.String(), Replicas: o.Replicas,
		Concurrency: o.Concurrency, RetryInitial: o.RetryInitial.String(), RetryMax: o.RetryMax.String(),
		Timeout: o.Timeout.String(), Type: o.Type, BackoffFlood: o.BackoffFlood,
		Policy: o.Policy, Breaker: o.Breaker, Keys: o.Keys, KeyMode: o.KeyMode, RateLimit: o.RateLimit,
	}
	if o.Outage > 0 {
		s.Outage = o.Outage.String()
	}
	if o.Rate == 0 {
		s.Inserters = o.Inserters
	}
	if !o.External() {
		s.Storage = o.Storage
		if o.Storage == StorageFile {
			s.SyncInterval = o.SyncInterval.String()
		}
		s.Retention = "off"
		if o.Retention > 0 {
			s.Retention = o.Retention.String()
		}
		s.SweepInterval = o.SweepInterval.String()
	}
	return s
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
