package eventstore

import (
	"context"
	"encoding/binary"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Cursor pages through events in the order of a date field, resuming after
// the last page: events at a later time, or at the same time and not yet
// seen. It never skips an event, whatever the ids' BSON types.
type Cursor struct {
	After time.Time       // zero: from the start
	Seen  []bson.RawValue // ids already returned whose field equals After
}

// page returns the filter for the next page on field.
func (c Cursor) page(field string) bson.D {
	if c.After.IsZero() && len(c.Seen) == 0 {
		return bson.D{}
	}
	if len(c.Seen) == 0 {
		return bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: c.After}}}}
	}
	seen := make(bson.A, len(c.Seen))
	for i, id := range c.Seen {
		seen[i] = id
	}
	// After the last time, or at it and not returned yet. (Not "$gte and
	// not seen": an event seen at that time may have moved later since,
	// as a failed event that failed again, and must be found there.)
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: c.After}}}},
		bson.D{{Key: field, Value: c.After}, {Key: event.FieldID, Value: bson.D{{Key: "$nin", Value: seen}}}},
	}}}
}

// within adds the page's condition to filter, which may hold conditions on
// the same field.
func (c Cursor) within(filter bson.D, field string) bson.D {
	page := c.page(field)
	if len(page) == 0 {
		return filter
	}
	return bson.D{{Key: "$and", Value: bson.A{filter, page}}}
}

// Advance moves the cursor past docs, a page sorted by the date at field.
func (c Cursor) Advance(docs []bson.Raw, field string) Cursor {
	for _, doc := range docs {
		t := dateOf(doc, field)
		if !t.Equal(c.After) {
			c = Cursor{After: t}
		}
		c.Seen = append(c.Seen, doc.Lookup(event.FieldID))
	}
	return c
}

func dateOf(doc bson.Raw, path string) time.Time {
	ms, ok := doc.Lookup(splitPath(path)...).DateTimeOK()
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

// DueAfter returns the events that wait for a due time after the cursor:
// failed events, and new events with a nextAttemptAt (a delayed first
// run), earliest first, at most limit, and the cursor past them. The
// scheduler publishes those that are due and sleeps until the next. (A new
// event the application reset from failed comes back too, due by its old
// time: the consumers find it run already, or run it.)
func (s *Store) DueAfter(ctx context.Context, cur Cursor, limit int) ([]bson.Raw, Cursor, error) {
	filter := bson.D{
		{Key: event.FieldState, Value: bson.D{{Key: "$in", Value: bson.A{stateValue(event.StateFailed), stateValue(event.StateNew), nil}}}},
		{Key: event.FieldNextAttemptAt, Value: bson.D{{Key: "$type", Value: "date"}}},
	}
	filter = cur.within(filter, event.FieldNextAttemptAt)
	docs, err := s.events.Find(ctx, filter, store.FindOptions{Sort: bson.D{{Key: event.FieldNextAttemptAt, Value: 1}}, Limit: int64(limit)})
	if err != nil {
		return nil, cur, wrap("finding waiting events by due time", err)
	}
	return docs, cur.Advance(docs, event.FieldNextAttemptAt), nil
}

// SweepOptions bound a sweep.
type SweepOptions struct {
	Now time.Time
	// Stall is how long an event needing work may show no progress
	// before it is swept: new and errored events untouched for it,
	// failed events due for it. 0 sweeps every event that needs work.
	Stall time.Duration
	// Before, when set, replaces Now-Stall for new and errored events:
	// those last touched (or inserted) before it are swept, whatever
	// Stall. The relay's first sweep sweeps what came before its stream.
	Before time.Time
	// LeaseGrace is how long past its end a lease is left to its owner
	// before the run counts as never finished.
	LeaseGrace time.Duration
	// Page is the page size of each query.
	Page int
	// Held are event types that wait by flow control (paused, or their
	// breaker open): their runnable events stay where they are, in the
	// stream or in the collection, and are not swept. Their errored
	// events are, to be archived.
	Held []string
}

// branch is one query of a sweep: its filter, and the date field its
// pages are sorted and paged by ("": unordered, paged by the ids seen).
type branch struct {
	name   string
	filter bson.D
	order  string
}

// lastObjectIDOf is the greatest ObjectID of t's second: every ObjectID
// made in that second or before is at most it. An ObjectID holds whole
// seconds, so a bound on it includes the whole second of t.
func lastObjectIDOf(t time.Time) bson.ObjectID {
	var oid bson.ObjectID
	secs := t.Unix()
	if secs > math.MaxUint32 {
		secs = math.MaxUint32
	}
	binary.BigEndian.PutUint32(oid[:4], uint32(max(secs, 0)))
	for i := 4; i < len(oid); i++ {
		oid[i] = 0xff
	}
	return oid
}

// endOfTime is later than any time an event holds.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// notLeased selects events no live lease holds at now.
func notLeased(now time.Time) bson.E {
	return bson.E{Key: event.FieldLeaseUntil, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: now}}}}}
}

var (
	isNew    = bson.E{Key: event.FieldState, Value: bson.D{{Key: "$in", Value: bson.A{stateValue(event.StateNew), nil}}}}
	notADate = bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "date"}}}}
)

// branches are the queries of a sweep, each served by an index.
func (o SweepOptions) branches() []branch {
	cutoff := o.Now.Add(-o.Stall)
	dueBy := bson.D{{Key: "$lte", Value: cutoff}}
	switch {
	case !o.Before.IsZero():
		cutoff = o.Before
	case o.Stall == 0:
		cutoff = endOfTime // every new or errored event, whatever its times say
	}
	// Runnable events sweep when no lease holds them, their type is not
	// held, and they are not parked (waiting for their key) within the
	// stall: a parked event whose wake was lost comes back after it.
	free := bson.D{notLeased(o.Now), {Key: event.FieldParkedAt, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: o.Now.Add(-o.Stall)}}}}}}
	if len(o.Held) > 0 {
		held := make(bson.A, len(o.Held))
		for i, t := range o.Held {
			held[i] = t
		}
		free = append(free, bson.E{Key: event.FieldType, Value: bson.D{{Key: "$nin", Value: held}}})
	}
	and := func(d ...bson.E) bson.D { return append(bson.D(d), free...) }
	lte := bson.D{{Key: "$lte", Value: cutoff}}
	failed := bson.E{Key: event.FieldState, Value: stateValue(event.StateFailed)}
	errored := bson.E{Key: event.FieldState, Value: stateValue(event.StateError)}
	return []branch{
		{"failed and due", and(failed, bson.E{Key: event.FieldNextAttemptAt, Value: dueBy}), event.FieldNextAttemptAt},
		{"failed without a due date", and(failed, bson.E{Key: event.FieldNextAttemptAt, Value: notADate}), ""},
		{"new, last transition long ago", and(isNew, bson.E{Key: event.FieldUpdatedAt, Value: lte}), event.FieldUpdatedAt},
		{"new, inserted long ago", and(isNew, bson.E{Key: event.FieldUpdatedAt, Value: notADate}, bson.E{Key: event.FieldCreatedAt, Value: lte}), event.FieldCreatedAt},
		{"new, ObjectID from long ago", and(isNew, bson.E{Key: event.FieldUpdatedAt, Value: notADate}, bson.E{Key: event.FieldCreatedAt, Value: notADate},
			bson.E{Key: event.FieldID, Value: bson.D{{Key: "$type", Value: "objectId"}, {Key: "$lte", Value: lastObjectIDOf(cutoff)}}}), ""},
		{"new, no time at all", and(isNew, bson.E{Key: event.FieldUpdatedAt, Value: notADate}, bson.E{Key: event.FieldCreatedAt, Value: notADate},
			bson.E{Key: event.FieldID, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "objectId"}}}}}), ""},
		{"errored, not archived", bson.D{errored, {Key: event.FieldUpdatedAt, Value: lte}}, event.FieldUpdatedAt},
		{"errored without a time", bson.D{errored, {Key: event.FieldUpdatedAt, Value: notADate}}, ""},
		{"runs that never finished", bson.D{{Key: event.FieldLeaseUntil, Value: bson.D{{Key: "$lte", Value: o.Now.Add(-o.LeaseGrace)}}}}, event.FieldLeaseUntil},
		{"malformed state", bson.D{{Key: event.FieldState, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$nin", Value: bson.A{
			stateValue(event.StateNew), stateValue(event.StateSuccess), stateValue(event.StateFailed), stateValue(event.StateError), nil}}}}}, ""},
	}
}

// Query is one query of a sweep, as it is sent (for explain plans).
type Query struct {
	Name   string
	Filter bson.D
	Sort   bson.D // nil: unordered
}

// Queries are the first-page queries of a sweep with these options.
func (o SweepOptions) Queries() []Query {
	var out []Query
	for _, b := range o.branches() {
		q := Query{Name: b.name, Filter: b.filter}
		if b.order != "" {
			q.Sort = bson.D{{Key: b.order, Value: 1}}
		}
		out = append(out, q)
	}
	return out
}

// maxUnorderedPages bounds the pages of an unordered branch in one sweep,
// whose paging filter grows with each page.
const maxUnorderedPages = 20

// maxSweepDedup bounds the ids a sweep remembers to visit each event once.
const maxSweepDedup = 100_000

// Sweep calls visit for every event that needs work and has shown no
// progress for o.Stall, one query per kind of stall, page by page, each
// event once (in a sweep of up to 100,000 events). visit may publish the
// event; an error from it ends the sweep.
func (s *Store) Sweep(ctx context.Context, o SweepOptions, visit func(doc bson.Raw) error) error {
	seen := map[string]struct{}{}
	once := func(doc bson.Raw) error {
		if len(seen) < maxSweepDedup {
			k := event.Key(doc.Lookup(event.FieldID))
			if _, dup := seen[k]; dup {
				return nil
			}
			seen[k] = struct{}{}
		}
		return visit(doc)
	}
	for _, b := range o.branches() {
		if err := s.sweepBranch(ctx, b, o.Page, once); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) sweepBranch(ctx context.Context, b branch, limit int, visit func(bson.Raw) error) error {
	var cur Cursor
	var seen bson.A
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		filter := append(bson.D{}, b.filter...)
		opts := store.FindOptions{Limit: int64(limit)}
		if b.order != "" {
			filter = cur.within(filter, b.order)
			opts.Sort = bson.D{{Key: b.order, Value: 1}}
		} else {
			if page >= maxUnorderedPages {
				return nil // the next sweep goes on
			}
			if len(seen) > 0 {
				filter = append(filter, bson.E{Key: event.FieldID, Value: bson.D{{Key: "$nin", Value: seen}}})
			}
		}
		docs, err := s.events.Find(ctx, filter, opts)
		if err != nil {
			return wrap("sweeping "+b.name, err)
		}
		for _, doc := range docs {
			if err := visit(doc); err != nil {
				return err
			}
			seen = append(seen, doc.Lookup(event.FieldID))
		}
		if len(docs) < limit {
			return nil
		}
		if b.order != "" {
			cur = cur.Advance(docs, b.order)
			seen = nil
		}
	}
}

// Retire deletes at most limit succeeded events whose last transition is
// before before, and says how many it deleted.
func (s *Store) Retire(ctx context.Context, before time.Time, limit int) (int64, error) {
	old := bson.D{
		{Key: event.FieldState, Value: stateValue(event.StateSuccess)},
		{Key: event.FieldUpdatedAt, Value: bson.D{{Key: "$lt", Value: before}}},
	}
	docs, err := s.events.Find(ctx, old, store.FindOptions{Sort: bson.D{{Key: event.FieldUpdatedAt, Value: 1}}, Limit: int64(limit)})
	if err != nil || len(docs) == 0 {
		return 0, wrap("finding succeeded events past retention", err)
	}
	ids := make(bson.A, len(docs))
	for i, doc := range docs {
		ids[i] = doc.Lookup(event.FieldID)
	}
	n, err := s.events.DeleteMany(ctx, append(old, bson.E{Key: event.FieldID, Value: bson.D{{Key: "$in", Value: ids}}}))
	return n, wrap("deleting succeeded events past retention", err)
}
