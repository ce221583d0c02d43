package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/retrigger/retrigger/shared/eventstore"
)

// Sources of a pause.
const (
	SourceOperator   = "operator"    // retrigger pause, or the web view
	SourceRetryAfter = "retry-after" // a partner's 429 or 503 with Retry-After
)

// Status is a type's flow control as operators see it.
type Status struct {
	Type string
	// Breaker is closed, open or recovering, as it stands now.
	Breaker   string
	Since     time.Time // when it entered that state
	Trips     int64
	Reason    string    // why it last tripped, or why its last probe failed
	NextProbe time.Time // open: when the next probe may start
	WaveLimit int       // recovering: runs at once across the replicas now
	Pause     *eventstore.Pause
	Limits    string // the limits the replicas run it with, and which replica said so
	LimitsBy  string
}

// Held reports whether the type's runnable events wait: paused, or its
// breaker open.
func (s Status) Held() bool { return s.Pause != nil || s.Breaker == Open }

// Read returns the flow control of every type that has any, at now,
// sorted by type.
func Read(ctx context.Context, st *eventstore.Store, now time.Time) ([]Status, error) {
	states, err := st.LoadFlows(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(states))
	for i := range states {
		f := &states[i]
		s := Status{Type: f.Type, Breaker: state(f, defaultBreaker, now), Since: f.Breaker.Since, Trips: f.Breaker.Trips,
			Reason: f.Breaker.Reason, Limits: f.Limits, LimitsBy: f.LimitsBy}
		switch s.Breaker {
		case Open:
			s.NextProbe = f.Breaker.NextProbe
		case Recovering:
			s.WaveLimit = waveLimit(f, defaultBreaker, now)
		}
		if ok, _ := paused(f, now); ok {
			s.Pause = f.Pause
		}
		out = append(out, s)
	}
	return out, nil
}

// Held returns the types whose runnable events wait at now (paused, or
// their breaker open), for the sweeper to leave them be.
func Held(ctx context.Context, st *eventstore.Store, now time.Time) ([]string, error) {
	all, err := Read(ctx, st, now)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range all {
		if s.Held() {
			out = append(out, s.Type)
		}
	}
	return out, nil
}

// Pause holds typ: no event of it runs, and none holds capacity, until
// until (zero: until Resume). It replaces an earlier pause of the type.
func Pause(ctx context.Context, st *eventstore.Store, typ string, until time.Time, reason, by string, now time.Time) error {
	if !until.IsZero() && !until.After(now) {
		return fmt.Errorf("the pause would end at %s, which has passed", until.Format(time.RFC3339))
	}
	return change(ctx, st, typ, func(f *eventstore.FlowState) bool {
		f.Pause = &eventstore.Pause{By: by, At: now, Until: until, Reason: reason, Source: SourceOperator}
		return true
	})
}

// Resume lifts typ's pause, and closes its breaker if it is open: its
// backlog is then let out in waves, as after a probe that succeeded. It
// reports whether there was anything to lift.
func Resume(ctx context.Context, st *eventstore.Store, typ string, now time.Time) (bool, error) {
	lifted := false
	err := change(ctx, st, typ, func(f *eventstore.FlowState) bool {
		write := false
		lifted = false
		if f.Pause != nil { // a pause that ended is cleared too, but lifts nothing
			lifted, _ = paused(f, now)
			f.Pause, write = nil, true
		}
		if f.Breaker.State == Open {
			recovered(f, defaultBreaker, now)
			lifted, write = true, true
		}
		return write
	})
	return lifted, err
}

// change applies fn to typ's state over the revision it read.
func change(ctx context.Context, st *eventstore.Store, typ string, fn func(*eventstore.FlowState) bool) error {
	for try := 0; try < 5; try++ {
		states, err := st.LoadFlows(ctx, []string{typ})
		if err != nil {
			return err
		}
		f := eventstore.FlowState{Type: typ}
		if len(states) == 1 {
			f = copyState(states[0])
		}
		if !fn(&f) {
			return nil
		}
		f.UpdatedAt = time.Now()
		err = st.SaveFlow(ctx, f)
		if !errors.Is(err, eventstore.ErrStale) {
			return err
		}
	}
	return errors.New("the type's flow state kept changing under the write: try again")
}
