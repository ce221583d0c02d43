package admin

import (
	"context"
	"encoding/json"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

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
}

// Skip is an event an action left alone, and why.
type Skip struct {
	ID     json.RawMessage `json:"id"`
	IDText string          `json:"idText"`
	Why    string          `json:"why"`
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

// Retry makes failed events due now (see eventstore.Store.Retry). Without
// states in the query it selects failed events.
func (a *Admin) Retry(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	if len(r.States) == 0 && (!r.Query.Empty() || r.All) {
		r.States = []string{"failed"}
	}
	return a.act(ctx, "retry", eventstore.InEvents, r, progress, a.store.Retry)
}

// Cancel moves new or failed events into errors with the reason cancelled
// (see eventstore.Store.Cancel). Without states in the query it selects
// new and failed events.
func (a *Admin) Cancel(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	if len(r.States) == 0 && (!r.Query.Empty() || r.All) {
		r.States = []string{"new", "failed"}
	}
	return a.act(ctx, "cancel", eventstore.InEvents, r, progress, a.store.Cancel)
}

// Redrive moves archived events back into events as new (see
// eventstore.Store.Redrive), at most r.Rate per second. Interrupted, it
// leaves no event lost or twice; run it again to finish.
func (a *Admin) Redrive(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	return a.act(ctx, "redrive", eventstore.InErrors, r, progress, a.store.Redrive)
}

// Purge deletes archived events archived longer than r.OlderThan ago.
func (a *Admin) Purge(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error) {
	if r.OlderThan <= 0 {
		return nil, invalid("purge needs a positive older-than")
	}
	cutoff := a.now().Add(-r.OlderThan)
	if r.Until.IsZero() || r.Until.After(cutoff) {
		r.Until = cutoff
	}
	return a.act(ctx, "purge", eventstore.InErrors, r, progress, nil)
}

// act selects the events of r, and applies apply to each (or, for a dry
// run, samples them).
func (a *Admin) act(ctx context.Context, name string, w eventstore.Where, r ActionRequest, progress func(Progress),
	apply func(context.Context, bson.RawValue, eventstore.Operator) (eventstore.Action, string, error)) (*ActionResult, error) {
	if r.Query.Empty() && !r.All {
		return nil, invalid("%s of everything: give a filter, ids, or all", name)
	}
	if r.Rate < 0 {
		return nil, invalid("rate %g is negative", r.Rate)
	}
	f, err := r.filter()
	if err != nil {
		return nil, err
	}
	ids, err := a.store.IDs(ctx, w, f, r.Limit)
	if err != nil {
		return nil, err
	}
	res := &ActionResult{Action: name, DryRun: r.DryRun, Selected: len(ids)}
	if r.DryRun {
		docs, err := a.store.List(ctx, w, eventstore.Filter{IDs: ids[:min(len(ids), sampleSize)]}, sampleSize, eventstore.ScanOptions{Oldest: true})
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			res.Sample = append(res.Sample, a.item(w, doc))
		}
		return res, nil
	}
	if name == "purge" {
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
		actx, span := a.tracing.Action(ctx, name, id, r.By)
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
