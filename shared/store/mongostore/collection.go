package mongostore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/retrigger/retrigger/shared/store"
)

type collection struct {
	coll *mongo.Collection
}

var _ store.Collection = (*collection)(nil)

// filterOf makes a nil filter mean "every document", as in the embedded
// backend (the driver rejects nil).
func filterOf(filter any) any {
	if filter == nil {
		return bson.D{}
	}
	return filter
}

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	if _, err := c.coll.InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("inserting into %s: %w", c.coll.Name(), classify(err))
	}
	return nil
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	if len(docs) == 0 {
		return nil
	}
	if _, err := c.coll.InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("inserting into %s: %w", c.coll.Name(), classify(err))
	}
	return nil
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	doc, err := c.coll.FindOne(ctx, filterOf(filter)).Raw()
	if err != nil {
		return nil, fmt.Errorf("finding in %s: %w", c.coll.Name(), classify(err))
	}
	return doc, nil
}

func (c *collection) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	find := options.Find()
	if opts.Sort != nil {
		find.SetSort(opts.Sort)
	}
	if opts.Limit > 0 {
		find.SetLimit(opts.Limit)
	}
	cursor, err := c.coll.Find(ctx, filterOf(filter), find)
	if err != nil {
		return nil, fmt.Errorf("finding in %s: %w", c.coll.Name(), classify(err))
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	var docs []bson.Raw
	for cursor.Next(ctx) {
		docs = append(docs, bytes.Clone(cursor.Current)) // Current is reused by Next
	}
	if err := cursor.Err(); err != nil {
		return nil, fmt.Errorf("finding in %s: %w", c.coll.Name(), classify(err))
	}
	return docs, nil
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	n, err := c.coll.CountDocuments(ctx, filterOf(filter))
	if err != nil {
		return 0, fmt.Errorf("counting in %s: %w", c.coll.Name(), classify(err))
	}
	return n, nil
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	res := c.coll.FindOneAndUpdate(ctx, filterOf(filter), update,
		options.FindOneAndUpdate().SetReturnDocument(options.After))
	doc, err := res.Raw()
	if err != nil {
		return nil, fmt.Errorf("updating in %s: %w", c.coll.Name(), classify(err))
	}
	return doc, nil
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	res, err := c.coll.ReplaceOne(ctx, filterOf(filter), doc, options.Replace().SetUpsert(upsert))
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.coll.Name(), classify(err))
	}
	return res.MatchedCount, nil
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	res, err := c.coll.UpdateOne(ctx, filterOf(filter), update, options.UpdateOne().SetUpsert(upsert))
	if err != nil {
		return 0, fmt.Errorf("updating in %s: %w", c.coll.Name(), classify(err))
	}
	return res.MatchedCount, nil
}

func (c *collection) DeleteOne(ctx context.Context, filter any) (int64, error) {
	res, err := c.coll.DeleteOne(ctx, filterOf(filter))
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.coll.Name(), classify(err))
	}
	return res.DeletedCount, nil
}

func (c *collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	res, err := c.coll.DeleteMany(ctx, filterOf(filter))
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.coll.Name(), classify(err))
	}
	return res.DeletedCount, nil
}

func (c *collection) EnsureIndexes(ctx context.Context, indexes []store.Index) error {
	if len(indexes) == 0 {
		return nil
	}
	models := make([]mongo.IndexModel, len(indexes))
	for i, index := range indexes {
		opts := options.Index().SetName(index.Name)
		if index.Unique {
			opts.SetUnique(true)
		}
		if index.Sparse {
			opts.SetSparse(true)
		}
		models[i] = mongo.IndexModel{Keys: index.Keys, Options: opts}
	}
	// the server does nothing for an index that exists with the same spec
	if _, err := c.coll.Indexes().CreateMany(ctx, models); err != nil {
		return fmt.Errorf("ensuring indexes on %s: %w", c.coll.Name(), classify(err))
	}
	return nil
}

func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	pipeline := mongo.Pipeline{}
	if opts.Match != nil {
		pipeline = append(pipeline, bson.D{{Key: "$match", Value: opts.Match}})
	}
	// The description of an update is never read; without it, an update
	// near 16 MB whose looked-up document is as large again still fits in
	// a change event.
	pipeline = append(pipeline, bson.D{{Key: "$project", Value: bson.D{{Key: "updateDescription", Value: 0}}}})
	watch := options.ChangeStream().SetFullDocument(options.UpdateLookup)
	if opts.ResumeAfter != nil {
		watch.SetResumeAfter(opts.ResumeAfter)
	}
	cs, err := c.coll.Watch(ctx, pipeline, watch)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.coll.Name(), classifyWatch(err))
	}
	return &stream{cs: cs}, nil
}

// errStreamEnded: the server ended the stream without an error, as after an
// invalidate event (the collection was dropped or renamed).
var errStreamEnded = errors.New("change stream ended by the server")

type stream struct {
	cs *mongo.ChangeStream
}

func (s *stream) Next(ctx context.Context) (store.Change, error) {
	if !s.cs.Next(ctx) {
		return store.Change{}, s.failed(ctx)
	}
	return s.current(), nil
}

func (s *stream) TryNext(ctx context.Context) (store.Change, bool, error) {
	if s.cs.TryNext(ctx) {
		return s.current(), true, nil
	}
	if s.cs.Err() != nil || ctx.Err() != nil || s.cs.ID() == 0 {
		return store.Change{}, false, s.failed(ctx)
	}
	return store.Change{}, false, nil
}

// ResumeToken is the driver's: after an empty batch, the post-batch token.
func (s *stream) ResumeToken() bson.Raw { return bson.Raw(bytes.Clone(s.cs.ResumeToken())) }

// failed is the error of a stream that returned no change.
func (s *stream) failed(ctx context.Context) error {
	err := s.cs.Err()
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	} else if err == nil {
		err = errStreamEnded
	}
	return fmt.Errorf("reading change stream: %w", classify(err))
}

// current decodes the change the cursor is on.
func (s *stream) current() store.Change {
	event := bson.Raw(bytes.Clone(s.cs.Current)) // Current is reused by Next
	change := store.Change{
		Op: event.Lookup("operationType").StringValue(),
		ID: event.Lookup("documentKey", "_id"),
	}
	if t, i, ok := event.Lookup("clusterTime").TimestampOK(); ok {
		change.ClusterTime = bson.Timestamp{T: t, I: i}
	}
	if token, ok := event.Lookup("_id").DocumentOK(); ok {
		change.Token = token
	}
	if doc, ok := event.Lookup("fullDocument").DocumentOK(); ok {
		change.Doc = doc // absent for deletes, null when the document is gone
	}
	return change
}

func (s *stream) Close(ctx context.Context) error {
	if err := s.cs.Close(ctx); err != nil {
		return fmt.Errorf("closing change stream: %w", err)
	}
	return nil
}
