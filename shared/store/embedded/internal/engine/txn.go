package engine

import (
	"fmt"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// Result is what an operation did.
type Result struct {
	Matched  bsonkit.List // documents that matched (as they were)
	Modified bsonkit.List // documents inserted, or changed by an update or a replacement (as they are now)
	Upserted bsonkit.Doc  // the document an upsert inserted
}

// Txn is a Write's view of the working state. Its operations see the writes
// committed before it and its own; each is atomic by itself, and the Write
// commits all of them or none. A Txn is valid only inside the Write's
// function, and is not safe for concurrent use.
type Txn struct {
	e      *Engine
	noUndo bool // recovery: nothing to roll back to
	undo   []func()
	ops    []journalOp
	dirty  bool
}

// journalOp is one change of a Write, as the journal records it: an oplog
// entry, or an index created.
type journalOp struct {
	entry bsonkit.Doc
	index *indexOp
}

type indexOp struct {
	ns   NS
	spec IndexSpec
}

type savepoint struct{ undo, ops int }

func (t *Txn) save() savepoint { return savepoint{len(t.undo), len(t.ops)} }

func (t *Txn) rollback(to savepoint) {
	for i := len(t.undo) - 1; i >= to.undo; i-- {
		t.undo[i]()
	}
	t.undo = t.undo[:to.undo]
	t.ops = t.ops[:to.ops]
}

// atomic runs one operation: on an error, or a panic, what it changed is
// undone.
func (t *Txn) atomic(fn func() error) error {
	sp := t.save()
	defer func() {
		if r := recover(); r != nil {
			t.rollback(sp)
			panic(r)
		}
	}()
	if err := fn(); err != nil {
		t.rollback(sp)
		return err
	}
	return nil
}

func (t *Txn) onUndo(fn func()) {
	if !t.noUndo {
		t.undo = append(t.undo, fn)
	}
}

// collection returns the working state's collection ns, creating it when
// create is set (nil when it does not exist and create is not set).
func (t *Txn) collection(ns NS, create bool) *coll {
	w := t.e.w
	c := w.colls[ns]
	if c == nil && create {
		c = newColl()
		w.colls[ns] = c
		t.onUndo(func() { delete(w.colls, ns) })
	}
	if c != nil {
		t.e.dirty[ns] = struct{}{}
	}
	return c
}

// log appends an oplog entry of the change and records it for the journal.
func (t *Txn) log(ns NS, op string, doc bsonkit.Doc, desc bson.D) {
	e := newEntry(t.e.clock.next(), ns, op, doc, desc)
	w := t.e.w
	prev := w.oplog
	w.oplog = append(w.oplog, e)
	t.onUndo(func() { w.oplog = prev })
	t.ops = append(t.ops, journalOp{entry: e})
	t.dirty = true
}

// Find returns the documents of ns matching query (nil: all), in sort order
// (nil: natural order), after skip of them, at most limit (0: all).
func (t *Txn) Find(ns NS, query, sort bsonkit.Doc, skip, limit int) (bsonkit.List, error) {
	c := t.e.w.colls[ns]
	if c == nil {
		return nil, nil
	}
	items, err := c.find(query, sort, skip, limit)
	return docsOf(items), err
}

func docsOf(items []docItem) bsonkit.List {
	if len(items) == 0 {
		return nil
	}
	out := make(bsonkit.List, len(items))
	for i, it := range items {
		out[i] = it.doc
	}
	return out
}

// Insert inserts docs, in order, giving each without an _id an ObjectID. It
// takes docs over: the caller must not change them afterwards. Ordered stops at the first document that fails; otherwise the
// others are still inserted. The error is the first document's that failed
// (ErrDuplicate for a unique index); Modified lists the inserted ones.
func (t *Txn) Insert(ns NS, docs bsonkit.List, ordered bool) (*Result, error) {
	res := &Result{}
	var first error
	for _, doc := range docs {
		err := t.atomic(func() error { return t.insert(ns, doc) })
		if err != nil {
			if first == nil {
				first = err
			}
			if ordered {
				break
			}
			continue
		}
		res.Modified = append(res.Modified, doc)
	}
	return res, first
}

func (t *Txn) insert(ns NS, doc bsonkit.Doc) error {
	c := t.collection(ns, true)
	if bsonkit.Get(doc, "_id") == bsonkit.Missing {
		if _, err := bsonkit.Put(doc, "_id", primitive.NewObjectID(), true); err != nil {
			return err
		}
	}
	if err := t.add(c, doc); err != nil {
		return err
	}
	t.log(ns, "insert", doc, nil)
	return nil
}

// add puts a new document into c: its _id must be new, and it must fit the
// unique indexes.
func (t *Txn) add(c *coll, doc bsonkit.Doc) error {
	id := bsonkit.Get(doc, "_id")
	if _, exists := c.ids.Get(idItem{id: id}); exists {
		return duplicate("_id_")
	}
	if err := t.indexAdd(c, doc); err != nil {
		return err
	}
	c.seq++
	seq := c.seq
	c.docs.Set(docItem{seq: seq, doc: doc})
	c.ids.Set(idItem{id: id, seq: seq})
	t.onUndo(func() {
		c.docs.Delete(docItem{seq: seq})
		c.ids.Delete(idItem{id: id})
	})
	return nil
}

// swap replaces the document at it with doc, which has the same _id.
func (t *Txn) swap(c *coll, it docItem, doc bsonkit.Doc) error {
	if err := t.indexRemove(c, it.doc); err != nil {
		return err
	}
	if err := t.indexAdd(c, doc); err != nil {
		return err
	}
	c.docs.Set(docItem{seq: it.seq, doc: doc})
	t.onUndo(func() { c.docs.Set(it) })
	return nil
}

// remove deletes the document at it.
func (t *Txn) remove(c *coll, it docItem) error {
	if err := t.indexRemove(c, it.doc); err != nil {
		return err
	}
	id := bsonkit.Get(it.doc, "_id")
	c.docs.Delete(it)
	c.ids.Delete(idItem{id: id})
	t.onUndo(func() {
		c.docs.Set(it)
		c.ids.Set(idItem{id: id, seq: it.seq})
	})
	return nil
}

func (t *Txn) indexAdd(c *coll, doc bsonkit.Doc) error {
	for name, ix := range c.indexes {
		if ix.unique == nil {
			continue
		}
		ok, err := ix.unique.Add(doc)
		if err != nil {
			return fmt.Errorf("index %q: %w", name, err)
		}
		if !ok {
			return duplicate(name)
		}
		u := ix.unique
		t.onUndo(func() { _, _ = u.Remove(doc) })
	}
	return nil
}

func (t *Txn) indexRemove(c *coll, doc bsonkit.Doc) error {
	for name, ix := range c.indexes {
		if ix.unique == nil {
			continue
		}
		if _, err := ix.unique.Remove(doc); err != nil {
			return fmt.Errorf("index %q: %w", name, err)
		}
		u := ix.unique
		t.onUndo(func() { _, _ = u.Add(doc) })
	}
	return nil
}

// Update applies update to the documents of ns matching query, at most
// limit of them (0: all), in natural order. With upsert, when none matches,
// it inserts the document the query's equalities and the update make.
// Matched lists the documents that matched; Modified those the update
// changed.
func (t *Txn) Update(ns NS, query, update bsonkit.Doc, limit int, upsert bool) (res *Result, err error) {
	err = t.atomic(func() error {
		res, err = t.update(ns, query, update, limit, upsert)
		return err
	})
	return res, err
}

func (t *Txn) update(ns NS, query, update bsonkit.Doc, limit int, upsert bool) (*Result, error) {
	res := &Result{}
	c := t.collection(ns, false)
	var found []docItem
	if c != nil {
		var err error
		if found, err = c.find(query, nil, 0, limit); err != nil {
			return nil, err
		}
	}
	if len(found) == 0 {
		if !upsert {
			return res, nil
		}
		doc, err := mongokit.Extract(query)
		if err != nil {
			return nil, err
		}
		if _, err := mongokit.Apply(doc, query, update, true, nil); err != nil {
			return nil, err
		}
		if err := t.insert(ns, doc); err != nil {
			return nil, err
		}
		res.Upserted = doc
		return res, nil
	}
	for _, it := range found {
		doc := bsonkit.Clone(it.doc)
		changes, err := mongokit.Apply(doc, query, update, false, nil)
		if err != nil {
			return nil, err
		}
		if bsonkit.Compare(bsonkit.Get(doc, "_id"), bsonkit.Get(it.doc, "_id")) != 0 {
			return nil, fmt.Errorf("document _id is immutable")
		}
		res.Matched = append(res.Matched, it.doc)
		if docsEqual(it.doc, doc) {
			continue
		}
		if err := t.swap(c, it, doc); err != nil {
			return nil, err
		}
		t.log(ns, "update", doc, describe(it.doc, doc, changes))
		res.Modified = append(res.Modified, doc)
	}
	return res, nil
}

// Replace replaces the first document of ns matching query with repl,
// keeping its _id (repl may only repeat it). With upsert, when none matches,
// it inserts repl with the _id of repl or of the query's equality. It takes
// repl over: the caller must not change it afterwards. The update documents
// of Update too: the documents it makes may hold their values.
func (t *Txn) Replace(ns NS, query, repl bsonkit.Doc, upsert bool) (res *Result, err error) {
	err = t.atomic(func() error {
		res, err = t.replace(ns, query, repl, upsert)
		return err
	})
	return res, err
}

func (t *Txn) replace(ns NS, query, repl bsonkit.Doc, upsert bool) (*Result, error) {
	res := &Result{}
	c := t.collection(ns, false)
	var found []docItem
	if c != nil {
		var err error
		if found, err = c.find(query, nil, 0, 1); err != nil {
			return nil, err
		}
	}
	replID := bsonkit.Get(repl, "_id")
	if len(found) == 0 {
		if !upsert {
			return res, nil
		}
		eq, err := mongokit.Extract(query)
		if err != nil {
			return nil, err
		}
		queryID := bsonkit.Get(eq, "_id")
		if queryID != bsonkit.Missing && replID != bsonkit.Missing && bsonkit.Compare(replID, queryID) != 0 {
			return nil, fmt.Errorf("query _id and replacement _id must match")
		}
		if replID == bsonkit.Missing && queryID != bsonkit.Missing {
			if _, err := bsonkit.Put(repl, "_id", queryID, true); err != nil {
				return nil, err
			}
		}
		if err := t.insert(ns, repl); err != nil {
			return nil, err
		}
		res.Upserted = repl
		return res, nil
	}
	it := found[0]
	oldID := bsonkit.Get(it.doc, "_id")
	if replID == bsonkit.Missing {
		if _, err := bsonkit.Put(repl, "_id", oldID, true); err != nil {
			return nil, err
		}
	} else if bsonkit.Compare(replID, oldID) != 0 {
		return nil, fmt.Errorf("document _id is immutable")
	}
	res.Matched = bsonkit.List{it.doc}
	if docsEqual(it.doc, repl) {
		return res, nil
	}
	if err := t.swap(c, it, repl); err != nil {
		return nil, err
	}
	t.log(ns, "replace", repl, nil)
	res.Modified = bsonkit.List{repl}
	return res, nil
}

// Delete deletes the documents of ns matching query, at most limit of them
// (0: all), in natural order. Matched lists them.
func (t *Txn) Delete(ns NS, query bsonkit.Doc, limit int) (res *Result, err error) {
	err = t.atomic(func() error {
		res = &Result{}
		c := t.collection(ns, false)
		if c == nil {
			return nil
		}
		found, err := c.find(query, nil, 0, limit)
		if err != nil {
			return err
		}
		for _, it := range found {
			if err := t.remove(c, it); err != nil {
				return err
			}
			t.log(ns, "delete", it.doc, nil)
			res.Matched = append(res.Matched, it.doc)
		}
		return nil
	})
	return res, err
}

// CreateIndex creates an index on ns (and ns, if missing). An index of the
// same name and spec is a no-op; another index on the same key is an error,
// as is a unique index the documents violate (ErrDuplicate).
func (t *Txn) CreateIndex(ns NS, spec IndexSpec) error {
	return t.atomic(func() error { return t.createIndex(ns, spec, true) })
}

func (t *Txn) createIndex(ns NS, spec IndexSpec, journal bool) error {
	config := spec.config()
	if spec.Name == "" {
		name, err := config.Name()
		if err != nil {
			return err
		}
		spec.Name = name
	}
	c := t.collection(ns, true)
	if ix, ok := c.indexes[spec.Name]; ok && ix.spec.config().Equal(config) {
		return nil
	}
	for name, ix := range c.indexes {
		if bsonkit.Compare(*ix.spec.Key, *config.Key) == 0 {
			return fmt.Errorf("existing index %q has same key", name)
		}
	}
	built, err := mongokit.CreateIndex(config) // validates the spec
	if err != nil {
		return err
	}
	spec.Key, spec.Partial = bsonkit.Clone(spec.Key), bsonkit.Clone(spec.Partial)
	ix := &index{spec: spec}
	if spec.Unique {
		ix.unique = built
		var addErr error
		c.docs.Scan(func(it docItem) bool {
			ok, err := built.Add(it.doc)
			switch {
			case err != nil:
				addErr = err
			case !ok:
				addErr = duplicate(spec.Name)
			}
			return addErr == nil
		})
		if addErr != nil {
			return addErr
		}
	}
	prev := c.indexes
	next := make(map[string]*index, len(prev)+1)
	for name, ix := range prev {
		next[name] = ix
	}
	next[spec.Name] = ix
	c.indexes = next
	t.onUndo(func() { c.indexes = prev })
	if journal {
		t.ops = append(t.ops, journalOp{index: &indexOp{ns: ns, spec: spec}})
		t.dirty = true
	}
	return nil
}

// Drop drops collection ns: its change streams see a "drop".
func (t *Txn) Drop(ns NS) error {
	return t.atomic(func() error {
		w := t.e.w
		c := w.colls[ns]
		if c == nil {
			return nil
		}
		delete(w.colls, ns)
		t.e.dirty[ns] = struct{}{}
		t.onUndo(func() { w.colls[ns] = c })
		t.log(ns, "drop", nil, nil)
		return nil
	})
}

// newEntry builds an oplog entry in the shape of a MongoDB change event, as
// lungo writes them: _id {ts}, clusterTime, operationType, ns {db, coll},
// documentKey {_id}, fullDocument (after an insert, a replacement or an
// update) and updateDescription (after an update: describe).
func newEntry(ts primitive.Timestamp, ns NS, op string, doc bsonkit.Doc, desc bson.D) bsonkit.Doc {
	e := make(bson.D, 0, 7)
	e = append(e,
		bson.E{Key: "_id", Value: bson.D{{Key: "ts", Value: ts}}},
		bson.E{Key: "clusterTime", Value: ts},
		bson.E{Key: "operationType", Value: op},
		bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: ns.DB}, {Key: "coll", Value: ns.Coll}}},
	)
	if doc != nil {
		e = append(e, bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: bsonkit.Get(doc, "_id")}}})
		if op != "delete" {
			e = append(e, bson.E{Key: "fullDocument", Value: *doc})
		}
	}
	if desc != nil {
		e = append(e, bson.E{Key: "updateDescription", Value: desc})
	}
	return &e
}
