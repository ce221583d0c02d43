package eventstore

import (
	"context"
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Watch opens a change stream on the events, after token (nil: from now),
// delivering the changes that may need work (ChangeMatch).
func (s *Store) Watch(ctx context.Context, token bson.Raw) (store.ChangeStream, error) {
	cs, err := s.events.Watch(ctx, store.WatchOptions{Match: changeMatch, ResumeAfter: token})
	return cs, wrap("watching the events", err)
}

// ChangeMatch is the $match of the relay's change stream: the changes of
// the events that may need work. It is three conjuncts:
//
//  1. not an update that only takes, renews or gives up a lease to park
//     (leaseOnly, below);
//  2. not an update that sets state to success;
//  3. an insert, update or replace of an event that has not succeeded
//     ($nin also lets through a missing state, a new event, and a
//     malformed one, which must reach errors), or an event that ends the
//     stream (the collection was dropped or renamed), which the relay must
//     see to start again.
//
// The first two read only the change's updateDescription, so MongoDB
// evaluates them before it reads the document for updateLookup: its
// optimizer moves the conjuncts of a $match that read nothing
// $_internalChangeStreamAddPostImage writes (fullDocument) ahead of it. The
// third needs the document. The relay acts on none of what the first two
// drop: a claimed, renewed or parked event is leased or parked, and route
// publishes nothing for it; a succeeded one needs nothing. The document
// is shared: do not modify it.
func ChangeMatch() bson.D { return changeMatch }

var changeMatch = bson.D{{Key: "$and", Value: bson.A{
	bson.D{{Key: "$nor", Value: leaseOnly}},
	bson.D{{Key: "updateDescription.updatedFields." + event.FieldState, Value: bson.D{{Key: "$ne", Value: stateValue(event.StateSuccess)}}}},
	bson.D{{Key: "$or", Value: bson.A{
		bson.D{
			{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInsert, store.OpUpdate, store.OpReplace}}}},
			{Key: "fullDocument." + event.FieldState, Value: bson.D{{Key: "$nin", Value: bson.A{stateValue(event.StateSuccess)}}}},
		},
		bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInvalidate, "drop", "rename", "dropDatabase"}}}}},
	}}},
}}}

// leaseOnly are the updates the relay needs not see, by the first field
// their update description lists (updatedFields). An updatedFields key is
// a path: "retrigger.lease.until", or "retrigger" when the update created
// the subdocument (MongoDB 5.0+; before, "retrigger.lease"). The query
// language cannot name such a key (a dotted path walks into subdocuments),
// so each shape compares the whole updatedFields document with two bounds
// on its first field instead: MongoDB orders documents field by field,
// comparing each field's type, then its name, then its value, so
// {$gte: {k: lo}, $lte: {k: hi}} holds exactly when the first field is
// named k and holds a value of lo's type between lo and hi. (The embedded
// engine compares the name first, then the type and value: the same
// answer, since both bounds have one name and one type.) Every shape is
// an update of retrigger's own, which the application never writes:
//
//   - a claim: the lease (a document whose first field, owner, is a
//     string), set whole or with the subdocument it created; a takeover
//     of an expired lease, which also sets crashes; a renewal, the
//     lease's end. Nothing is removed. Whatever else such an update sets,
//     the event is leased after it, and the relay publishes nothing for a
//     leased event: the write that ends the lease (the outcome, a
//     release, a park) comes through, or the sweeper finds the lease
//     expired;
//   - a park: the lease removed, and nothing else; parkedAt set, with
//     the key and the order it is stamped with (each first in some
//     order); no version written, which tells it from an outcome, since
//     every outcome writes one. The relay publishes nothing for a park
//     (route); the wake that ends it removes parkedAt and comes through.
//
// A release (the lease, crashes and parkedAt removed, nothing set) and a
// wake (parkedAt removed, wokenAt set) match none of them.
var leaseOnly = func() bson.A {
	lease := strings.TrimPrefix(event.FieldLease, event.FieldRetrigger+".")
	var (
		// A lease document begins with owner, a string. The upper bound's
		// only field is greater than any such field for both orders: a
		// regular expression (above every type retrigger writes) named
		// past any field name.
		anyLease = [2]any{bson.D{}, bson.D{{Key: maxName, Value: bson.Regex{Pattern: "$^"}}}}
		anyDate  = [2]any{bson.DateTime(math.MinInt64), bson.DateTime(math.MaxInt64)}
		anyNum   = [2]any{math.Inf(-1), math.Inf(1)}
		anyStr   = [2]any{"", maxName}
		removed  = "updateDescription.removedFields"
	)
	nothingRemoved := bson.E{Key: removed, Value: bson.D{{Key: "$size", Value: 0}}}
	leaseRemoved := bson.E{Key: removed, Value: bson.A{event.FieldLease}}
	noVersion := bson.E{Key: "updateDescription.updatedFields." + event.FieldVersion, Value: bson.D{{Key: "$exists", Value: false}}}
	return bson.A{
		// claims, takeovers, renewals
		bson.D{firstUpdated(event.FieldRetrigger, [2]any{bson.D{{Key: lease, Value: anyLease[0]}}, bson.D{{Key: lease, Value: anyLease[1]}}}), nothingRemoved},
		bson.D{firstUpdated(event.FieldLease, anyLease), nothingRemoved},
		bson.D{firstUpdated(event.FieldCrashes, anyNum), nothingRemoved},
		bson.D{firstUpdated(event.FieldLeaseUntil, anyDate), nothingRemoved},
		// parks
		bson.D{firstUpdated(event.FieldParkedAt, anyDate), leaseRemoved, noVersion},
		bson.D{firstUpdated(event.FieldKey, anyStr), leaseRemoved, noVersion},
		bson.D{firstUpdated(event.FieldSeq, anyNum), leaseRemoved, noVersion},
	}
}()

// maxName sorts after every field name and string retrigger writes: the
// greatest code point.
const maxName = "\U0010FFFF"

// firstUpdated holds when the first field of an update's updatedFields is
// named key, with a value of bounds' type between them.
func firstUpdated(key string, bounds [2]any) bson.E {
	return bson.E{Key: "updateDescription.updatedFields", Value: bson.D{
		{Key: "$gte", Value: bson.D{{Key: key, Value: bounds[0]}}},
		{Key: "$lte", Value: bson.D{{Key: key, Value: bounds[1]}}},
	}}
}
