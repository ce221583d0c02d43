package eventstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// The operator's queries and actions: what the retrigger admin command and
// the web view read and do. Every action is a conditional write that leaves
// alone an event a consumer runs now (a live lease), and each adds an entry
// to the event's history.

// Where names the collection an operator's query reads.
type Where int

const (
	InEvents Where = iota // the events collection
	InErrors              // the errors collection (archived events)
)

func (w Where) String() string {
	if w == InErrors {
		return "errors"
	}
	return "events"
}

// timeField is the date a query's time range and order use: an event's
// last transition, an archived event's archive time.
func (w Where) timeField() string {
	if w == InErrors {
		return event.FieldArchivedAt
	}
	return event.FieldUpdatedAt
}

func (s *Store) coll(w Where) store.Collection {
	if w == InErrors {
		return s.errs
	}
	return s.events
}

// Filter selects events or archived events. Zero fields select everything;
// set fields all apply.
type Filter struct {
	// IDs selects any of these ids. nil selects any id; an empty list that
	// is not nil selects none: a set of ids found to be empty (an action's
	// selection, a preview of it) selects nothing, never everything.
	IDs     []bson.RawValue
	Types   []string       // any of these types
	States  []event.State  // any of these states (events)
	Reasons []event.Reason // any of these archive reasons (errors)
	// Error matches lastError.message. It is evaluated by the store on each
	// page of what the other fields select (neither backend can use an
	// index for it), so narrow a query on a large collection with them.
	Error *regexp.Regexp
	// Since and Until bound the time: at or after Since, before Until. For
	// events it is the last transition (updatedAt: an event never run has
	// none, and a time range leaves it out), for archived events the
	// archive time (retrigger.archivedAt).
	Since, Until time.Time
}

// query is the filter document of f on w, without Error.
func (s *Store) query(w Where, f Filter) bson.D {
	q := bson.D{}
	if f.IDs != nil {
		ids := make(bson.A, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		q = append(q, bson.E{Key: event.FieldID, Value: bson.D{{Key: "$in", Value: ids}}})
	}
	if len(f.Types) > 0 {
		types := bson.A{}
		for _, t := range f.Types {
			types = append(types, t)
			if t == s.opts.Schema.DefaultType {
				types = append(types, nil) // documents without a type are of the default type
			}
		}
		q = append(q, bson.E{Key: event.FieldType, Value: bson.D{{Key: "$in", Value: types}}})
	}
	if len(f.States) > 0 {
		states := bson.A{}
		for _, st := range f.States {
			states = append(states, stateValue(st))
			if st == event.StateNew {
				states = append(states, nil) // a missing state is new
			}
		}
		q = append(q, bson.E{Key: event.FieldState, Value: bson.D{{Key: "$in", Value: states}}})
	}
	if len(f.Reasons) > 0 {
		reasons := make(bson.A, len(f.Reasons))
		for i, r := range f.Reasons {
			reasons[i] = string(r)
		}
		q = append(q, bson.E{Key: event.FieldReason, Value: bson.D{{Key: "$in", Value: reasons}}})
	}
	if rng := timeRange(f); rng != nil {
		q = append(q, bson.E{Key: w.timeField(), Value: rng})
	}
	return q
}

func timeRange(f Filter) bson.D {
	var rng bson.D
	if !f.Since.IsZero() {
		rng = append(rng, bson.E{Key: "$gte", Value: f.Since})
	}
	if !f.Until.IsZero() {
		rng = append(rng, bson.E{Key: "$lt", Value: f.Until})
	}
	return rng
}

// none reports whether f selects nothing whatever the collection holds:
// an empty, non-nil list of ids.
func (f Filter) none() bool { return f.IDs != nil && len(f.IDs) == 0 }

// matches applies the part of f the query cannot: the error's pattern.
func matches(doc bson.Raw, f Filter) bool {
	if f.Error == nil {
		return true
	}
	msg, _ := doc.Lookup(event.FieldLastError, "message").StringValueOK()
	return f.Error.MatchString(msg)
}

// ScanOptions order and page a scan.
type ScanOptions struct {
	Oldest bool // oldest first; default newest first
	Page   int  // documents per query; default 500
}

// maxUndated bounds the documents without a time a scan visits: they are
// paged by the ids already seen, a filter that grows with each page.
const maxUndated = 100_000

// Scan calls visit for each document of w that f selects, newest first by
// its time (see Filter), then those without one (unless f has a time
// range), page by page, until visit returns false or an error. It never
// visits a document twice, whatever its id's BSON type.
func (s *Store) Scan(ctx context.Context, w Where, f Filter, o ScanOptions, visit func(doc bson.Raw) (bool, error)) error {
	if o.Page <= 0 {
		o.Page = 500
	}
	if f.none() {
		return nil
	}
	coll, field := s.coll(w), w.timeField()
	base := s.query(w, f)
	dir := -1
	if o.Oldest {
		dir = 1
	}
	// Documents with a time, in its order.
	var cur Cursor
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// $and: the range, the type and the page all constrain the field
		conds := bson.A{base, bson.D{{Key: field, Value: bson.D{{Key: "$type", Value: "date"}}}}}
		if page := cur.pageIn(field, !o.Oldest); len(page) > 0 {
			conds = append(conds, page)
		}
		q := bson.D{{Key: "$and", Value: conds}}
		docs, err := coll.Find(ctx, q, store.FindOptions{Sort: bson.D{{Key: field, Value: dir}}, Limit: int64(o.Page)})
		if err != nil {
			return wrap("scanning "+w.String(), err)
		}
		for _, doc := range docs {
			if !matches(doc, f) {
				continue
			}
			if more, err := visit(doc); err != nil || !more {
				return err
			}
		}
		if len(docs) < o.Page {
			break
		}
		cur = cur.Advance(docs, field)
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		return nil
	}
	// Documents without a time, in no order.
	var seen bson.A
	for len(seen) < maxUndated {
		if err := ctx.Err(); err != nil {
			return err
		}
		conds := bson.A{base, bson.D{{Key: field, Value: notADate}}}
		if len(seen) > 0 { // $and: base may select ids too
			conds = append(conds, bson.D{{Key: event.FieldID, Value: bson.D{{Key: "$nin", Value: seen}}}})
		}
		q := bson.D{{Key: "$and", Value: conds}}
		docs, err := coll.Find(ctx, q, store.FindOptions{Limit: int64(o.Page)})
		if err != nil {
			return wrap("scanning "+w.String(), err)
		}
		for _, doc := range docs {
			seen = append(seen, doc.Lookup(event.FieldID))
			if !matches(doc, f) {
				continue
			}
			if more, err := visit(doc); err != nil || !more {
				return err
			}
		}
		if len(docs) < o.Page {
			return nil
		}
	}
	return nil
}

// pageIn is page in either order: after the cursor ascending, before it
// descending.
func (c Cursor) pageIn(field string, desc bool) bson.D {
	if !desc {
		return c.page(field)
	}
	if c.After.IsZero() && len(c.Seen) == 0 {
		return bson.D{}
	}
	if len(c.Seen) == 0 {
		return bson.D{{Key: field, Value: bson.D{{Key: "$lt", Value: c.After}}}}
	}
	seen := make(bson.A, len(c.Seen))
	for i, id := range c.Seen {
		seen[i] = id
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: field, Value: bson.D{{Key: "$lt", Value: c.After}}}},
		bson.D{{Key: field, Value: c.After}, {Key: event.FieldID, Value: bson.D{{Key: "$nin", Value: seen}}}},
	}}}
}

// List returns up to limit documents of w that f selects (0: all), newest
// first unless o.Oldest.
func (s *Store) List(ctx context.Context, w Where, f Filter, limit int, o ScanOptions) ([]bson.Raw, error) {
	var out []bson.Raw
	err := s.Scan(ctx, w, f, o, func(doc bson.Raw) (bool, error) {
		out = append(out, doc)
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// IDs returns the ids of up to limit documents of w that f selects (0:
// all), oldest first: the set an action then works through.
func (s *Store) IDs(ctx context.Context, w Where, f Filter, limit int) ([]bson.RawValue, error) {
	out := []bson.RawValue{} // not nil: as a Filter's IDs, none selects none
	err := s.Scan(ctx, w, f, ScanOptions{Oldest: true}, func(doc bson.Raw) (bool, error) {
		out = append(out, doc.Lookup(event.FieldID))
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// Count counts the documents of w that f selects.
func (s *Store) Count(ctx context.Context, w Where, f Filter) (int64, error) {
	if f.none() {
		return 0, nil
	}
	if f.Error == nil {
		n, err := s.coll(w).Count(ctx, s.query(w, f))
		return n, wrap("counting "+w.String(), err)
	}
	var n int64
	err := s.Scan(ctx, w, f, ScanOptions{}, func(bson.Raw) (bool, error) { n++; return true, nil })
	return n, err
}

// GroupCount is the number of events of one type in one state, or of
// archived events of one type archived for one reason.
type GroupCount struct {
	Type   string `json:"type"`
	State  string `json:"state,omitempty"`  // events: new, success, failed, error, or invalid
	Reason string `json:"reason,omitempty"` // errors
	Count  int64  `json:"count"`
}

// CountByType counts the events per type and state (InEvents), or the
// archived events per type and reason (InErrors), in one query.
func (s *Store) CountByType(ctx context.Context, w Where) ([]GroupCount, error) {
	second := event.FieldState
	if w == InErrors {
		second = event.FieldReason
	}
	groups, err := s.coll(w).CountBy(ctx, bson.D{}, event.FieldType, second)
	if err != nil {
		return nil, wrap("counting "+w.String()+" by type", err)
	}
	out := make([]GroupCount, 0, len(groups))
	for _, g := range groups {
		c := GroupCount{Count: g.Count}
		c.Type, _ = g.Values[0].StringValueOK()
		if g.Values[0].Type == bson.TypeNull {
			c.Type = s.opts.Schema.DefaultType
		}
		if w == InErrors {
			c.Reason, _ = g.Values[1].StringValueOK()
		} else {
			c.State = stateName(g.Values[1])
		}
		out = append(out, c)
	}
	return out, nil
}

// stateName names a stored state: missing is new, anything else that is
// not a state is invalid.
func stateName(v bson.RawValue) string {
	if v.Type == bson.TypeNull || v.Type == 0 {
		return event.StateNew.String()
	}
	f, ok := v.AsFloat64OK()
	if !ok || f != float64(int64(f)) || f < float64(event.StateNew) || f > float64(event.StateError) {
		return "invalid"
	}
	return event.State(int32(f)).String()
}

// Due is the event that has waited longest to run.
type Due struct {
	ID    bson.RawValue
	Type  string
	State event.State
	Since time.Time // when it became due
}

// OldestDue returns the runnable event, no consumer running it, that has
// been due the longest at now: a failed event by its nextAttemptAt, a new
// one by its last transition, its insert time or its ObjectID's time. nil:
// none is waiting.
func (s *Store) OldestDue(ctx context.Context, now time.Time) (*Due, error) {
	free := notLeased(now)
	queries := []struct {
		filter bson.D
		order  string
	}{
		{bson.D{{Key: event.FieldState, Value: stateValue(event.StateFailed)}, {Key: event.FieldNextAttemptAt, Value: bson.D{{Key: "$lte", Value: now}}}, free}, event.FieldNextAttemptAt},
		{bson.D{isNew, {Key: event.FieldUpdatedAt, Value: bson.D{{Key: "$type", Value: "date"}}}, free}, event.FieldUpdatedAt},
		{bson.D{isNew, {Key: event.FieldUpdatedAt, Value: notADate}, {Key: event.FieldCreatedAt, Value: bson.D{{Key: "$type", Value: "date"}}}, free}, event.FieldCreatedAt},
		{bson.D{isNew, {Key: event.FieldUpdatedAt, Value: notADate}, {Key: event.FieldCreatedAt, Value: notADate}, {Key: event.FieldID, Value: bson.D{{Key: "$type", Value: "objectId"}}}, free}, event.FieldID},
	}
	var oldest *Due
	for _, q := range queries {
		docs, err := s.events.Find(ctx, q.filter, store.FindOptions{Sort: bson.D{{Key: q.order, Value: 1}}, Limit: 1})
		if err != nil {
			return nil, wrap("finding the oldest due event", err)
		}
		if len(docs) == 0 {
			continue
		}
		ev, _ := s.Parse(docs[0])
		d := &Due{ID: ev.ID, Type: ev.Type, State: ev.State}
		if q.order == event.FieldID {
			d.Since = ev.ID.ObjectID().Timestamp().UTC()
		} else {
			d.Since = dateOf(docs[0], q.order)
		}
		if oldest == nil || d.Since.Before(oldest.Since) {
			oldest = d
		}
	}
	return oldest, nil
}

// FindIDs returns the events and the archived events with any of the ids.
func (s *Store) FindIDs(ctx context.Context, ids []bson.RawValue) (events, archived []bson.Raw, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	q := s.query(InEvents, Filter{IDs: ids})
	if events, err = s.events.Find(ctx, q, store.FindOptions{}); err != nil {
		return nil, nil, wrap("finding events", err)
	}
	if archived, err = s.errs.Find(ctx, q, store.FindOptions{}); err != nil {
		return nil, nil, wrap("finding archived events", err)
	}
	return events, archived, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.checkpoints.FindOne(ctx, bson.D{{Key: event.FieldID, Value: "retrigger:ping"}})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return wrap("reaching the database", err)
}

// Operator says who acts and when, for the history entry of an action.
type Operator struct {
	Now time.Time
	By  string // who acted, e.g. "ada@host (retrigger)"; the history's replica
	// TraceID and SpanID name the action's span, for its history entry
	// (event.Attempt); "" when it is not traced.
	TraceID, SpanID string
}

// entry is the history entry of an operator's action.
func (op Operator) entry(outcome string) event.Attempt {
	return event.Attempt{At: op.Now, Outcome: outcome, Replica: op.By, TraceID: op.TraceID, SpanID: op.SpanID}
}

// Action is what an operator's action did to one event.
type Action int

const (
	Applied        Action = iota // done
	SkippedGone                  // not in the collection the action reads
	SkippedLeased                // a consumer runs it now: act again once it finished
	SkippedState                 // its state does not allow the action
	SkippedExists                // redrive: an event with its id is in events
	SkippedChanged               // it kept changing under the action
)

var actionNames = [...]string{"applied", "gone", "leased", "state", "exists", "changed"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// maxActionTries bounds the reads and conditional writes of one action
// on an event that keeps changing.
const maxActionTries = 3

// readForAction reads and parses an event an action applies to.
func (s *Store) readForAction(ctx context.Context, id bson.RawValue, now time.Time, allowed ...event.State) (*event.Event, Action, string, error) {
	doc, err := s.events.FindOne(ctx, byID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, SkippedGone, "not in " + s.opts.Events, nil
	}
	if err != nil {
		return nil, 0, "", wrap("reading an event", err)
	}
	ev, err := s.Parse(doc)
	if err != nil {
		return nil, SkippedState, "malformed: " + err.Error(), nil
	}
	if ev.Leased(now) {
		return nil, SkippedLeased, fmt.Sprintf("a consumer (%s) runs it now, until %s at the latest", ev.Lease.Owner, ev.Lease.Until.Format(time.RFC3339)), nil
	}
	for _, st := range allowed {
		if ev.State == st {
			return &ev, Applied, "", nil
		}
	}
	return nil, SkippedState, "it is " + ev.State.String(), nil
}

// Retry makes a failed event due now: the producer sees the change and
// publishes it. Its attempts are not reset: it runs its next attempt. The
// write is conditional on the version and state read and on no lease
// holding the event.
func (s *Store) Retry(ctx context.Context, id bson.RawValue, op Operator) (Action, string, error) {
	for range maxActionTries {
		ev, a, why, err := s.readForAction(ctx, id, op.Now, event.StateFailed)
		if ev == nil {
			if a == SkippedState && err == nil {
				why += ": only failed events are retried"
			}
			return a, why, err
		}
		set := bson.D{
			{Key: event.FieldNextAttemptAt, Value: ceilMillisecond(op.Now)},
			{Key: event.FieldVersion, Value: ev.Version + 1},
			{Key: event.FieldUpdatedAt, Value: op.Now},
		}
		if h := s.history(ev.History, op.entry("retried")); h != nil {
			set = append(set, bson.E{Key: event.FieldHistory, Value: h})
		}
		n, err := s.events.UpdateOne(ctx, append(current(ev), notLeased(op.Now)), bson.D{{Key: "$set", Value: set}}, false)
		if err != nil {
			return 0, "", wrap("retrying an event", err)
		}
		if n == 1 {
			return Applied, "", nil
		}
	}
	return SkippedChanged, "it kept changing", nil
}

// Cancel moves a new or failed event into errors with the reason
// cancelled: a conditional transition to the error state (so no consumer
// claims it any more), then the move. Should the move not finish, the
// archiver finishes it.
func (s *Store) Cancel(ctx context.Context, id bson.RawValue, op Operator) (Action, string, error) {
	for range maxActionTries {
		ev, a, why, err := s.readForAction(ctx, id, op.Now, event.StateNew, event.StateFailed)
		if ev == nil {
			if a == SkippedState && err == nil {
				why += ": only new and failed events are cancelled"
			}
			return a, why, err
		}
		set := bson.D{
			{Key: event.FieldState, Value: stateValue(event.StateError)},
			{Key: event.FieldVersion, Value: ev.Version + 1},
			{Key: event.FieldUpdatedAt, Value: op.Now},
			{Key: event.FieldReason, Value: string(event.ReasonCancelled)},
		}
		if h := s.history(ev.History, op.entry("cancelled")); h != nil {
			set = append(set, bson.E{Key: event.FieldHistory, Value: h})
		}
		update := bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: event.FieldNextAttemptAt, Value: ""}}}}
		doc, err := s.events.FindOneAndUpdate(ctx, append(current(ev), notLeased(op.Now)), update)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, "", wrap("cancelling an event", err)
		}
		err = s.MoveToErrors(ctx, doc, Archive{Reason: event.ReasonCancelled, At: op.Now, TraceID: op.TraceID, SpanID: op.SpanID})
		if errors.Is(err, ErrStale) {
			return SkippedChanged, "it changed while being archived: it stays in " + s.opts.Events, nil
		}
		if err != nil {
			return 0, "", wrap("archiving a cancelled event (the archiver finishes it)", err)
		}
		return Applied, "", nil
	}
	return SkippedChanged, "it kept changing", nil
}

// Redrive moves an archived event back into events as new: its attempts
// start again from 0, its history is kept with a "redriven" entry, and
// retrigger.redrives and redrivenAt count and date it. Where the
// deployment has transactions, both writes are one, with a majority write
// concern. Elsewhere the events copy is written first and the archive
// removed after, pinned on the archive time, so an interrupted redrive
// leaves the event in both places, never in neither, and running it again
// finishes it: an events copy that came from
// this very archive (same retrigger.archivedAt) counts as written. An
// event of the same id already in events for another reason is left
// alone (SkippedExists), and so is its archive. The producer sees the
// insert like any other and publishes it.
func (s *Store) Redrive(ctx context.Context, id bson.RawValue, op Operator) (Action, string, error) {
	doc, err := s.errs.FindOne(ctx, byID(id))
	if errors.Is(err, store.ErrNotFound) {
		return SkippedGone, "not in " + s.opts.Errors, nil
	}
	if err != nil {
		return 0, "", wrap("reading an archived event", err)
	}
	archivedAt, hasArchivedAt := doc.Lookup(splitPath(event.FieldArchivedAt)...).DateTimeOK()
	back, err := s.redriven(doc, op)
	if err != nil {
		return 0, "", wrap("redriving an event", err)
	}
	pin := bson.D{{Key: event.FieldID, Value: id}}
	if hasArchivedAt {
		pin = append(pin, bson.E{Key: event.FieldArchivedAt, Value: bson.DateTime(archivedAt)})
	} else {
		pin = append(pin, bson.E{Key: event.FieldArchivedAt, Value: bson.D{{Key: "$exists", Value: false}}})
	}
	// One transaction with a majority write concern where the deployment
	// has them: a failover between the two writes cannot lose the event.
	// An event of the same id in the way aborts it (a failed write ends a
	// transaction); the ordered steps then tell why it is there.
	err = s.db.Transact(ctx, func(ctx context.Context) error {
		if err := s.events.InsertOne(ctx, back); err != nil {
			return err
		}
		_, err := s.errs.DeleteOne(ctx, pin)
		return err
	})
	switch {
	case err == nil:
		return Applied, "", nil
	case errors.Is(err, store.ErrNoTransactions), errors.Is(err, store.ErrDuplicate):
		return s.putBack(ctx, id, back, pin, archivedAt, hasArchivedAt)
	}
	return 0, "", wrap("redriving an event", err)
}

// putBack is a redrive as two ordered writes: the events copy, then the
// removal of the archive pinned on its time.
func (s *Store) putBack(ctx context.Context, id bson.RawValue, back, pin bson.D, archivedAt int64, hasArchivedAt bool) (Action, string, error) {
	err := s.events.InsertOne(ctx, back)
	if errors.Is(err, store.ErrDuplicate) {
		cur, ferr := s.events.FindOne(ctx, byID(id))
		switch {
		case errors.Is(ferr, store.ErrNotFound):
			return SkippedChanged, "an event with its id came and went: redrive it again", nil
		case ferr != nil:
			return 0, "", wrap("reading the event in the way of a redrive", ferr)
		}
		at, ok := cur.Lookup(splitPath(event.FieldArchivedAt)...).DateTimeOK()
		if !hasArchivedAt || !ok || at != archivedAt {
			return SkippedExists, "an event with its id is in " + s.opts.Events, nil
		}
		// An earlier redrive of this archive wrote the events copy and
		// stopped: finish it.
	} else if err != nil {
		return 0, "", wrap("writing a redriven event", err)
	}
	if _, err := s.errs.DeleteOne(ctx, pin); err != nil {
		return 0, "", wrap("removing the archive of a redriven event (redrive it again to finish)", err)
	}
	return Applied, "", nil
}

// redriven is the events copy of an archived document: as archived, new,
// attempts 0, the version counting on, the bookkeeping of the archive
// kept (history, archivedAt) but its reason, and the redrive counted.
func (s *Store) redriven(doc bson.Raw, op Operator) (bson.D, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	ev, _ := s.Parse(doc) // lenient: whatever could be read
	version, _ := doc.Lookup(event.FieldVersion).AsInt64OK()
	attempts := s.opts.Schema.Attempts()
	out := make(bson.D, 0, len(elems)+4)
	var book bson.D
	for _, el := range elems {
		switch k := el.Key(); k {
		case event.FieldState, event.FieldVersion, event.FieldNextAttemptAt, event.FieldUpdatedAt, attempts:
		case event.FieldRetrigger:
			book = bookkeeping(el.Value())
		default:
			out = append(out, bson.E{Key: k, Value: el.Value()})
		}
	}
	out = append(out,
		bson.E{Key: event.FieldState, Value: stateValue(event.StateNew)},
		bson.E{Key: attempts, Value: int64(0)},
		bson.E{Key: event.FieldVersion, Value: max(version, 0) + 1},
		bson.E{Key: event.FieldUpdatedAt, Value: op.Now})
	kept := book[:0]
	for _, e := range book {
		if e.Key != "reason" {
			kept = append(kept, e)
		}
	}
	book = setField(kept, "redrives", ev.Redrives+1)
	book = setField(book, "redrivenAt", op.Now)
	if h := s.history(ev.History, op.entry("redriven")); h != nil {
		book = setField(book, "history", h)
	}
	return append(out, bson.E{Key: event.FieldRetrigger, Value: book}), nil
}

// PurgeErrors deletes the archived events of ids archived before before,
// and says how many it deleted.
func (s *Store) PurgeErrors(ctx context.Context, ids []bson.RawValue, before time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	q := s.query(InErrors, Filter{IDs: ids, Until: before})
	n, err := s.errs.DeleteMany(ctx, q)
	return n, wrap("purging archived events", err)
}
