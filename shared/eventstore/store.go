package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Default collection names.
const (
	DefaultEvents      = "events"
	DefaultErrors      = "errors"
	DefaultCheckpoints = "retrigger_checkpoints"
	DefaultFlow        = "retrigger_flow"
)

// DefaultHistory is how many entries an event's history keeps.
const DefaultHistory = 20

// Errors callers act on.
var (
	// ErrStale: the event changed since it was read or claimed (another
	// consumer, the application or an operator moved it on), so the write
	// that assumed the old document matched nothing.
	ErrStale = errors.New("eventstore: the event changed since it was read")
	// ErrLeaseLost: the lease a consumer renews or releases is no longer
	// its own: it expired and another consumer claimed the event.
	ErrLeaseLost = errors.New("eventstore: the lease is no longer held")
	// ErrNotFound: no such event.
	ErrNotFound = store.ErrNotFound
)

// Options configure a Store. Zero fields take their defaults.
type Options struct {
	Events      string // default "events"
	Errors      string // default "errors"
	Checkpoints string // default "retrigger_checkpoints"
	Flow        string // flow control's documents; default "retrigger_flow"
	// Schema reads the events collection's documents.
	Schema event.Schema
	// History is how many entries an event's history keeps, oldest dropped
	// first. Default 20; negative: none.
	History int
}

// WithDefaults returns o with its zero fields set.
func (o Options) WithDefaults() Options {
	if o.Events == "" {
		o.Events = DefaultEvents
	}
	if o.Errors == "" {
		o.Errors = DefaultErrors
	}
	if o.Checkpoints == "" {
		o.Checkpoints = DefaultCheckpoints
	}
	if o.Flow == "" {
		o.Flow = DefaultFlow
	}
	if o.History == 0 {
		o.History = DefaultHistory
	}
	return o
}

// Store reads and writes events, their archive and the checkpoints. It is
// safe for concurrent use.
type Store struct {
	opts        Options
	db          store.Database
	events      store.Collection
	errs        store.Collection
	checkpoints store.Collection
	flow        store.Collection
}

// New returns a store on db.
func New(db store.Database, o Options) *Store {
	o = o.WithDefaults()
	return &Store{
		opts:        o,
		db:          db,
		events:      db.Collection(o.Events),
		errs:        db.Collection(o.Errors),
		checkpoints: db.Collection(o.Checkpoints),
		flow:        db.Collection(o.Flow),
	}
}

// Options returns the options in force.
func (s *Store) Options() Options { return s.opts }

// Schema is the schema the events are read with.
func (s *Store) Schema() event.Schema { return s.opts.Schema }

// Parse reads an event document with the store's schema.
func (s *Store) Parse(doc bson.Raw) (event.Event, error) { return s.opts.Schema.Parse(doc) }

// Indexes the events collection needs: the scheduler's and the sweeper's
// queries and retention are each served by one of them.
var eventIndexes = []store.Index{
	// failed events by due time: the scheduler, the sweeper's due branch
	{Name: "retrigger_state_next", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldNextAttemptAt, Value: 1}}},
	// events by last transition: the sweeper's stalled branches, retention
	{Name: "retrigger_state_updated", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldUpdatedAt, Value: 1}}},
	// never-transitioned events by insert time: the sweeper
	{Name: "retrigger_state_created", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldCreatedAt, Value: 1}}},
	// leases by expiry: the sweeper finds runs that never finished
	{Name: "retrigger_lease_until", Keys: bson.D{{Key: event.FieldLeaseUntil, Value: 1}}, Sparse: true},
}

// EnsureIndexes creates the indexes retrigger's queries rely on. It is
// idempotent.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	if err := s.events.EnsureIndexes(ctx, append(append(append([]store.Index{}, eventIndexes...), flowIndexes...), viewIndexes(InEvents)...)); err != nil {
		return err
	}
	return s.errs.EnsureIndexes(ctx, append(append([]store.Index{}, errorIndexes...), viewIndexes(InErrors)...))
}

// Find returns the event document with the given id, or ErrNotFound.
func (s *Store) Find(ctx context.Context, id bson.RawValue) (bson.Raw, error) {
	return s.events.FindOne(ctx, byID(id))
}

// byID selects one document.
func byID(id bson.RawValue) bson.D { return bson.D{{Key: event.FieldID, Value: id}} }

// stateValue is the declared BSON type of a state: int32.
func stateValue(st event.State) int32 { return int32(st) }

// pinned matches field at value v, where def is the value a missing or null
// field reads as: an event inserted without a version or state holds the
// defaults, and in MongoDB that means the field is missing.
func pinned(v, def any, isDefault bool) any {
	if isDefault {
		return bson.D{{Key: "$in", Value: bson.A{def, nil}}}
	}
	return v
}

// current pins an event at the version and state it was read with: the
// condition of every write that assumes the document did not change.
func current(ev *event.Event) bson.D {
	return bson.D{
		{Key: event.FieldID, Value: ev.ID},
		{Key: event.FieldVersion, Value: pinned(ev.Version, int64(0), ev.Version == 0)},
		{Key: event.FieldState, Value: pinned(stateValue(ev.State), stateValue(event.StateNew), ev.State == event.StateNew)},
	}
}

// ceilMillisecond rounds t up to BSON's millisecond precision, so that a
// stored due time is never before the one asked for.
func ceilMillisecond(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
