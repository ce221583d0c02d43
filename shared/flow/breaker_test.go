package flow

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func local(rules Breaker, at time.Time, runs, fails int64) counts {
	c := newCounts(rules.Window / windowBuckets)
	c.add(c.bucket(at), runs, fails)
	return c
}

// The breaker trips on enough runs, enough of them failing, in the window,
// counted across the replicas that write their counts; not before.
func TestBreakerTrips(t *testing.T) {
	t.Parallel()
	rules := defaultBreaker
	var f eventstore.FlowState
	tripped, _ := record(&f, rules, local(rules, t0, 10, 10), t0, "503")
	require.False(t, tripped, "10 runs: too few")
	tripped, _ = record(&f, rules, local(rules, t0.Add(5*time.Second), 9, 9), t0.Add(5*time.Second), "503")
	require.False(t, tripped, "19 runs: still too few")
	tripped, why := record(&f, rules, local(rules, t0.Add(6*time.Second), 1, 1), t0.Add(6*time.Second), "503 Service Unavailable")
	require.True(t, tripped, "20 of 20 failed within 30s, from two replicas' counts")
	require.Contains(t, why, "20 of 20 runs failed in 30s; the last: 503 Service Unavailable")
	require.Equal(t, Open, state(&f, rules, t0.Add(6*time.Second)))
	require.True(t, f.Breaker.NextProbe.Equal(t0.Add(11*time.Second)))
	require.EqualValues(t, 1, f.Breaker.Trips)
}

func TestBreakerIgnoresOldAndHealthyRuns(t *testing.T) {
	t.Parallel()
	rules := defaultBreaker
	var f eventstore.FlowState
	tripped, _ := record(&f, rules, local(rules, t0, 19, 19), t0, "")
	require.False(t, tripped)
	tripped, _ = record(&f, rules, local(rules, t0.Add(31*time.Second), 5, 5), t0.Add(31*time.Second), "")
	require.False(t, tripped, "the 19 fell out of the window")

	var g eventstore.FlowState
	tripped, _ = record(&g, rules, local(rules, t0, 100, 79), t0, "")
	require.False(t, tripped, "79% failing: degraded, not down")
	tripped, _ = record(&g, rules, local(rules, t0, 5, 5), t0, "")
	require.True(t, tripped, "84 of 105")

	off := Breaker{Off: true}
	var h eventstore.FlowState
	tripped, _ = record(&h, off, local(defaultBreaker, t0, 100, 100), t0, "")
	require.False(t, tripped, "a breaker turned off never trips")
}

// Open: one probe at a time; a failed probe waits 1.5 times longer, up to
// the maximum; a probe that succeeds lets the backlog out in waves that
// double every 5s, and the breaker closes at 64.
func TestBreakerProbesAndRecovers(t *testing.T) {
	t.Parallel()
	rules := defaultBreaker
	var f eventstore.FlowState
	trip(&f, rules, t0, "down")
	a := event.Lease{Owner: "a", Token: 1, Until: t0.Add(time.Minute)}
	b := event.Lease{Owner: "b", Token: 2, Until: t0.Add(time.Minute)}
	require.False(t, takeProbe(&f, rules, a, t0.Add(4*time.Second)), "not before its time")
	require.True(t, takeProbe(&f, rules, a, t0.Add(5*time.Second)))
	require.False(t, takeProbe(&f, rules, b, t0.Add(6*time.Second)), "one probe at a time")
	require.True(t, takeProbe(&f, rules, b, t0.Add(61*time.Second)), "a probe whose replica died is taken over after its bound")

	var intervals []time.Duration
	now := t0
	for range 7 {
		probeFailed(&f, rules, now, "503")
		intervals = append(intervals, f.Breaker.NextProbe.Sub(now))
		now = f.Breaker.NextProbe
	}
	require.Equal(t, []time.Duration{7500 * time.Millisecond, 11250 * time.Millisecond, 16875 * time.Millisecond, 25312500 * time.Microsecond,
		30 * time.Second, 30 * time.Second, 30 * time.Second}, intervals)
	require.Contains(t, f.Breaker.Reason, "probe failed: 503")

	probeInconclusive(&f, now)
	require.True(t, f.Breaker.NextProbe.Equal(now), "an inconclusive probe: another probes now")

	recovered(&f, rules, now)
	var waves []int
	for s := 0; s <= 35; s += 5 {
		at := now.Add(time.Duration(s) * time.Second)
		waves = append(waves, waveLimit(&f, rules, at))
		if s < 30 {
			require.Equal(t, Recovering, state(&f, rules, at))
		}
	}
	require.Equal(t, []int{1, 2, 4, 8, 16, 32, 64, 64}, waves)
	require.Equal(t, Closed, state(&f, rules, now.Add(30*time.Second)), "closed once the wave reaches 64")
}

func TestPause(t *testing.T) {
	t.Parallel()
	f := eventstore.FlowState{Pause: &eventstore.Pause{Until: t0.Add(time.Minute)}}
	held, until := paused(&f, t0)
	require.True(t, held)
	require.True(t, until.Equal(t0.Add(time.Minute)))
	held, _ = paused(&f, t0.Add(time.Minute))
	require.False(t, held, "a pause ends at its time without a write")
	f.Pause.Until = time.Time{}
	held, until = paused(&f, t0.Add(time.Hour))
	require.True(t, held)
	require.True(t, until.IsZero(), "no end: until resumed")
}

// Keys compare as MongoDB compares values: numbers by value, the rest by
// type and bytes; a missing or null field is no key.
func TestKeyOf(t *testing.T) {
	t.Parallel()
	doc := func(v any) bson.Raw {
		raw, err := bson.Marshal(bson.D{{Key: "payload", Value: bson.D{{Key: "k", Value: v}}}})
		require.NoError(t, err)
		return raw
	}
	hash := func(v any) string {
		_, h, ok := KeyOf(doc(v), "payload.k")
		require.True(t, ok)
		require.Len(t, h, 32)
		return h
	}
	require.Equal(t, hash(int32(7)), hash(int64(7)))
	require.Equal(t, hash(int32(7)), hash(7.0))
	require.NotEqual(t, hash(int32(7)), hash("7"))
	require.Equal(t, hash(0.0), hash(int32(0)))
	require.NotEqual(t, hash(int64(1<<60)), hash(int64(1<<60+1)), "large integers stay apart")
	require.NotEqual(t, hash(bson.D{{Key: "a", Value: 1}}), hash(bson.A{1}))
	require.Equal(t, hash(bson.D{{Key: "a", Value: 1}}), hash(bson.D{{Key: "a", Value: 1}}))
	big := make([]byte, 1<<20)
	require.Len(t, hash(string(big)), 32, "a megabyte key hashes to 32 characters")
	for _, d := range []bson.Raw{doc(nil), mustRaw(t, bson.D{{Key: "payload", Value: bson.D{}}}), mustRaw(t, bson.D{})} {
		_, _, ok := KeyOf(d, "payload.k")
		require.False(t, ok)
	}
}

func mustRaw(t *testing.T, d bson.D) bson.Raw {
	raw, err := bson.Marshal(d)
	require.NoError(t, err)
	return raw
}
