package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// ActionRequest selects the events an action changes.
type ActionRequest struct {
	Query
	// All must be set to act on everything a query without any field
	// selects: a guard against a forgotten filter.
	All    bool `json:"all,omitempty"`
	DryRun bool `json:"dryRun,omitempty"` // count and sample, change nothing
	// Rate bounds the events changed per second; 0: no bound.
	Rate float64 `json:"rate,omitempty"`
	// OlderThan: purge only what was archived longer ago than this.
	OlderThan time.Duration `json:"olderThan,omitempty"`
	// By names who acts, in each event's history.
	By string `json:"by,omitempty"`
}

// ActionResult says what an action did, or would do (DryRun).
type ActionResult struct {
	Action   string `json:"action"`
	DryRun   bool   `json:"dryRun,omitempty"`
	Selected int    `json:"selected"` // events the query selected
	Applied  int    `json:"applied"`
	Skipped  int    `json:"skipped"`
	// Sample shows the first few selected events (a dry run).
	Sample []Item `json:"sample,omitempty"`
	// Changed lists the ids changed (the first maxListed), Skips why
	// events were skipped (the first maxListed).
	Changed []string `json:"changed,omitempty"`
	Skips   []Skip   `json:"skips,omitempty"`
	// Unmatched are the ids the request named that selected nothing, and
	// why (an event elsewhere, in another state, or none with the id).
	Unmatched []Skip `json:"unmatched,omitempty"`
}

// Skip is an event an action left alone, and why.
type Skip struct {
	ID     json.RawMessage `json:"id"`
	IDText string          `json:"idText"`
	Why    string          `json:"why"`
	found  bool            // Unmatched: an event has the id
}

// Progress is how far an action got.
type Progress struct {
	Done    int `json:"done"`
	Total   int `json:"total"`
	Applied int `json:"applied"`
	Skipped int `json:"skipped"`
}

// Bounds of an action's result.
const (
	maxListed  = 1000
	sampleSize = 5
	purgeBatch = 500
)

// scope is what an action changes: where, and in events which states.
type scope struct {
	name   string
	in     eventstore.Where
	states []string // in events: the states it applies to, and selects by default
	rule   string   // what it applies to, in an error
}

var (
	retryScope   = scope{"retry", eventstore.InEvents, []string{"failed"}, "retry applies to failed events"}
	cancelScope  = scope{"cancel", eventstore.InEvents, []string{"new", "failed"}, "cancel applies to new and failed events"}
	redriveScope = scope{"redrive", eventstore.InErrors, nil, "redrive applies to archived events (in errors)"}
	purgeScope   = scope{"purge", eventstore.InErrors, nil, "purge applies to archived events (in errors)"}
)

// Retry makes failed events due now (see eventstore.Store.Retry). Without
// states in the query it selects failed events.
func (a *Admin) Retry(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	return a.act(ctx, retryScope, r, progress, a.store.Retry)
}

// Cancel moves new or failed events into errors with the reason cancelled
// (see eventstore.Store.Cancel). Without states in the query it selects
// new and failed events.
func (a *Admin) Cancel(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	return a.act(ctx, cancelScope, r, progress, a.store.Cancel)
}

// Redrive moves archived events back into events as new (see
// eventstore.Store.Redrive), at most r.Rate per second. Interrupted, it
// leaves no event lost or twice; run it again to finish.
func (a *Admin) Redrive(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	return a.act(ctx, redriveScope, r, progress, a.store.Redrive)
}

// Purge deletes archived events archived longer than r.OlderThan ago.
func (a *Admin) Purge(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	if r.OlderThan <= 0 {
		return nil, invalid("purge needs a positive older-than, got %s", r.OlderThan)
	}
	cutoff := a.now().Add(-r.OlderThan)
	if r.Until.IsZero() || r.Until.After(cutoff) {
		r.Until = cutoff
	}
	return a.act(ctx, purgeScope, r, progress, nil)
}

// check refuses a request that is malformed, or that can never select
// anything the action changes, and gives an events action its default
// states.
func (sc scope) check(r *ActionRequest) error {
	if r.Query.Empty() && !r.All {
		return invalid("%s of everything: give a filter, ids, or -all (\"all\": true over HTTP)", sc.name)
	}
	if r.Rate < 0 {
		return invalid("rate %g is negative", r.Rate)
	}
	if _, err := r.filter(); err != nil {
		return err
	}
	if sc.in != eventstore.InEvents {
		return nil
	}
	if len(r.Reasons) > 0 {
		return invalid("%s, and an archive reason (%s) selects archived events only", sc.rule, strings.Join(r.Reasons, ", "))
	}
	for _, st := range r.States {
		if !slices.Contains(sc.states, st) {
			return invalid("%s: state %s selects none of them", sc.rule, st)
		}
	}
	if len(r.States) == 0 {
		r.States = sc.states
	}
	return nil
}

// act selects the events of r, and applies apply to each (or, for a dry
// run, samples them). Ids r names that select nothing are explained in
// the result (Unmatched); when none of them selects anything the action
// is refused: ErrNotFound when no event has any of them, ErrNoChange
// when they exist but the action does not apply to them.
func (a *Admin) act(ctx context.Context, sc scope, r ActionRequest, progress func(Progress),
	apply func(context.Context, bson.RawValue, eventstore.Operator) (eventstore.Action, string, error)) (*ActionResult, error) {
	if err := sc.check(&r); err != nil {
		return nil, err
	}
	f, err := r.filter()
	if err != nil {
		return nil, err
	}
	ids, err := a.store.IDs(ctx, sc.in, f, r.Limit)
	if err != nil {
		return nil, err
	}
	res := &ActionResult{Action: sc.name, DryRun: r.DryRun, Selected: len(ids)}
	if len(r.IDs) > 0 {
		if res.Unmatched, err = a.unmatched(ctx, sc, r.IDs, ids); err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, refusalOf(sc, res.Unmatched)
		}
	}
	if r.DryRun {
		docs, err := a.store.List(ctx, sc.in, eventstore.Filter{IDs: ids[:min(len(ids), sampleSize)]}, sampleSize, eventstore.ScanOptions{Oldest: true})
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			res.Sample = append(res.Sample, a.item(sc.in, doc))
		}
		return res, nil
	}
	if sc.name == "purge" {
		return a.purge(ctx, ids, r.Until, res, progress)
	}
	var limiter *rate.Limiter
	if r.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(r.Rate), 1)
	}
	p := Progress{Total: len(ids)}
	for _, id := range ids {
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				return res, err
			}
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		actx, span := a.tracing.Action(ctx, sc.name, id, r.By)
		op := eventstore.Operator{Now: a.now(), By: r.By}
		op.TraceID, op.SpanID = span.IDs()
		act, why, err := apply(actx, id, op)
		span.Outcome(act.String())
		span.End(err)
		if err != nil {
			return res, err
		}
		p.Done++
		if act == eventstore.Applied {
			p.Applied++
			res.Applied++
			if len(res.Changed) < maxListed {
				res.Changed = append(res.Changed, FormatID(id))
			}
		} else {
			p.Skipped++
			res.Skipped++
			if len(res.Skips) < maxListed {
				res.Skips = append(res.Skips, Skip{ID: idJSON(id), IDText: FormatID(id), Why: act.String() + ": " + why})
			}
		}
		if progress != nil {
			progress(p)
		}
	}
	return res, nil
}

// unmatched explains each id of texts (as given) that selected nothing:
// where the event with it is and why the action passes it by, or that
// there is none.
func (a *Admin) unmatched(ctx context.Context, sc scope, texts []string, selected []bson.RawValue) ([]Skip, error) {
	chosen := make(map[string]bool, len(selected))
	for _, id := range selected {
		chosen[event.Key(id)] = true
	}
	var out []Skip
	for _, text := range texts {
		cands, err := ParseID(text)
		if err != nil {
			return nil, invalid("%v", err)
		}
		if slices.ContainsFunc(cands, func(id bson.RawValue) bool { return chosen[event.Key(id)] }) {
			continue
		}
		events, archived, err := a.store.FindIDs(ctx, cands)
		if err != nil {
			return nil, err
		}
		skip := Skip{ID: idJSON(cands[0]), IDText: text, Why: "no event or archived event has this id"}
		if len(events)+len(archived) > 0 {
			skip.found = true
			skip.Why = a.passedBy(sc, events, archived)
		}
		out = append(out, skip)
	}
	return out, nil
}

// passedBy says why the action passes by an event found in events or in
// errors (or both).
func (a *Admin) passedBy(sc scope, events, archived []bson.Raw) string {
	var where []string
	inScope := false
	for _, doc := range events {
		ev, err := a.store.Parse(doc)
		st := ev.State.String()
		if err != nil {
			st = "malformed"
		}
		where = append(where, st+" in events")
		inScope = inScope || (sc.in == eventstore.InEvents && slices.Contains(sc.states, st))
	}
	for _, doc := range archived {
		ev, _ := a.store.Parse(doc)
		where = append(where, fmt.Sprintf("archived in errors (%s)", ev.Reason))
		inScope = inScope || sc.in == eventstore.InErrors
	}
	if inScope {
		return fmt.Sprintf("it is %s, and the rest of the filter leaves it out", strings.Join(where, ", and "))
	}
	return fmt.Sprintf("it is %s: %s", strings.Join(where, ", and "), sc.rule)
}

// refusalOf is the error of an action whose ids all selected nothing.
func refusalOf(sc scope, unmatched []Skip) error {
	kind := ErrNotFound
	parts := make([]string, len(unmatched))
	for i, s := range unmatched {
		if s.found {
			kind = ErrNoChange
		}
		parts[i] = s.IDText + ": " + s.Why
	}
	return refuse(kind, "%s %s", sc.name, strings.Join(parts, "; "))
}

// purge deletes the selected archives in batches, pinned on the cutoff.
func (a *Admin) purge(ctx context.Context, ids []bson.RawValue, before time.Time, res *ActionResult, progress func(Progress)) (*ActionResult, error) {
	p := Progress{Total: len(ids)}
	for start := 0; start < len(ids); start += purgeBatch {
		batch := ids[start:min(start+purgeBatch, len(ids))]
		n, err := a.store.PurgeErrors(ctx, batch, before)
		if err != nil {
			return res, err
		}
		p.Done += len(batch)
		p.Applied += int(n)
		p.Skipped += len(batch) - int(n)
		res.Applied, res.Skipped = p.Applied, p.Skipped
		for _, id := range batch {
			if len(res.Changed) < maxListed {
				res.Changed = append(res.Changed, FormatID(id))
			}
		}
		if progress != nil {
			progress(p)
		}
	}
	return res, nil
}
