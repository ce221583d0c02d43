package eventstore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

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
