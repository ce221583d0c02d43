package loadtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fastBreaker trips after 10 runs and probes every few tenths of a second,
// so an outage of seconds shows every phase.
const fastBreaker = "min-runs=10,window=5s,probe=300ms,max-probe=600ms"

// A partner down for 2s while 100 events arrive: the breaker trips, its
// failed probes spend no attempt (and the checker accepts them, counted
// against the breakers' own count), no event is archived, and every event
// ends after the partner recovers.
func TestOutage(t *testing.T) {
	// Not in parallel: TestCostSplitsByPart records every allocation
	// of the process meanwhile, which slows a run with timed phases
	// several times over; run alone, each takes a few seconds.
	o := Options{
		Count: 100, Rate: 50, Replicas: 2, Timeout: time.Minute,
		RetryInitial: 200 * time.Millisecond, RetryMax: time.Second, MaxAttempts: 50,
		Outage: 2 * time.Second, Breaker: fastBreaker,
	}
	res, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.True(t, res.Invariants.OK, "violations: %v", res.Invariants.Violations)
	f := res.Flow
	require.NotNil(t, f)
	require.NotNil(t, f.Outage)
	out := f.Outage
	t.Logf("outage: %+v; failed probes %d, waits %v", *out, f.FailedProbes, f.Waits)
	require.Equal(t, 100, res.Outcomes.Succeeded)
	require.Zero(t, out.Archived)
	require.True(t, out.Tripped, "the breaker tripped")
	require.Positive(t, f.Trips)
	require.Positive(t, f.FailedProbes, "the partner was probed while down")
	require.Equal(t, f.FailedProbes, res.Invariants.Probes, "the checker found every failed probe")
	require.LessOrEqual(t, out.CallsAfterTrip, out.Calls)
	require.Equal(t, out.Calls, res.HandlerFailures, "every call while down failed, and no other")
	require.Equal(t, out.Calls-f.FailedProbes, out.AttemptsSpent, "the failed calls spent their attempts, but the probes")
	require.False(t, out.DrainedBeforeRecovery)
	require.Positive(t, out.RecoveryToDrainedSeconds)
	require.Empty(t, f.Broken)
}

// With the breaker off, the same outage spends an attempt on every call,
// and nothing is held.
func TestOutageBreakerOff(t *testing.T) {
	// Not in parallel: see TestOutage.
	o := Options{
		Count: 50, Rate: 50, Replicas: 2, Timeout: time.Minute,
		RetryInitial: 200 * time.Millisecond, RetryMax: 500 * time.Millisecond, MaxAttempts: 50,
		Outage: time.Second, Breaker: "off",
	}
	res, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.True(t, res.Invariants.OK, "violations: %v", res.Invariants.Violations)
	f := res.Flow
	require.Equal(t, "off", f.Breaker)
	require.Zero(t, f.Trips)
	require.False(t, f.Outage.Tripped)
	require.Zero(t, f.FailedProbes)
	require.Zero(t, res.Invariants.Probes)
	require.Equal(t, f.Outage.Calls, f.Outage.AttemptsSpent, "every call to the dead partner spent an attempt")
	require.Positive(t, f.Outage.Calls)
}

// Ordered keys: one run of a key at a time, its successes in insertion
// order, with 20% of the runs failing; a key of concurrency 2 runs two at
// once, never three.
func TestKeys(t *testing.T) {
	// Not in parallel: see TestOutage.
	for _, tt := range []struct {
		mode    string
		limit   int
		latency time.Duration
	}{
		{KeyOrdered, 1, 0},
		{"concurrency:2", 2, 10 * time.Millisecond},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			o := Options{
				Count: 200, Replicas: 4, Timeout: time.Minute, FailureRate: 0.2, HandlerLatency: tt.latency,
				RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxAttempts: 20,
				Keys: 10, KeyMode: tt.mode,
			}
			res, err := Run(context.Background(), o)
			require.NoError(t, err)
			require.True(t, res.Invariants.OK, "violations: %v", res.Invariants.Violations)
			k := res.Flow.Keys
			require.NotNil(t, k)
			t.Logf("keys: %+v", *k)
			require.Equal(t, tt.limit, k.Limit)
			require.Equal(t, tt.limit, k.MaxOverlap, "the limit held, and was reached")
			require.Positive(t, k.KeysAtLimit)
			require.Positive(t, k.Parked, "events waited for their key")
			if tt.mode == KeyOrdered {
				// Known, and reported: an event inserted within the
				// millisecond the relay's change stream opened is also
				// published by the producer's first full sweep, whose
				// message carries no insertion order; when that message
				// arrives first, flow control places the event at the
				// time it first saw it, after later events of its key.
				// Only such events may come out of order.
				require.LessOrEqual(t, k.OutOfOrder, res.Pipeline.Swept, "successes out of insertion order beyond the events the startup sweep published")
				if k.OutOfOrder == 0 {
					require.Empty(t, res.Flow.Broken)
				}
			} else {
				require.Empty(t, res.Flow.Broken)
			}
			require.Positive(t, res.Pipeline.Held)
		})
	}
}

// A rate limit across 4 replicas: the report counts every start, and the
// starts in any one second stay within the limit plus its burst.
func TestRateLimit(t *testing.T) {
	// Not in parallel: see TestOutage.
	o := Options{Count: 80, Replicas: 4, Timeout: time.Minute, RateLimit: "40/s,burst=4"}
	res, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.True(t, res.Invariants.OK, "violations: %v", res.Invariants.Violations)
	r := res.Flow.Rate
	require.NotNil(t, r)
	t.Logf("rate: %+v", *r)
	require.Equal(t, 80, r.Runs)
	require.Equal(t, 44, r.LimitPlusBurst)
	require.Positive(t, r.SeenPerSecond)
	require.LessOrEqual(t, r.MaxInOneSecond, r.LimitPlusBurst)
	require.Positive(t, res.Flow.Waits["rate"], "runs waited for their turn")
	require.Empty(t, res.Flow.Broken)
}

func TestRateSeen(t *testing.T) {
	t.Parallel()
	s := func(ms ...int) []int64 {
		out := make([]int64, len(ms))
		for i, m := range ms {
			out[i] = int64(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	r := RateResult{Burst: 2}
	// A burst of 2 at once, then one every 100ms: 10/s.
	rateSeen(s(1000, 0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900), &r)
	require.Equal(t, 12, r.Runs)
	require.InDelta(t, 10.0, r.SeenPerSecond, 0.001)
	require.Equal(t, 1.0, r.SpanSeconds)
	require.Equal(t, 11, r.MaxInOneSecond, "[0, 1s) holds all but the last")
	r = RateResult{Burst: 1}
	rateSeen(s(5), &r)
	require.Equal(t, RateResult{Burst: 1, Runs: 1, MaxInOneSecond: 1}, r)
}

// A success of a key after one of a later event of that key is out of
// order; successes of other keys, or a repeat, are not.
func TestOutOfOrder(t *testing.T) {
	t.Parallel()
	var first atomic.Int64
	f := newFlowTracker(Options{Keys: 2}, &first)
	// Key 0 sees 0, 4, 2 (2 after 4: out of order); key 1 sees 1, 3, 3
	// (a repeat), 5, 7.
	for _, i := range []int{0, 1, 4, 2, 3, 3, 5, 7} {
		f.succeeded(i)
	}
	require.EqualValues(t, 1, f.outOfOrder.Load())
}

func TestFlowOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"every mode", Options{Outage: time.Second, Keys: 10, KeyMode: "concurrency:3", RateLimit: "5/s,burst=10", Breaker: "min-runs=5,failure-ratio=90%"}, ""},
		{"ordered by default", Options{Keys: 10}, ""},
		{"breaker off", Options{Breaker: "off"}, ""},
		{"negative outage", Options{Outage: -time.Second}, "-outage (RETRIGGER_OUTAGE)"},
		{"negative keys", Options{Keys: -1}, "-keys (RETRIGGER_KEYS)"},
		{"key mode without keys", Options{KeyMode: KeyOrdered}, "-key-mode (RETRIGGER_KEY_MODE): needs -keys"},
		{"unknown key mode", Options{Keys: 3, KeyMode: "fifo"}, "-key-mode (RETRIGGER_KEY_MODE)"},
		{"zero concurrency", Options{Keys: 3, KeyMode: "concurrency:0"}, "-key-mode (RETRIGGER_KEY_MODE)"},
		{"ordered with concurrent inserts", Options{Keys: 3, Inserters: 4}, "-inserters (RETRIGGER_INSERTERS)"},
		{"concurrency with concurrent inserts", Options{Keys: 3, KeyMode: "concurrency:2", Inserters: 4}, ""},
		{"rate without unit", Options{RateLimit: "50"}, "-rate-limit (RETRIGGER_RATE_LIMIT): rate \"50\""},
		{"zero rate", Options{RateLimit: "0/s"}, "-rate-limit (RETRIGGER_RATE_LIMIT)"},
		{"two types", Options{RateLimit: "5/s;other=1/s"}, "-rate-limit (RETRIGGER_RATE_LIMIT)"},
		{"unknown knob", Options{Breaker: "trips=3"}, "-breaker (RETRIGGER_BREAKER): unknown knob \"trips\""},
		{"bad policy", Options{Policy: "fast"}, "-policy (RETRIGGER_POLICY)"},
		{"stock policy", Options{Policy: PolicyStock}, ""},
		{"stock policy with its own values", Options{Policy: PolicyStock, MaxAttempts: 20, RetryInitial: time.Second}, ""},
		{"stock policy with other attempts", Options{Policy: PolicyStock, MaxAttempts: 3}, "-max-attempts (RETRIGGER_MAX_ATTEMPTS): cannot be used with -policy stock"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.o.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	d := Options{Policy: PolicyStock}.WithDefaults()
	require.Equal(t, int64(20), d.MaxAttempts)
	require.Equal(t, time.Second, d.RetryInitial)
	require.Equal(t, 10*time.Minute, d.RetryMax)
	require.False(t, Options{}.WithDefaults().flowMode(), "no flow mode by default")
}
