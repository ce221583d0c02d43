package embedded

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

type collection struct {
	db     *DB
	handle lungo.Handle
}

var _ store.Collection = (*collection)(nil)

// errEnginePanicked wraps a panic inside the engine, turned into an error:
// one document that trips the engine must fail its operation, never the
// process.
var errEnginePanicked = errors.New("the embedded engine panicked")

// recovered turns a panic of the engine into an error in *err.
func recovered(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", errEnginePanicked, r)
	}
}

// write runs fn in a write transaction and commits it; inside Transact,
// in Transact's transaction, which commits at its end.
func (c *collection) write(ctx context.Context, fn func(*lungo.Transaction) (*lungo.Result, error)) (_ *lungo.Result, err error) {
	if txn := c.db.txnOf(ctx); txn != nil {
		defer recovered(&err)
		return fn(txn)
	}
	txn, err := c.db.engine.Begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer c.db.engine.Abort(txn)
	defer recovered(&err)
	res, err := fn(txn)
	if err != nil {
		return nil, err
	}
	if err := c.db.engine.Commit(txn); err != nil {
		return nil, err
	}
	return res, nil
}

// find runs a query on a snapshot of the catalog.
func (c *collection) find(ctx context.Context, filter any, sort bson.D, limit int) (_ bsonkit.List, err error) {
	defer recovered(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	query, err := toFilter(filter)
	if err != nil {
		return nil, err
	}
	var order bsonkit.Doc
	if len(sort) > 0 {
		if order, err = toDoc(sort); err != nil {
			return nil, err
		}
	}
	txn := c.db.txnOf(ctx)
	if txn == nil {
		if txn, err = c.db.engine.Begin(ctx, false); err != nil {
			return nil, err
		}
	}
	if order == nil {
		res, err := txn.Find(c.handle, query, nil, 0, limit)
		if err != nil {
			return nil, err
		}
		return res.Matched, nil
	}
	// lungo sorts the whole collection before it filters; filtering
	// first sorts only the matches, which a query with a limit (the
	// scheduler's, a key's next event) keeps few.
	res, err := txn.Find(c.handle, query, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	list, err := mongokit.Sort(res.Matched, order)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(list) > limit {
		list = list[:limit]
	}
	return list, nil
}

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	d, err := toDoc(doc)
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.handle[1], err)
	}
	res, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		return txn.Insert(c.handle, bsonkit.List{d}, true)
	})
	if err == nil {
		err = res.Error // the error of an ordered insert's first failed document
	}
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.handle[1], classify(err))
	}
	return nil
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	list := make(bsonkit.List, len(docs))
	for i, doc := range docs {
		d, err := toDoc(doc)
		if err != nil {
			return fmt.Errorf("inserting into %s: %w", c.handle[1], err)
		}
		list[i] = d
	}
	res, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		return txn.Insert(c.handle, list, true)
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.handle[1], classify(err))
	}
	return nil
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	list, err := c.find(ctx, filter, nil, 1)
	if err != nil {
		return nil, fmt.Errorf("finding in %s: %w", c.handle[1], err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("finding in %s: %w", c.handle[1], store.ErrNotFound)
	}
	return fromDoc(list[0])
}

func (c *collection) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	list, err := c.find(ctx, filter, opts.Sort, int(opts.Limit))
	if err == nil {
		var out []bson.Raw
		if out, err = fromList(list); err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("finding in %s: %w", c.handle[1], err)
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	list, err := c.find(ctx, filter, nil, 0)
	if err != nil {
		return 0, fmt.Errorf("counting in %s: %w", c.handle[1], err)
	}
	return int64(len(list)), nil
}

// update applies update to at most limit documents (0: all) matching filter.
func (c *collection) update(ctx context.Context, filter, update any, limit int, upsert bool) (*lungo.Result, error) {
	query, err := toFilter(filter)
	if err != nil {
		return nil, err
	}
	upd, err := toDoc(update)
	if err != nil {
		return nil, err
	}
	res, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		return txn.Update(c.handle, query, nil, upd, 0, limit, upsert, nil)
	})
	if errors.Is(err, errEnginePanicked) {
		// lungo compares the _id before and after an update with Go's ==,
		// which panics for an _id of an uncomparable Go type (a binary
		// such as a UUID, a document, an array). A replacement without an
		// _id keeps the stored one and skips that comparison.
		res, err = c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
			return updateByReplace(txn, c.handle, query, upd, limit)
		})
	}
	return res, classify(err)
}

// updateByReplace applies update to at most limit documents matching query
// by replacing each with its updated copy.
func updateByReplace(txn *lungo.Transaction, handle lungo.Handle, query, update bsonkit.Doc, limit int) (*lungo.Result, error) {
	found, err := txn.Find(handle, query, nil, 0, limit)
	if err != nil {
		return nil, err
	}
	res := &lungo.Result{}
	for _, doc := range found.Matched {
		repl := bsonkit.Clone(doc)
		if _, err := mongokit.Apply(repl, query, update, false, nil); err != nil {
			return nil, err
		}
		bsonkit.Unset(repl, "_id")
		byID := &bsonv1.D{{Key: "_id", Value: bsonkit.Get(doc, "_id")}}
		r, err := txn.Replace(handle, byID, nil, repl, false)
		if err != nil {
			return nil, err
		}
		res.Matched = append(res.Matched, r.Matched...)
		res.Modified = append(res.Modified, r.Modified...)
	}
	return res, nil
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	query, err := toFilter(filter)
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.handle[1], err)
	}
	repl, err := toDoc(doc)
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.handle[1], err)
	}
	res, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		return txn.Replace(c.handle, query, nil, repl, upsert)
	})
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.handle[1], classify(err))
	}
	return int64(len(res.Matched)), nil // Matched is empty after an upsert
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	res, err := c.update(ctx, filter, update, 1, false)
	if err != nil {
		return nil, fmt.Errorf("updating in %s: %w", c.handle[1], err)
	}
	switch {
	case len(res.Modified) > 0:
		return fromDoc(res.Modified[0])
	case len(res.Matched) > 0: // the update changed nothing
		return fromDoc(res.Matched[0])
	}
	return nil, fmt.Errorf("updating in %s: %w", c.handle[1], store.ErrNotFound)
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	res, err := c.update(ctx, filter, update, 1, upsert)
	if err != nil {
		return 0, fmt.Errorf("updating in %s: %w", c.handle[1], err)
	}
	return int64(len(res.Matched)), nil // Matched is empty after an upsert
}

func (c *collection) delete(ctx context.Context, filter any, limit int) (int64, error) {
	query, err := toFilter(filter)
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.handle[1], err)
	}
	res, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		return txn.Delete(c.handle, query, nil, 0, limit)
	})
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.handle[1], err)
	}
	return int64(len(res.Matched)), nil
}

func (c *collection) DeleteOne(ctx context.Context, filter any) (int64, error) {
	return c.delete(ctx, filter, 1)
}

func (c *collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	return c.delete(ctx, filter, 0)
}

func (c *collection) EnsureIndexes(ctx context.Context, indexes []store.Index) error {
	configs := make([]mongokit.IndexConfig, len(indexes))
	for i, index := range indexes {
		key, err := toDoc(index.Keys)
		if err != nil {
			return fmt.Errorf("creating index %q on %s: %w", index.Name, c.handle[1], err)
		}
		configs[i] = mongokit.IndexConfig{Key: key, Unique: index.Unique}
	}
	_, err := c.write(ctx, func(txn *lungo.Transaction) (*lungo.Result, error) {
		ns := txn.Catalog().Namespaces[c.handle]
		for i, config := range configs {
			if ns != nil {
				// skip existing ones so that a repeat does not commit
				if index, ok := ns.Indexes[indexes[i].Name]; ok && config.Equal(index.Config()) {
					continue
				}
			}
			if _, err := txn.CreateIndex(c.handle, indexes[i].Name, config); err != nil {
				return nil, fmt.Errorf("creating index %q: %w", indexes[i].Name, err)
			}
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("ensuring indexes on %s: %w", c.handle[1], classify(err))
	}
	return nil
}

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	list, err := c.find(ctx, filter, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("counting in %s: %w", c.handle[1], err)
	}
	if len(paths) > maxGroupPaths {
		return nil, fmt.Errorf("counting in %s: at most %d paths, got %d", c.handle[1], maxGroupPaths, len(paths))
	}
	// Documents are grouped by their Go values, which costs a map lookup
	// a document; only the first of a group is converted to BSON.
	var (
		out   []store.Group
		index = map[groupValues]int{}
	)
	for _, doc := range list {
		var key groupValues
		for i, p := range paths {
			key[i] = groupValue(bsonkit.Get(doc, p))
		}
		if i, ok := index[key]; ok {
			out[i].Count++
			continue
		}
		values := make([]bson.RawValue, len(paths))
		for i, p := range paths {
			if values[i], err = rawValue(bsonkit.Get(doc, p)); err != nil {
				return nil, fmt.Errorf("counting in %s: %w", c.handle[1], err)
			}
		}
		index[key] = len(out)
		out = append(out, store.Group{Values: values, Count: 1})
	}
	return out, nil
}

// maxGroupPaths bounds the paths of one CountBy.
const maxGroupPaths = 4

// groupValues identifies a group: one value per path, as groupValue.
type groupValues [maxGroupPaths]any

// groupValue is a comparable value that is equal for two values exactly
// when MongoDB's $group puts them in one group: numbers by their value
// whatever their type, a missing field as null, NaN as NaN; values that are
// not comparable in Go by their BSON bytes.
func groupValue(v any) any {
	switch v := v.(type) {
	case nil, bsonkit.MissingType:
		return nil
	case string, bool, primitive.DateTime, primitive.ObjectID:
		return v
	case int32:
		return float64(v)
	case int64:
		return float64(v)
	case float64:
		if math.IsNaN(v) {
			return nanValue{}
		}
		return v
	}
	raw, err := rawValue(v)
	if err != nil {
		return bytesValue(fmt.Sprint(v))
	}
	return bytesValue(append([]byte{byte(raw.Type)}, raw.Value...))
}

// nanValue is the group of NaN; bytesValue of other values, by their BSON
// type and bytes.
type (
	nanValue   struct{}
	bytesValue string
)

func (c *collection) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	if err := iv.Validate(); err != nil {
		return nil, err
	}
	// The range on path is checked here rather than by the engine's
	// matcher, which costs more per document.
	list, err := c.find(ctx, filter, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("counting in %s by %s: %w", c.handle[1], path, err)
	}
	counts := make([]int64, iv.N)
	for _, doc := range list {
		if at, ok := bsonkit.Get(doc, path).(primitive.DateTime); ok {
			if i, ok := iv.Index(at.Time()); ok {
				counts[i]++
			}
		}
	}
	return counts, nil
}
