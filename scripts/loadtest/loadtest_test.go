package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// small is a run of a few hundred events that finishes in about a second.
func small() Options {
	return Options{
		Count:        300,
		FailureRate:  0.3,
		MaxAttempts:  2,
		RetryInitial: 10 * time.Millisecond,
		RetryMax:     20 * time.Millisecond,
		Replicas:     2,
		Timeout:      30 * time.Second,
		Retention:    50 * time.Millisecond,
	}
}

// A small run through the whole pipeline passes every invariant, with
// retention deleting succeeded events under the checker's feet.
func TestRunSmall(t *testing.T) {
	t.Parallel()
	o := small()
	o.SweepInterval = 100 * time.Millisecond
	var reports int
	o.Progress = func(Progress) { reports++ }
	res, err := Run(context.Background(), o)
	require.NoError(t, err)
	inv := res.Invariants
	require.True(t, inv.OK, "violations: %v", inv.Violations)
	require.Equal(t, 300, res.Inserted)
	require.Equal(t, 300, res.Terminal)
	require.False(t, res.TimedOut)
	require.Equal(t, 300, res.Outcomes.Succeeded+res.Outcomes.Archived)
	require.Greater(t, res.Outcomes.Archived, 0, "30%% failures with 2 attempts archive some")
	require.Greater(t, res.Outcomes.SucceededAfterRetry, 0)
	require.Equal(t, res.Outcomes.SucceededFirstTime, res.Latency.Count)
	require.Greater(t, res.RetryLateness.Count, 0)
	require.Equal(t, res.HandlerFailures, int64(res.RetryLateness.Count+res.Outcomes.Archived), "every failure is followed by a retry or an archive")
	require.Positive(t, res.Throughput)
	require.Positive(t, res.PeakRSS)
	require.EqualValues(t, inv.Retired, res.Pipeline.Retired)
	require.GreaterOrEqual(t, reports, 1, "the final progress report")
}

// The checker, fed by a real run, flags an event deleted behind the
// pipeline's back as lost, an attempts count bumped by one as
// double-counted, and an event set back to failed as non-terminal.
func TestRunFlagsBrokenInvariants(t *testing.T) {
	t.Parallel()
	o := small()
	o.FailureRate = 0
	o.Retention = -1 // keep succeeded events, so there are some to tamper with
	var lost, bumped, reset string
	o.tamper = func(tg *target) {
		ctx := context.Background()
		docs, err := tg.events.Find(ctx, bson.D{}, store.FindOptions{Sort: bson.D{{Key: "_id", Value: 1}}, Limit: 3})
		require.NoError(t, err)
		require.Len(t, docs, 3)
		ids := make([]bson.RawValue, 3)
		for i, d := range docs {
			ids[i] = d.Lookup("_id")
		}
		lost, bumped, reset = event.IDString(ids[0]), event.IDString(ids[1]), event.IDString(ids[2])
		n, err := tg.events.DeleteOne(ctx, bson.D{{Key: "_id", Value: ids[0]}})
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		_, err = tg.events.UpdateOne(ctx, bson.D{{Key: "_id", Value: ids[1]}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}}}, false)
		require.NoError(t, err)
		_, err = tg.events.UpdateOne(ctx, bson.D{{Key: "_id", Value: ids[2]}}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: event.StateFailed}}}}, false)
		require.NoError(t, err)
	}
	res, err := Run(context.Background(), o)
	require.NoError(t, err)
	inv := res.Invariants
	require.False(t, inv.OK)
	require.Equal(t, 1, inv.Lost, "%v", inv.Violations)
	require.Equal(t, 1, inv.DoubleCounted, "%v", inv.Violations)
	require.Equal(t, 1, inv.NonTerminal, "%v", inv.Violations)
	require.ElementsMatch(t, []Violation{
		{Kind: KindLost, Detail: "1 succeeded events are gone from events, but retention deleted only 0"},
		{Kind: KindDoubleCounted, ID: bumped, Detail: "1 attempts in events, but its handler recorded 0 failures"},
		{Kind: KindNonTerminal, ID: reset, Detail: "succeeded, then found in state failed"},
	}, inv.Violations)
	require.NotEmpty(t, lost)
}

func TestChecker(t *testing.T) {
	t.Parallel()
	ok := func(id string, failures int64) Observation {
		return Observation{ID: id, Inserted: true, Runs: int(failures) + 1, Failures: failures, Successes: 1, TerminalAttempts: failures}
	}
	archived := func(id string, failures int64) Observation {
		return Observation{ID: id, Inserted: true, Runs: int(failures), Failures: failures, Archives: 1, TerminalAttempts: failures}
	}
	inEvents := func(s event.State, attempts int64) Stored {
		return Stored{InEvents: true, State: s, Attempts: attempts}
	}
	inErrors := func(attempts int64) Stored { return Stored{InErrors: true, ErrorsAttempts: attempts} }
	embedded := Checker{RetiredKnown: true, ArchivesObserved: true}
	tests := []struct {
		name    string
		checker Checker
		obs     []Observation
		stored  map[string]Stored
		want    map[string]int // kind -> count
	}{
		{"all fine", embedded,
			[]Observation{ok("a", 0), ok("b", 2), archived("c", 3)},
			map[string]Stored{"a": inEvents(1, 0), "b": inEvents(1, 2), "c": inErrors(3)}, nil},
		{"retired, by count", Checker{Retired: 1, RetiredKnown: true, ArchivesObserved: true},
			[]Observation{ok("a", 0), ok("b", 1)},
			map[string]Stored{"b": inEvents(1, 1)}, nil},
		{"gone without retention", embedded,
			[]Observation{ok("a", 0)}, map[string]Stored{}, map[string]int{KindLost: 1}},
		{"never terminal and gone", embedded,
			[]Observation{{ID: "a", Inserted: true, Runs: 1, Failures: 1}}, map[string]Stored{}, map[string]int{KindLost: 1}},
		{"archived but not in errors", embedded,
			[]Observation{archived("a", 3)}, map[string]Stored{}, map[string]int{KindLost: 1}},
		{"attempts above the failures", embedded,
			[]Observation{ok("a", 1)}, map[string]Stored{"a": inEvents(1, 2)}, map[string]int{KindDoubleCounted: 1}},
		{"success transition with wrong attempts, retired", Checker{Retired: 1, RetiredKnown: true, ArchivesObserved: true},
			[]Observation{{ID: "a", Inserted: true, Runs: 1, Successes: 1, TerminalAttempts: 1}}, map[string]Stored{}, map[string]int{KindDoubleCounted: 1}},
		{"errors attempts above the failures", embedded,
			[]Observation{archived("a", 2)}, map[string]Stored{"a": inErrors(3)}, map[string]int{KindDoubleCounted: 1}},
		{"terminal twice", embedded,
			[]Observation{{ID: "a", Inserted: true, Runs: 2, Successes: 2}}, map[string]Stored{"a": inEvents(1, 0)}, map[string]int{KindDoubleCounted: 1}},
		{"in both places", embedded,
			[]Observation{archived("a", 3)}, map[string]Stored{"a": {InEvents: true, State: event.StateError, Attempts: 3, InErrors: true, ErrorsAttempts: 3}}, map[string]int{KindDoubleCounted: 1}},
		{"left failed", embedded,
			[]Observation{{ID: "a", Inserted: true, Runs: 1, Failures: 1}}, map[string]Stored{"a": inEvents(event.StateFailed, 1)}, map[string]int{KindNonTerminal: 1}},
		{"left new", embedded,
			[]Observation{{ID: "a", Inserted: true}}, map[string]Stored{"a": inEvents(event.StateNew, 0)}, map[string]int{KindNonTerminal: 1}},
		{"success unobserved", embedded,
			[]Observation{{ID: "a", Inserted: true, Runs: 1}}, map[string]Stored{"a": inEvents(1, 0)}, map[string]int{KindUnobserved: 1}},
		{"stray document", embedded,
			[]Observation{ok("a", 0)}, map[string]Stored{"a": inEvents(1, 0), "z": inEvents(1, 0)}, map[string]int{KindDoubleCounted: 1}},
		{"never inserted is no part of the run", embedded,
			[]Observation{{ID: "a"}}, map[string]Stored{}, nil},
		{"external: errors document is the archive", Checker{},
			[]Observation{{ID: "a", Inserted: true, Runs: 2, Failures: 2}}, map[string]Stored{"a": inErrors(2)}, nil},
		{"external: gone after success is unverified", Checker{},
			[]Observation{ok("a", 0)}, map[string]Stored{}, nil},
		{"external: errors attempts checked", Checker{},
			[]Observation{{ID: "a", Inserted: true, Runs: 2, Failures: 2}}, map[string]Stored{"a": inErrors(3)}, map[string]int{KindDoubleCounted: 1}},
		{"failed probes spend no attempt", Checker{RetiredKnown: true, ArchivesObserved: true, FailedProbes: 3, FailedProbesKnown: true},
			[]Observation{
				{ID: "a", Inserted: true, Runs: 4, Failures: 3, Probes: 2, Successes: 1, TerminalAttempts: 1},
				{ID: "b", Inserted: true, Runs: 3, Failures: 3, Probes: 1, Archives: 1, TerminalAttempts: 2},
			},
			map[string]Stored{"a": inEvents(1, 1), "b": inErrors(2)}, nil},
		{"a probe's failure counted as an attempt", Checker{RetiredKnown: true, ArchivesObserved: true, FailedProbes: 1, FailedProbesKnown: true},
			[]Observation{{ID: "a", Inserted: true, Runs: 2, Failures: 1, Probes: 1, Successes: 1, TerminalAttempts: 1}},
			map[string]Stored{"a": inEvents(1, 1)}, map[string]int{KindDoubleCounted: 1}},
		{"an attempt uncounted passing for a probe", Checker{RetiredKnown: true, ArchivesObserved: true, FailedProbes: 0, FailedProbesKnown: true},
			[]Observation{{ID: "a", Inserted: true, Runs: 2, Failures: 1, Probes: 1, Successes: 1, TerminalAttempts: 0}},
			map[string]Stored{"a": inEvents(1, 0)}, map[string]int{KindDoubleCounted: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.checker.Check(tt.obs, tt.stored)
			got := map[string]int{}
			for kind, n := range map[string]int{KindLost: r.Lost, KindDoubleCounted: r.DoubleCounted, KindNonTerminal: r.NonTerminal, KindUnobserved: r.Unobserved} {
				if n > 0 {
					got[kind] = n
				}
			}
			if tt.want == nil {
				tt.want = map[string]int{}
			}
			require.Equal(t, tt.want, got, "violations: %v", r.Violations)
			require.Equal(t, len(tt.want) == 0, r.OK)
		})
	}
}

func TestCheckerCounts(t *testing.T) {
	t.Parallel()
	r := Checker{Retired: 1, RetiredKnown: true, ArchivesObserved: true}.Check([]Observation{
		{ID: "a", Inserted: true, Runs: 1, Successes: 1},
		{ID: "b", Inserted: true, Runs: 3, Failures: 1, Successes: 1, TerminalAttempts: 1}, // one run too many
		{ID: "c", Inserted: true, Runs: 2, Failures: 2, Archives: 1, TerminalAttempts: 2},
	}, map[string]Stored{"b": {InEvents: true, State: event.StateSuccess, Attempts: 1}, "c": {InErrors: true, ErrorsAttempts: 2}})
	require.True(t, r.OK, "%v", r.Violations)
	require.Equal(t, Report{OK: true, Inserted: 3, Succeeded: 2, SucceededFirstTime: 1, Archived: 1, Retired: 1, DuplicateRuns: 1, Violations: []Violation{}}, r)
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted: Summarize sorts
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{"none", nil, Summary{}},
		{"one", ms(7), Summary{Count: 1, P50: 7, P90: 7, P99: 7, Max: 7}},
		{"two", ms(2, 1), Summary{Count: 2, P50: 1, P90: 2, P99: 2, Max: 2}},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), Summary{Count: 10, P50: 5, P90: 9, P99: 10, Max: 10}},
		{"hundred", ms(hundred...), Summary{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Summarize(tt.samples))
		})
	}
	require.Equal(t, 1500*time.Microsecond, Percentile([]time.Duration{1500 * time.Microsecond}, 0.1))
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"failure rate", Options{FailureRate: 1.5}, "-failure-rate (RETRIGGER_FAILURE_RATE)"},
		{"negative rate", Options{Rate: -1}, "-rate (RETRIGGER_RATE)"},
		{"storage", Options{Storage: "disk"}, "-storage"},
		{"type", Options{Type: "a.b"}, "-type"},
		{"external needs both", Options{MongoURI: "mongodb://127.0.0.1"}, "-nats-url"},
		{"no ceiling outside", Options{MongoURI: "mongodb://127.0.0.1", NATSURL: "nats://127.0.0.1:4222", Ceiling: true}, "-ceiling"},
		{"retry max", Options{RetryInitial: time.Second, RetryMax: time.Millisecond}, "-retry-max"},
	}
	for _, tt := range tests {
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
}
