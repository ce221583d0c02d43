package eventstore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// errorIndexes serve the operator's queries on the archive.
var errorIndexes = []store.Index{
	{Name: "retrigger_type_archived", Keys: bson.D{{Key: event.FieldType, Value: 1}, {Key: event.FieldArchivedAt, Value: -1}}},
	{Name: "retrigger_archived", Keys: bson.D{{Key: event.FieldArchivedAt, Value: -1}}},
}

// Archive says why an event is moved into errors.
type Archive struct {
	Reason event.Reason
	// Message, when set, replaces the event's lastError: the reason a
	// rejected document cannot run.
	Message string
	At      time.Time
	// TraceID and SpanID name the archive's span, for its history entry;
	// "" when it is not traced.
	TraceID, SpanID string
}

// MoveToErrors moves an event document, as read, into the errors
// collection: it writes the copy (replacing an older archive of the same
// _id), then deletes the event pinned on the version and state it was read
// with. Where the deployment has transactions both writes are one
// transaction with a majority write concern: a failover can lose neither
// alone. Elsewhere they are an ordered pair of idempotent writes: a crash
// in between leaves the event in both places, never in neither, and
// repeating the move finishes it. When the event changed in between (the
// application reset it), the copy is not kept (ErrStale): the event lives
// on. When it is already gone, the move is complete.
func (s *Store) MoveToErrors(ctx context.Context, doc bson.Raw, a Archive) error {
	id, err := doc.LookupErr(event.FieldID)
	if err != nil {
		return errors.New("archiving an event: the document has no _id")
	}
	at := time.UnixMilli(a.At.UnixMilli()).UTC() // as stored, to pin it below
	copy, err := archived(doc, a, at)
	if err != nil {
		return wrap("archiving an event", err)
	}
	move := func(ctx context.Context) (deleted bool, err error) {
		if _, err := s.errs.ReplaceOne(ctx, byID(id), copy, true); err != nil {
			return false, wrap("writing the archived copy", err)
		}
		n, err := s.events.DeleteOne(ctx, unchanged(doc))
		return n == 1, wrap("deleting the archived event", err)
	}
	var deleted bool
	err = s.db.Transact(ctx, func(ctx context.Context) error {
		var err error
		if deleted, err = move(ctx); err == nil && !deleted {
			err = errNotDeleted // abort: nothing is kept
		}
		return err
	})
	switch {
	case errors.Is(err, store.ErrNoTransactions):
		if deleted, err = move(ctx); err != nil {
			return err
		}
	case err != nil && !errors.Is(err, errNotDeleted):
		return wrap("moving an event into errors", err)
	}
	if deleted {
		return nil
	}
	if _, err := s.events.FindOne(ctx, byID(id)); errors.Is(err, store.ErrNotFound) {
		return nil // moved already, by a repeat of this move
	} else if err != nil {
		return wrap("reading an event that was not deleted", err)
	}
	// It changed. Without a transaction, take back the copy this move
	// wrote (pinned on its time: not an older archive of the same _id).
	if _, err := s.errs.DeleteOne(ctx, bson.D{{Key: event.FieldID, Value: id}, {Key: event.FieldArchivedAt, Value: at}}); err != nil {
		return wrap("taking back the archived copy of a changed event", err)
	}
	return ErrStale
}

// errNotDeleted aborts the transaction of a move whose event changed.
var errNotDeleted = errors.New("the event changed while being archived")

// unchanged selects the document only while its version and state are as
// in doc, whatever their BSON types (a malformed document is archived too).
func unchanged(doc bson.Raw) bson.D {
	f := bson.D{{Key: event.FieldID, Value: doc.Lookup(event.FieldID)}}
	for _, field := range []string{event.FieldVersion, event.FieldState} {
		if v, err := doc.LookupErr(field); err == nil && v.Type != bson.TypeNull {
			f = append(f, bson.E{Key: field, Value: v})
		} else {
			f = append(f, bson.E{Key: field, Value: nil}) // missing or null
		}
	}
	return f
}

// archived is the errors copy of an event document: every field as it is
// (the _id comes from the filter), with the bookkeeping of the run removed
// and the archive's reason and time added.
func archived(doc bson.Raw, a Archive, at time.Time) (bson.D, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	out := make(bson.D, 0, len(elems)+2)
	var book bson.D
	for _, el := range elems {
		switch el.Key() {
		case event.FieldID:
			continue
		case event.FieldRetrigger:
			book = bookkeeping(el.Value())
			continue
		case event.FieldLastError:
			if a.Message != "" {
				continue
			}
		}
		out = append(out, bson.E{Key: el.Key(), Value: el.Value()})
	}
	if a.Message != "" {
		out = append(out, bson.E{Key: event.FieldLastError, Value: event.LastError{Message: a.Message, At: at}})
	}
	book = setField(book, "reason", string(a.Reason))
	book = setField(book, "archivedAt", at)
	book = appendHistory(book, event.Attempt{At: at, Outcome: "archived", Error: string(a.Reason), TraceID: a.TraceID, SpanID: a.SpanID})
	return append(out, bson.E{Key: event.FieldRetrigger, Value: book}), nil
}

// bookkeeping returns the fields of an event's bookkeeping worth keeping
// in its archive: everything but the lease and the crash count of a run.
func bookkeeping(v bson.RawValue) bson.D {
	d, ok := v.DocumentOK()
	if !ok {
		return bson.D{} // malformed: the archive's reason says so
	}
	elems, _ := d.Elements()
	out := make(bson.D, 0, len(elems))
	for _, el := range elems {
		if k := el.Key(); k != "lease" && k != "crashes" {
			out = append(out, bson.E{Key: k, Value: el.Value()})
		}
	}
	return out
}

func setField(d bson.D, key string, v any) bson.D {
	for i := range d {
		if d[i].Key == key {
			d[i].Value = v
			return d
		}
	}
	return append(d, bson.E{Key: key, Value: v})
}

// appendHistory adds an entry to the history in d, if it has a well-formed
// one or none.
func appendHistory(d bson.D, a event.Attempt) bson.D {
	for i := range d {
		if d[i].Key != "history" {
			continue
		}
		arr, ok := d[i].Value.(bson.RawValue)
		if !ok {
			return d
		}
		vals, err := bson.Raw(arr.Value).Values()
		if arr.Type != bson.TypeArray || err != nil {
			return d
		}
		h := make(bson.A, 0, len(vals)+1)
		for _, v := range vals {
			h = append(h, v)
		}
		d[i].Value = append(h, attemptDoc(a))
		return d
	}
	return append(d, bson.E{Key: "history", Value: bson.A{attemptDoc(a)}})
}
