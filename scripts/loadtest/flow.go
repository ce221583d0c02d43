package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/metrics"
)

// keyField is the payload field that carries an event's key (Options.Keys).
const keyField = "k"

// maxKeys bounds Options.Keys: the tracker keeps a few counters per key.
const maxKeys = 1_000_000

// errPartnerDown is what the handler returns while its partner is down
// (Options.Outage): a plain error, retryable, that counts toward the
// breaker, as a 503 from the http handler does.
var errPartnerDown = errors.New("loadtest: POST partner: 503 Service Unavailable")

// FlowResult is what a run saw of flow control (docs/DESIGN.md, Flow
// control): its breaker, and what each flow mode measured.
type FlowResult struct {
	// Breaker is the workers' breaker, as flow.ParseBreaker wrote it, or
	// "off".
	Breaker string `json:"breaker"`
	// Trips counts the trips of the load type's breaker, and State is the
	// breaker's at the end (closed, open, recovering), from its document.
	Trips int64  `json:"trips"`
	State string `json:"state"`
	// FailedProbes counts the probes that found the partner still down:
	// each spent no attempt (its history shows a "probe" entry).
	FailedProbes int64 `json:"failed_probes"`
	// Waits counts the claimed events flow control held back, by reason
	// (paused, breaker, rate, recovery, key): each was parked, its lease
	// given back, and spent no attempt.
	Waits map[string]int64 `json:"waits"`

	Outage *OutageResult `json:"outage,omitempty"`
	Keys   *KeysResult   `json:"keys,omitempty"`
	Rate   *RateResult   `json:"rate,omitempty"`

	// Broken lists the flow promises the run saw broken: a key run beyond
	// its limit, an ordered key's successes out of insertion order, more
	// starts in one second than the rate limit plus its burst.
	Broken []string `json:"broken"`
}

// OutageResult is what a run with a partner outage saw.
type OutageResult struct {
	// Seconds is how long the partner was down, from the first insert.
	Seconds float64 `json:"seconds"`
	// Archived counts the events archived into errors.
	Archived int `json:"archived"`
	// Calls counts the handler's calls to the partner while it was down;
	// CallsAfterTrip those from the breaker's trip to the recovery
	// (the runs already under way, the replicas that had not read the trip
	// yet, and the probes).
	Calls          int64 `json:"calls"`
	CallsAfterTrip int64 `json:"calls_after_trip"`
	// Tripped says whether the breaker tripped during the outage, and
	// TripSeconds when, from the first insert (the trip's own time, as its
	// document records it).
	Tripped     bool    `json:"tripped"`
	TripSeconds float64 `json:"trip_s,omitempty"`
	// RecoveryToDrainedSeconds runs from the partner's recovery to the
	// last event's terminal state; 0 with DrainedBeforeRecovery, when every
	// event was terminal before the partner came back (all archived).
	RecoveryToDrainedSeconds float64 `json:"recovery_to_drained_s"`
	DrainedBeforeRecovery    bool    `json:"drained_before_recovery,omitempty"`
	// AttemptsSpent sums the attempts the events' terminal transitions
	// wrote: the failed runs that counted.
	AttemptsSpent int64 `json:"attempts_spent"`
}

// KeysResult is what a run with keys saw.
type KeysResult struct {
	Keys int    `json:"keys"`
	Mode string `json:"mode"` // ordered, or concurrency:C
	// Limit is the runs of one key allowed at once (ordered: 1);
	// MaxOverlap the most the handler saw at once for any key, and
	// KeysAtLimit how many keys reached the limit.
	Limit       int `json:"limit"`
	MaxOverlap  int `json:"max_overlap"`
	KeysAtLimit int `json:"keys_at_limit"`
	// OutOfOrder counts successes that came after a success of a later
	// event of the same key (insertion order): 0 is promised for ordered
	// keys only.
	OutOfOrder int64 `json:"out_of_order"`
	// Parked counts the claimed events held back for their key.
	Parked int64 `json:"parked"`
}

// RateResult is what a run with a rate limit saw.
type RateResult struct {
	Limit     string  `json:"limit"` // as given
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
	// Runs counts the handler's starts, over SpanSeconds from the first
	// to the last; SeenPerSecond is (Runs - Burst) / SpanSeconds, the burst
	// having started at once.
	Runs          int     `json:"runs"`
	SpanSeconds   float64 `json:"span_s"`
	SeenPerSecond float64 `json:"seen_per_second"`
	// MaxInOneSecond is the most starts in any one second (a sliding
	// window), against LimitPlusBurst.
	MaxInOneSecond int `json:"max_in_one_second"`
	LimitPlusBurst int `json:"limit_plus_burst"`
}

// flowMode reports whether o runs any flow mode, whose measures are in
// Result.Flow.
func (o Options) flowMode() bool {
	return o.Outage > 0 || o.Keys > 0 || o.RateLimit != "" || (o.Breaker != "" && o.Breaker != "on")
}

func (o Options) validateFlow() error {
	switch {
	case o.Outage < 0:
		return config.Invalid("outage", "must not be negative, got %s", o.Outage)
	case o.Keys < 0 || o.Keys > maxKeys:
		return config.Invalid("keys", "must be between 0 and %d, got %d", maxKeys, o.Keys)
	case o.Keys == 0 && o.KeyMode != "":
		return config.Invalid("key-mode", "needs -keys: how many keys the events are spread over")
	case o.Keys > 0 && o.KeyMode == KeyOrdered && o.Rate == 0 && o.Inserters > 1:
		return config.Invalid("inserters", "must be 1 with -key-mode ordered: with concurrent inserts the insertion order of a key's events is not known, got %d", o.Inserters)
	}
	_, err := o.flowConfig()
	return err
}

// flowConfig is the workers' flow control: the breaker, and the load
// type's rate limit and key.
func (o Options) flowConfig() (flow.Config, error) {
	var c flow.Config
	b, err := flow.ParseBreaker(o.Breaker, flow.Config{}.WithDefaults().Breaker)
	if err != nil {
		return c, config.Invalid("breaker", "%v", err)
	}
	c.Breaker = b
	if o.RateLimit != "" {
		if strings.ContainsAny(o.RateLimit, ";") {
			return c, config.Invalid("rate-limit", "one rate for the load's type, like 50/s or 5/s,burst=10, got %q", o.RateLimit)
		}
		rates, err := flow.ParseRates(o.Type + "=" + o.RateLimit)
		if err != nil {
			return c, config.Invalid("rate-limit", "%v", strings.TrimPrefix(err.Error(), "type "+o.Type+": "))
		}
		c.Rates = rates
	}
	if o.Keys > 0 {
		k, err := parseKeyMode(o.KeyMode)
		if err != nil {
			return c, config.Invalid("key-mode", "%v", err)
		}
		c.Keys = map[string]flow.Key{o.Type: k}
	}
	return c, nil
}

// parseKeyMode reads "ordered" or "concurrency:C".
func parseKeyMode(s string) (flow.Key, error) {
	k := flow.Key{Path: "payload." + keyField}
	if s == KeyOrdered {
		k.Ordered, k.Concurrency = true, 1
		return k, nil
	}
	v, ok := strings.CutPrefix(s, "concurrency:")
	if !ok {
		return k, fmt.Errorf("must be ordered or concurrency:C (C runs of one key at once), got %q", s)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return k, fmt.Errorf("concurrency:C needs C from 1 to 1000, got %q", v)
	}
	k.Concurrency = n
	return k, nil
}

// flowTracker is what the handler records for the flow modes. Handlers of
// different events run at once, so every field is atomic or under mu.
type flowTracker struct {
	outage int64 // ns the partner is down for, from the first insert; 0: never
	first  *atomic.Int64
	keys   int
	starts bool // record each run's start (a rate limit)

	running     []atomic.Int32 // per key: runs now
	peak        []atomic.Int32 // per key: the most at once
	lastSuccess []atomic.Int64 // per key: the highest event index succeeded, -1: none
	outOfOrder  atomic.Int64

	mu       sync.Mutex
	downAt   []int64 // calls while the partner was down, ns since base
	startsAt []int64 // every run's start, ns since base (rate mode)

	tripAt atomic.Int64 // the breaker's first trip, ns since base; 0: none seen
}

func newFlowTracker(o Options, first *atomic.Int64) *flowTracker {
	f := &flowTracker{outage: int64(o.Outage), first: first, keys: o.Keys, starts: o.RateLimit != ""}
	if o.Keys > 0 {
		f.running = make([]atomic.Int32, o.Keys)
		f.peak = make([]atomic.Int32, o.Keys)
		f.lastSuccess = make([]atomic.Int64, o.Keys)
		for i := range f.lastSuccess {
			f.lastSuccess[i].Store(-1)
		}
	}
	return f
}

// call records the start of a run of event i at (ns since base), and
// reports whether the partner is down then.
func (f *flowTracker) call(i int, at int64) (down bool) {
	if f.keys > 0 {
		k := i % f.keys
		n := f.running[k].Add(1)
		storeMax32(&f.peak[k], n)
	}
	down = f.outage > 0 && at < f.first.Load()+f.outage
	if down || f.starts {
		f.mu.Lock()
		if down {
			f.downAt = append(f.downAt, at)
		}
		if f.starts {
			f.startsAt = append(f.startsAt, at)
		}
		f.mu.Unlock()
	}
	return down
}

// end records the end of a run of event i.
func (f *flowTracker) end(i int) {
	if f.keys > 0 {
		f.running[i%f.keys].Add(-1)
	}
}

// succeeded records that a run of event i succeeded; a success after one
// of a later event of its key is out of insertion order.
func (f *flowTracker) succeeded(i int) {
	if f.keys == 0 {
		return
	}
	last := &f.lastSuccess[i%f.keys]
	for {
		old := last.Load()
		if int64(i) < old {
			f.outOfOrder.Add(1)
			return
		}
		if last.CompareAndSwap(old, int64(i)) {
			return
		}
	}
}

func storeMax32(v *atomic.Int32, x int32) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// watchTrip reads the type's breaker as operators see it every 100ms
// until ctx ends, and keeps the time of its first trip.
func (f *flowTracker) watchTrip(ctx context.Context, st *eventstore.Store, typ string, base time.Time) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for f.tripAt.Load() == 0 {
		if all, err := flow.Read(ctx, st, time.Now()); err == nil {
			for _, s := range all {
				if s.Type == typ && s.Breaker == flow.Open && !s.Since.IsZero() { // Since: the trip
					f.tripAt.Store(max(int64(s.Since.Sub(base)), 1))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// flowResult assembles what the run saw of flow control, after the
// components stopped.
func flowResult(ctx context.Context, o Options, t *target, tr *tracker, res *Result) *FlowResult {
	fl := tr.fl
	cfg, _ := o.flowConfig() // validated
	out := &FlowResult{Breaker: cfg.Breaker.String(), State: flow.Closed, Waits: map[string]int64{}, Broken: []string{}}
	if all, err := flow.Read(ctx, t.flowStore(), time.Now()); err == nil {
		for _, s := range all {
			if s.Type == o.Type {
				out.Trips, out.State = s.Trips, s.Breaker
			}
		}
	} else {
		res.Notes = append(res.Notes, "reading the breaker's state: "+err.Error())
	}
	out.FailedProbes = counter(t.metrics, "retrigger_breaker_probes_total", o.Type, "outcome")["failure"]
	out.Waits = counter(t.metrics, "retrigger_flow_waits_total", o.Type, "reason")

	if o.Outage > 0 {
		or := &OutageResult{Seconds: o.Outage.Seconds(), Archived: res.Outcomes.Archived}
		fl.mu.Lock()
		calls := slices.Clone(fl.downAt)
		fl.mu.Unlock()
		or.Calls = int64(len(calls))
		if trip := fl.tripAt.Load(); trip > 0 {
			recovery := tr.firstInsert.Load() + fl.outage
			or.Tripped = trip < recovery
			or.TripSeconds = round(time.Duration(trip-tr.firstInsert.Load()).Seconds(), 3)
			for _, at := range calls {
				if at >= trip {
					or.CallsAfterTrip++
				}
			}
		}
		recovery := tr.firstInsert.Load() + fl.outage
		if last := tr.lastDoneAt.Load(); last > recovery {
			or.RecoveryToDrainedSeconds = round(time.Duration(last-recovery).Seconds(), 3)
		} else if res.Terminal > 0 {
			or.DrainedBeforeRecovery = true
		}
		for i := range tr.recs {
			if tr.recs[i].terminalAt.Load() != 0 {
				or.AttemptsSpent += tr.recs[i].terminalAttempts.Load()
			}
		}
		out.Outage = or
	}
	if o.Keys > 0 {
		k := cfg.Keys[o.Type]
		kr := &KeysResult{Keys: o.Keys, Mode: o.KeyMode, Limit: k.Concurrency, OutOfOrder: fl.outOfOrder.Load(), Parked: out.Waits[flow.WaitKey]}
		for i := range fl.peak {
			p := int(fl.peak[i].Load())
			kr.MaxOverlap = max(kr.MaxOverlap, p)
			if p >= k.Concurrency {
				kr.KeysAtLimit++
			}
		}
		if kr.MaxOverlap > kr.Limit {
			out.Broken = append(out.Broken, fmt.Sprintf("a key ran %d at once, above its limit of %d", kr.MaxOverlap, kr.Limit))
		}
		if k.Ordered && kr.OutOfOrder > 0 {
			out.Broken = append(out.Broken, fmt.Sprintf("%d successes of ordered keys came out of insertion order", kr.OutOfOrder))
		}
		out.Keys = kr
	}
	if o.RateLimit != "" {
		r := cfg.Rates[o.Type]
		rr := &RateResult{Limit: o.RateLimit, PerSecond: r.PerSecond, Burst: max(r.Burst, 1)}
		rr.LimitPlusBurst = int(r.PerSecond) + rr.Burst
		fl.mu.Lock()
		starts := slices.Clone(fl.startsAt)
		fl.mu.Unlock()
		rateSeen(starts, rr)
		if rr.MaxInOneSecond > rr.LimitPlusBurst {
			out.Broken = append(out.Broken, fmt.Sprintf("%d runs started within one second, above the limit plus its burst (%d)", rr.MaxInOneSecond, rr.LimitPlusBurst))
		}
		out.Rate = rr
	}
	return out
}

// rateSeen fills r from the runs' starts (ns): the rate over their span,
// and the most starts in any one second.
func rateSeen(starts []int64, r *RateResult) {
	slices.Sort(starts)
	r.Runs = len(starts)
	if len(starts) < 2 {
		r.MaxInOneSecond = len(starts)
		return
	}
	span := time.Duration(starts[len(starts)-1] - starts[0])
	r.SpanSeconds = round(span.Seconds(), 3)
	if span > 0 {
		r.SeenPerSecond = round(float64(max(len(starts)-r.Burst, 0))/span.Seconds(), 2)
	}
	j := 0
	for i := range starts {
		for j < len(starts) && starts[j] < starts[i]+int64(time.Second) {
			j++
		}
		r.MaxInOneSecond = max(r.MaxInOneSecond, j-i)
	}
}

// counter sums a counter of m by one label, over the series of type typ.
func counter(m *metrics.Metrics, name, typ, by string) map[string]int64 {
	out := map[string]int64{}
	if m == nil {
		return out
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		return out
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var ofType bool
			var key string
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "type":
					ofType = l.GetValue() == typ
				case by:
					key = l.GetValue()
				}
			}
			if ofType {
				out[key] += int64(s.GetCounter().GetValue())
			}
		}
	}
	return out
}
