package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/256dpi/lungo/bsonkit"
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
	var (
		out   []store.Group
		index = map[string]int{}
		key   []byte
	)
	for _, doc := range list {
		values := make([]bson.RawValue, len(paths))
		key = key[:0]
		for i, p := range paths {
			v, err := rawValue(bsonkit.Get(doc, p))
			if err != nil {
				return nil, fmt.Errorf("counting in %s: %w", c.ns.Coll, err)
			}
			values[i] = v
			key = groupKey(key, v)
		}
		if i, ok := index[string(key)]; ok {
			out[i].Count++
			continue
		}
		index[string(key)] = len(out)
		out = append(out, store.Group{Values: values, Count: 1})
	}
	return out, nil
}
