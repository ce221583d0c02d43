package metrics

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// WrapDatabase returns db counting every failed operation in
// retrigger_storage_errors_total, by operation: one place instead of one
// line per call site. Not found and duplicate key are answers, not errors,
// and an operation its caller cancelled (a shutdown) is not the
// database's fault: neither counts. One that ran out of its deadline does:
// a slow database shows here. With m nil it returns db.
func (m *Metrics) WrapDatabase(db store.Database) store.Database {
	if m == nil {
		return db
	}
	return &database{Database: db, m: m}
}

type database struct {
	store.Database
	m *Metrics
}

func (d *database) Collection(name string) store.Collection {
	return &collection{c: d.Database.Collection(name), m: d.m}
}

type collection struct {
	c store.Collection
	m *Metrics
}

func (c *collection) count(ctx context.Context, op string, err error) {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDuplicate) || errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	// A deadline that passed is the database answering too late (every
	// component bounds its storage calls): that counts.
	c.m.StorageError(op)
}

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	err := c.c.InsertOne(ctx, doc)
	c.count(ctx, "insert", err)
	return err
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	err := c.c.InsertMany(ctx, docs)
	c.count(ctx, "insert", err)
	return err
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	doc, err := c.c.FindOne(ctx, filter)
	c.count(ctx, "find", err)
	return doc, err
}

func (c *collection) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	docs, err := c.c.Find(ctx, filter, opts)
	c.count(ctx, "find", err)
	return docs, err
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	n, err := c.c.Count(ctx, filter)
	c.count(ctx, "count", err)
	return n, err
}

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	g, err := c.c.CountBy(ctx, filter, paths...)
	c.count(ctx, "count", err)
	return g, err
}

func (c *collection) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	counts, err := c.c.CountByTime(ctx, filter, path, iv)
	c.count(ctx, "count", err)
	return counts, err
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	doc, err := c.c.FindOneAndUpdate(ctx, filter, update)
	c.count(ctx, "update", err)
	return doc, err
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	n, err := c.c.ReplaceOne(ctx, filter, doc, upsert)
	c.count(ctx, "replace", err)
	return n, err
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	n, err := c.c.UpdateOne(ctx, filter, update, upsert)
	c.count(ctx, "update", err)
	return n, err
}

func (c *collection) DeleteOne(ctx context.Context, filter any) (int64, error) {
	n, err := c.c.DeleteOne(ctx, filter)
	c.count(ctx, "delete", err)
	return n, err
}

func (c *collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	n, err := c.c.DeleteMany(ctx, filter)
	c.count(ctx, "delete", err)
	return n, err
}

func (c *collection) EnsureIndexes(ctx context.Context, indexes []store.Index) error {
	err := c.c.EnsureIndexes(ctx, indexes)
	c.count(ctx, "index", err)
	return err
}

func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	cs, err := c.c.Watch(ctx, opts)
	c.count(ctx, "watch", err)
	if err != nil {
		return nil, err
	}
	return &stream{ChangeStream: cs, c: c}, nil
}

type stream struct {
	store.ChangeStream
	c *collection
}

func (s *stream) Next(ctx context.Context) (store.Change, error) {
	ch, err := s.ChangeStream.Next(ctx)
	s.c.count(ctx, "watch", err)
	return ch, err
}
