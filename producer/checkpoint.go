package producer

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// checkpointID names the resume token of this producer's events collection.
func (p *Producer) checkpointID() string { return "producer:" + p.cfg.Events }

// loadToken returns the saved resume token, or nil when there is none.
func (p *Producer) loadToken(ctx context.Context) (bson.Raw, error) {
	doc, err := p.checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: p.checkpointID()}})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading resume token: %w", err)
	}
	v, err := doc.LookupErr("token")
	if err != nil || v.Type != bson.TypeEmbeddedDocument {
		return nil, nil
	}
	return v.Document(), nil
}

// saveToken stores the resume token; nil clears it.
func (p *Producer) saveToken(ctx context.Context, token bson.Raw) error {
	var val any = token
	if token == nil {
		val = nil
	}
	_, err := p.checkpoints.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: p.checkpointID()}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: val}, {Key: "updatedAt", Value: p.cfg.Now()}}}},
		true)
	if err != nil {
		return fmt.Errorf("saving resume token: %w", err)
	}
	p.stats.Checkpoint.Add(1)
	return nil
}
