package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t0   = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pol  = policy{maxAttempts: 3, maxCrashes: 2, history: 20}
	next = 0
)

// events builds records as the stock commands write them.
func succeeded(failures int) record {
	r := newRecord(1, int64(failures))
	for i := range failures {
		r.Retrigger.History = append(r.Retrigger.History, entry{At: t0, Outcome: outcomeFailed, Replica: "consumer-1.1", Attempt: int64(i + 1)})
	}
	r.Retrigger.History = append(r.Retrigger.History, entry{At: t0, Outcome: outcomeSuccess, Replica: "consumer-2.1", Attempt: int64(failures + 1)})
	return r
}

func exhausted() record {
	r := newRecord(3, pol.maxAttempts)
	r.Retrigger.Reason = "exhausted"
	for i := range pol.maxAttempts {
		o := outcomeFailed
		if i == pol.maxAttempts-1 {
			o = outcomeError
		}
		r.Retrigger.History = append(r.Retrigger.History, entry{At: t0, Outcome: o, Attempt: i + 1})
	}
	r.Retrigger.History = append(r.Retrigger.History, entry{At: t0, Outcome: "archived", Error: "exhausted"})
	return r
}

func crashed() record {
	r := newRecord(3, 0)
	r.Retrigger.Reason = "crashed"
	r.Retrigger.History = []entry{{At: t0, Outcome: "crashed", Replica: "consumer-2.4"}, {At: t0, Outcome: "archived", Error: "crashed"}}
	return r
}

func newRecord(state, attempts int64) record {
	next++
	var r record
	r.ID = bson.NewObjectIDFromTimestamp(t0.Add(time.Duration(next) * time.Second))
	r.State, r.Attempts, r.Version = state, attempts, attempts+1
	return r
}

func leased(r record, owner string) record {
	r.Retrigger.Lease = &struct {
		Owner string    `bson:"owner"`
		Token int64     `bson:"token"`
		Until time.Time `bson:"until"`
	}{Owner: owner, Token: 7, Until: t0}
	return r
}

// inputOf places each record: events, errors or pruned by the check.
type placed struct {
	r     record
	where string // events, errors, both, pruned, pruned+events, nowhere
}

func inputOf(ps ...placed) input {
	in := input{events: map[bson.ObjectID]record{}, errors: map[bson.ObjectID]record{}, pruned: map[bson.ObjectID]record{},
		orphans: map[bson.ObjectID][]orphan{}, policy: pol}
	for _, p := range ps {
		in.inserted = append(in.inserted, p.r.ID)
		switch p.where {
		case "events":
			in.events[p.r.ID] = p.r
		case "errors":
			in.errors[p.r.ID] = p.r
		case "both":
			in.events[p.r.ID], in.errors[p.r.ID] = p.r, p.r
		case "pruned":
			in.pruned[p.r.ID] = p.r
		case "pruned+events":
			in.pruned[p.r.ID], in.events[p.r.ID] = p.r, p.r
		}
	}
	return in
}

func TestCheckPassesAHealthyRun(t *testing.T) {
	c := crashed()
	in := inputOf(
		placed{succeeded(0), "events"}, placed{succeeded(2), "events"}, placed{succeeded(1), "pruned"},
		placed{exhausted(), "errors"}, placed{c, "errors"},
	)
	// both of its unfinished runs were runs of killed consumers
	in.orphans[c.ID] = []orphan{{Owner: "consumer-1.2", Token: 1, KilledAt: t0}, {Owner: "consumer-2.3", Token: 2, KilledAt: t0}}
	out, vs := check(in)
	require.Empty(t, vs)
	require.Equal(t, 3, out.Succeeded)
	require.Equal(t, 1, out.FirstTime)
	require.Equal(t, 2, out.Archived)
	require.Equal(t, map[string]int{"exhausted": 1, "crashed": 1}, out.ByReason)
}

// Each way a run can break a promise is reported, with its kind.
func TestCheckFindsEachViolation(t *testing.T) {
	doubled := succeeded(1)
	doubled.Attempts = 2 // a failure counted twice
	twice := succeeded(0)
	twice.Retrigger.History = append(twice.Retrigger.History, entry{At: t0, Outcome: outcomeSuccess, Attempt: 2})
	renumbered := succeeded(2)
	renumbered.Retrigger.History[1].Attempt = 1 // one attempt recorded twice
	failed := newRecord(2, 1)
	failed.Retrigger.History = []entry{{Outcome: outcomeFailed, Attempt: 1}}
	archivedEarly := exhausted()
	archivedEarly.Attempts = 2
	archivedEarly.Retrigger.History = archivedEarly.Retrigger.History[1:]
	archivedEarly.Retrigger.History[0].Attempt, archivedEarly.Retrigger.History[1].Attempt = 1, 2
	permanent := exhausted()
	permanent.Retrigger.Reason = "permanent"
	overrun := succeeded(3)
	falseCrash := crashed()
	halfCrash := crashed()

	for _, tt := range []struct {
		name string
		p    placed
		kind string
		with func(*input)
	}{
		{"lost", placed{succeeded(0), "nowhere"}, kindLost, nil},
		{"left failed", placed{failed, "events"}, kindNotTerminal, nil},
		{"left new", placed{newRecord(0, 0), "events"}, kindNotTerminal, nil},
		{"in both places", placed{exhausted(), "both"}, kindBoth, nil},
		{"back after pruning", placed{succeeded(0), "pruned+events"}, kindCameBack, nil},
		{"succeeded but leased", placed{leased(succeeded(0), "consumer-1.1"), "events"}, kindLeased, nil},
		{"archived but leased", placed{leased(exhausted(), "consumer-1.1"), "errors"}, kindLeased, nil},
		{"attempts above the failed runs", placed{doubled, "events"}, kindDoubleCount, nil},
		{"two successes", placed{twice, "events"}, kindDoubleCount, nil},
		{"an attempt recorded twice", placed{renumbered, "events"}, kindRuns, nil},
		{"archived before exhaustion", placed{archivedEarly, "errors"}, kindPolicy, nil},
		{"succeeded past the maximum", placed{overrun, "events"}, kindPolicy, nil},
		{"archived as permanent", placed{permanent, "errors"}, kindWrongArchive, nil},
		{"crashed with no kill", placed{falseCrash, "errors"}, kindFalseCrash, nil},
		{"crashed with one kill of two", placed{halfCrash, "errors"}, kindFalseCrash, func(in *input) {
			// the same lease seen twice is one interrupted run
			in.orphans[halfCrash.ID] = []orphan{{Owner: "consumer-1.2", Token: 5}, {Owner: "consumer-1.2", Token: 5}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := inputOf(tt.p, placed{succeeded(0), "events"})
			if tt.with != nil {
				tt.with(&in)
			}
			_, vs := check(in)
			require.NotEmpty(t, vs)
			require.Equal(t, tt.kind, vs[0].Kind, "%v", vs)
			require.Equal(t, tt.p.r.ID, vs[0].ID)
			for _, v := range vs {
				require.Equal(t, tt.p.r.ID, v.ID, "only the broken event is reported: %v", v)
			}
		})
	}
}

// A history at its bound may have dropped its oldest runs: its counts are
// not held against the event, and the report says how many were skipped.
func TestCheckSkipsFullHistories(t *testing.T) {
	r := succeeded(2)
	r.Attempts = 5
	p := pol
	p.history = len(r.Retrigger.History)
	in := inputOf(placed{r, "events"})
	in.policy = p
	in.policy.maxAttempts = 10
	out, vs := check(in)
	require.Empty(t, vs)
	require.Equal(t, 1, out.Unverifiable)
}

// Bad flags stop the command before it starts anything.
func TestFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-events", "0"}, 2, "-events must be at least 1"},
		{[]string{"-failure-rate", "2"}, 2, "-failure-rate must be 0 to 1"},
		{[]string{"-kill-every", "-1s"}, 2, "must not be negative"},
		{[]string{"-nope"}, 2, "flag provided but not defined: -nope (chaos -help lists the flags)"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-help"}, 0, "-kill-every"},
	} {
		var out, errs strings.Builder
		code := cli(tt.args, &out, &errs)
		require.Equal(t, tt.code, code, "%v: %s%s", tt.args, &out, &errs)
		require.Contains(t, out.String()+errs.String(), tt.says)
	}
}

// The CI run that scripts/chaos/README.md shows is the one .ci/run runs,
// and every flag either names is one of the command's.
func TestCIRunIsDocumented(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	require.NoError(t, err)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	args := func(doc, marker string) []string {
		for _, line := range strings.Split(doc, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, marker) {
				f := strings.Fields(line[len(marker):])
				for j, a := range f {
					if a == "#" {
						f = f[:j]
						break
					}
				}
				return f
			}
		}
		t.Fatalf("no line with %q", marker)
		return nil
	}
	inCI := args(string(ci), `"$chaos_dir/chaos"`)
	documented := args(string(readme), "/tmp/chaos -events 400")
	require.Equal(t, inCI, append([]string{"-events", "400"}, documented...), "the CI run of scripts/chaos/README.md differs from .ci/run's")
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var s settings
	s.register(fs)
	fs.SetOutput(io.Discard)
	require.NoError(t, fs.Parse(inCI))
	require.NoError(t, s.validate())
}
