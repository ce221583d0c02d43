package eventstore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// LoadToken returns the change stream resume token saved under name, or nil
// when there is none.
func (s *Store) LoadToken(ctx context.Context, name string) (bson.Raw, error) {
	doc, err := s.checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: name}})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("loading the resume token", err)
	}
	token, ok := doc.Lookup("token").DocumentOK()
	if !ok {
		return nil, nil
	}
	return token, nil
}

// SaveToken saves the resume token under name; nil clears it.
func (s *Store) SaveToken(ctx context.Context, name string, token bson.Raw, at time.Time) error {
	var val any
	if token != nil {
		val = token
	}
	_, err := s.checkpoints.UpdateOne(ctx, bson.D{{Key: "_id", Value: name}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: val}, {Key: "updatedAt", Value: at}}}}, true)
	return wrap("saving the resume token", err)
}

// changeMatch selects the changes that may need work: inserts, updates and
// replaces of events that have not succeeded ($nin also lets through a
// missing state, a new event, and a malformed one, which must reach
// errors), and the events that end a stream (the collection was dropped or
// renamed), which the relay must see to start again.
var changeMatch = bson.D{{Key: "$or", Value: bson.A{
	bson.D{
		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInsert, store.OpUpdate, store.OpReplace}}}},
		{Key: "fullDocument." + event.FieldState, Value: bson.D{{Key: "$nin", Value: bson.A{stateValue(event.StateSuccess)}}}},
	},
	bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{store.OpInvalidate, "drop", "rename", "dropDatabase"}}}}},
}}}

// Watch opens a change stream on the events, after token (nil: from now),
// delivering the changes that may need work.
func (s *Store) Watch(ctx context.Context, token bson.Raw) (store.ChangeStream, error) {
	cs, err := s.events.Watch(ctx, store.WatchOptions{Match: changeMatch, ResumeAfter: token})
	return cs, wrap("watching the events", err)
}
