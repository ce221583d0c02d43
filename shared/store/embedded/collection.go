package embedded

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/256dpi/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded/internal/engine"
)

type collection struct {
	db *DB
	ns engine.NS
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

// write runs fn in a write of the engine; inside Transact, in Transact's.
func (c *collection) write(ctx context.Context, fn func(*engine.Txn) error) (err error) {
	if txn := c.db.txnOf(ctx); txn != nil {
		defer recovered(&err)
		return fn(txn)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.db.engine.Write(func(txn *engine.Txn) (err error) {
		defer recovered(&err)
		return fn(txn)
	})
}

// find runs a query on the last committed state, or inside Transact on
// its own.
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
	if txn := c.db.txnOf(ctx); txn != nil {
		return txn.Find(c.ns, query, order, 0, limit)
	}
	// The engine filters, then sorts only the matches.
	view, _, err := c.db.engine.Current()
	if err != nil {
		return nil, err
	}
	return view.Find(c.ns, query, order, 0, limit)
}

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	d, err := toDoc(doc)
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.ns.Coll, err)
	}
	err = c.write(ctx, func(txn *engine.Txn) error {
		_, err := txn.Insert(c.ns, bsonkit.List{d}, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.ns.Coll, classify(err))
	}
	return nil
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	list := make(bsonkit.List, len(docs))
	for i, doc := range docs {
		d, err := toDoc(doc)
		if err != nil {
			return fmt.Errorf("inserting into %s: %w", c.ns.Coll, err)
		}
		list[i] = d
	}
	err := c.write(ctx, func(txn *engine.Txn) error {
		_, err := txn.Insert(c.ns, list, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("inserting into %s: %w", c.ns.Coll, classify(err))
	}
	return nil
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	list, err := c.find(ctx, filter, nil, 1)
	if err != nil {
		return nil, fmt.Errorf("finding in %s: %w", c.ns.Coll, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("finding in %s: %w", c.ns.Coll, store.ErrNotFound)
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
	return nil, fmt.Errorf("finding in %s: %w", c.ns.Coll, err)
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	list, err := c.find(ctx, filter, nil, 0)
	if err != nil {
		return 0, fmt.Errorf("counting in %s: %w", c.ns.Coll, err)
	}
	return int64(len(list)), nil
}

// update applies update to at most limit documents (0: all) matching filter.
func (c *collection) update(ctx context.Context, filter, update any, limit int, upsert bool) (*engine.Result, error) {
	query, err := toFilter(filter)
	if err != nil {
		return nil, err
	}
	upd, err := toDoc(update)
	if err != nil {
		return nil, err
	}
	var res *engine.Result
	err = c.write(ctx, func(txn *engine.Txn) (err error) {
		res, err = txn.Update(c.ns, query, upd, limit, upsert)
		return err
	})
	return res, classify(err)
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	query, err := toFilter(filter)
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.ns.Coll, err)
	}
	repl, err := toDoc(doc)
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.ns.Coll, err)
	}
	var res *engine.Result
	err = c.write(ctx, func(txn *engine.Txn) (err error) {
		res, err = txn.Replace(c.ns, query, repl, upsert)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replacing in %s: %w", c.ns.Coll, classify(err))
	}
	return int64(len(res.Matched)), nil // Matched is empty after an upsert
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	res, err := c.update(ctx, filter, update, 1, false)
	if err != nil {
		return nil, fmt.Errorf("updating in %s: %w", c.ns.Coll, err)
	}
	switch {
	case len(res.Modified) > 0:
		return fromDoc(res.Modified[0])
	case len(res.Matched) > 0: // the update changed nothing
		return fromDoc(res.Matched[0])
	}
	return nil, fmt.Errorf("updating in %s: %w", c.ns.Coll, store.ErrNotFound)
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	res, err := c.update(ctx, filter, update, 1, upsert)
	if err != nil {
		return 0, fmt.Errorf("updating in %s: %w", c.ns.Coll, err)
	}
	return int64(len(res.Matched)), nil // Matched is empty after an upsert
}

func (c *collection) delete(ctx context.Context, filter any, limit int) (int64, error) {
	query, err := toFilter(filter)
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.ns.Coll, err)
	}
	var res *engine.Result
	err = c.write(ctx, func(txn *engine.Txn) (err error) {
		res, err = txn.Delete(c.ns, query, limit)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting from %s: %w", c.ns.Coll, err)
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
	specs := make([]engine.IndexSpec, len(indexes))
	for i, index := range indexes {
		key, err := toDoc(index.Keys)
		if err != nil {
			return fmt.Errorf("creating index %q on %s: %w", index.Name, c.ns.Coll, err)
		}
		// Sparse is not carried: lungo's indexes have no such option, and
		// only unique ones are enforced (every query is a scan).
		specs[i] = engine.IndexSpec{Name: index.Name, Key: key, Unique: index.Unique}
	}
	err := c.write(ctx, func(txn *engine.Txn) error {
		for _, spec := range specs {
			if err := txn.CreateIndex(c.ns, spec); err != nil {
				return fmt.Errorf("creating index %q: %w", spec.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ensuring indexes on %s: %w", c.ns.Coll, classify(err))
	}
	return nil
}

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	list, err := c.find(ctx, filter, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("counting in %s: %w", c.ns.Coll, err)
	}
	if len(paths) > maxGroupPaths {
		return nil, fmt.Errorf("counting in %s: at most %d paths, got %d", c.ns.Coll, maxGroupPaths, len(paths))
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
				return nil, fmt.Errorf("counting in %s: %w", c.ns.Coll, err)
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
		return nil, fmt.Errorf("counting in %s by %s: %w", c.ns.Coll, path, err)
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
