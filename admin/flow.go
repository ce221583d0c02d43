package admin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
)

// FlowStatus is a type's flow control as operators see it: its breaker,
// its pause, the limits its replicas run with, and the events that wait
// behind them.
type FlowStatus struct {
	Type string `json:"type"`
	// Breaker is closed, open or recovering, as it stands now.
	Breaker   string    `json:"breaker"`
	Since     time.Time `json:"since,omitzero"` // when it entered that state
	Trips     int64     `json:"trips"`
	Reason    string    `json:"reason,omitempty"`    // why it last tripped, or its last probe failed
	NextProbe time.Time `json:"nextProbe,omitzero"`  // open: when the next probe may start
	WaveLimit int       `json:"waveLimit,omitempty"` // recovering: runs at once across the replicas now
	Pause     *Pause    `json:"pause,omitempty"`     // nil: not paused
	Limits    string    `json:"limits,omitempty"`    // breaker, rate and keys, as a replica runs them
	LimitsBy  string    `json:"limitsBy,omitempty"`  // the replica that last said so
	Waiting   int64     `json:"waiting"`             // new and failed events of the type
	Parked    int64     `json:"parked,omitempty"`    // of them, those waiting for their key
}

// Held reports whether no event of the type runs now: paused, or its
// breaker open.
func (f FlowStatus) Held() bool { return f.Pause != nil || f.Breaker == flow.Open }

// Pause is a type's pause.
type Pause struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until,omitzero"` // zero: until resumed
	Reason string    `json:"reason,omitempty"`
	Source string    `json:"source"` // operator, or retry-after (a partner's 429 or 503)
}

// PauseRequest pauses a type. Until zero: until resumed.
type PauseRequest struct {
	Type   string    `json:"type"`
	Until  time.Time `json:"until,omitzero"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	// Force pauses a type retrigger has never seen (no event, archive or
	// flow state of it): a typo would otherwise pause nothing, silently.
	Force bool `json:"force,omitempty"`
}

// ResumeRequest lifts a type's pause and closes its open breaker.
type ResumeRequest struct {
	Type string `json:"type"`
	By   string `json:"by,omitempty"`
}

// Flow returns the flow control of every type that has events, archives or
// a flow state, sorted by type.
func (a *Admin) Flow(ctx context.Context) ([]FlowStatus, error) {
	events, err := a.store.CountByType(ctx, eventstore.InEvents)
	if err != nil {
		return nil, err
	}
	return a.flow(ctx, events)
}

// flow joins the flow states with the events' counts by type and state.
func (a *Admin) flow(ctx context.Context, events []eventstore.GroupCount) ([]FlowStatus, error) {
	now := a.now()
	states, err := flow.Read(ctx, a.store, now)
	if err != nil {
		return nil, err
	}
	parked, err := a.store.CountParked(ctx)
	if err != nil {
		return nil, err
	}
	byType := map[string]*FlowStatus{}
	at := func(typ string) *FlowStatus {
		if f := byType[typ]; f != nil {
			return f
		}
		f := &FlowStatus{Type: typ, Breaker: flow.Closed}
		byType[typ] = f
		return f
	}
	for _, s := range states {
		f := at(s.Type)
		f.Breaker, f.Since, f.Trips, f.Reason, f.NextProbe, f.WaveLimit = s.Breaker, s.Since, s.Trips, s.Reason, s.NextProbe, s.WaveLimit
		f.Limits, f.LimitsBy = s.Limits, s.LimitsBy
		if p := s.Pause; p != nil {
			f.Pause = &Pause{By: p.By, At: p.At, Until: p.Until, Reason: p.Reason, Source: p.Source}
		}
	}
	for _, g := range events {
		if g.State == event.StateNew.String() || g.State == event.StateFailed.String() {
			at(g.Type).Waiting += g.Count
		}
	}
	for typ, n := range parked {
		at(typ).Parked = n
	}
	out := make([]FlowStatus, 0, len(byType))
	for _, f := range byType {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out, nil
}

// Pause holds a type: no event of it runs, and none holds capacity, until
// r.Until or a resume. It refuses a type retrigger has never seen, unless
// r.Force.
func (a *Admin) Pause(ctx context.Context, r PauseRequest) (*FlowStatus, error) {
	if err := event.ValidateType(r.Type); err != nil {
		return nil, invalid("%v", err)
	}
	now := a.now()
	if !r.Until.IsZero() && !r.Until.After(now) {
		return nil, invalid("-until %s has passed: a pause ends in the future (or give none: until resumed)", r.Until.UTC().Format(time.RFC3339))
	}
	if !r.Force {
		if err := a.known(ctx, r.Type); err != nil {
			return nil, err
		}
	}
	if err := flow.Pause(ctx, a.store, r.Type, r.Until, r.Reason, r.By, now); err != nil {
		return nil, err
	}
	return a.flowOf(ctx, r.Type)
}

// Resume lifts a type's pause and closes its open breaker, whose backlog
// then comes out in waves. ErrNoChange: there was neither.
func (a *Admin) Resume(ctx context.Context, r ResumeRequest) (*FlowStatus, error) {
	if err := event.ValidateType(r.Type); err != nil {
		return nil, invalid("%v", err)
	}
	lifted, err := flow.Resume(ctx, a.store, r.Type, a.now())
	if err != nil {
		return nil, err
	}
	if !lifted {
		if err := a.known(ctx, r.Type); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: type %q is not paused and its breaker is not open", ErrNoChange, r.Type)
	}
	return a.flowOf(ctx, r.Type)
}

// known refuses a type with no event, no archive and no flow state.
func (a *Admin) known(ctx context.Context, typ string) error {
	all, err := a.Flow(ctx)
	if err != nil {
		return err
	}
	errs, err := a.store.CountByType(ctx, eventstore.InErrors)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range all {
		seen[f.Type] = true
	}
	for _, g := range errs {
		seen[g.Type] = true
	}
	if seen[typ] {
		return nil
	}
	var types []string
	for t := range seen {
		types = append(types, t)
	}
	sort.Strings(types)
	known := "none yet"
	if len(types) > 0 {
		known = strings.Join(types, ", ")
	}
	return fmt.Errorf("%w: no event, archive or flow state of type %q (types seen: %s); to pause a type before its first event, force it (the CLI's -force)", ErrNotFound, typ, known)
}

func (a *Admin) flowOf(ctx context.Context, typ string) (*FlowStatus, error) {
	all, err := a.Flow(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range all {
		if f.Type == typ {
			return &f, nil
		}
	}
	return &FlowStatus{Type: typ, Breaker: flow.Closed}, nil
}
