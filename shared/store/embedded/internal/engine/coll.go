package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	"github.com/tidwall/btree"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// NS names a collection: its database and its name.
type NS struct{ DB, Coll string }

func (n NS) String() string { return n.DB + "." + n.Coll }

// parseNS splits "db.coll" at its first dot.
func parseNS(s string) (NS, error) {
	db, coll, ok := strings.Cut(s, ".")
	if !ok || db == "" || coll == "" {
		return NS{}, fmt.Errorf("invalid namespace %q", s)
	}
	return NS{db, coll}, nil
}

// ErrDuplicate: an insert, update or replacement violated a unique index (the
// _id's included). The error that wraps it names the index.
var ErrDuplicate = errors.New("duplicate key")

func duplicate(index string) error {
	// "duplicate document for index" is lungo's wording, kept for anyone
	// matching on it.
	return fmt.Errorf("%w: duplicate document for index %q", ErrDuplicate, index)
}

// IndexSpec describes an index. Only unique indexes are materialized: lungo's
// matcher answers every query by a scan, so a non-unique index would cost
// every write and serve no read; its spec is kept, so that EnsureIndexes
// stays a no-op and the snapshot carries it.
type IndexSpec struct {
	Name    string
	Key     bsonkit.Doc
	Unique  bool
	Partial bsonkit.Doc   // a partial filter expression, or nil
	Expiry  time.Duration // kept as read from a lungo file; no documents expire
}

func (s IndexSpec) config() mongokit.IndexConfig {
	return mongokit.IndexConfig{Key: s.Key, Unique: s.Unique, Partial: s.Partial, Expiry: s.Expiry}
}

type index struct {
	spec   IndexSpec
	unique *mongokit.Index // nil unless spec.Unique
}

type docItem struct {
	seq uint64 // natural order: the insert's position, kept by updates
	doc bsonkit.Doc
}

type idItem struct {
	id  any
	seq uint64
}

func newDocs() *btree.BTreeG[docItem] {
	return btree.NewBTreeGOptions(func(a, b docItem) bool { return a.seq < b.seq }, btree.Options{NoLocks: true})
}

func newIDs() *btree.BTreeG[idItem] {
	return btree.NewBTreeGOptions(func(a, b idItem) bool { return bsonkit.Compare(a.id, b.id) < 0 }, btree.Options{NoLocks: true})
}

// coll is a collection. The working state's collections are changed in
// place by the one writer; a View holds copies (copy-on-write B-trees) that
// nothing changes, which any number of readers share without locks.
type coll struct {
	docs *btree.BTreeG[docItem]
	ids  *btree.BTreeG[idItem]
	// indexes is replaced, never changed in place, when an index is added,
	// so that views share it; the unique indexes in it change with the
	// documents, so a view holds clones of them (see snapshot).
	indexes map[string]*index
	seq     uint64
}

func newColl() *coll {
	return &coll{docs: newDocs(), ids: newIDs(), indexes: map[string]*index{}}
}

// snapshot returns a copy of c that later changes to c do not touch, and
// the other way round: a view of the working state, or a working state made
// from a view.
func (c *coll) snapshot() *coll {
	s := &coll{docs: c.docs.Copy(), ids: c.ids.Copy(), indexes: c.indexes, seq: c.seq}
	if c.hasUnique() {
		s.indexes = make(map[string]*index, len(c.indexes))
		for name, ix := range c.indexes {
			cp := *ix
			if ix.unique != nil {
				cp.unique = ix.unique.Clone()
			}
			s.indexes[name] = &cp
		}
	}
	return s
}

func (c *coll) hasUnique() bool {
	for _, ix := range c.indexes {
		if ix.unique != nil {
			return true
		}
	}
	return false
}

// specs returns the collection's index specs, by name.
func (c *coll) specs() []IndexSpec {
	out := make([]IndexSpec, 0, len(c.indexes))
	for _, ix := range c.indexes {
		out = append(out, ix.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *coll) byID(id any) (docItem, bool) {
	it, ok := c.ids.Get(idItem{id: id})
	if !ok {
		return docItem{}, false
	}
	return c.docs.Get(docItem{seq: it.seq})
}

// find returns the documents matching query in sort order (natural order
// without one), after skipping skip of them, at most limit (0: all).
func (c *coll) find(query, sortBy bsonkit.Doc, skip, limit int) ([]docItem, error) {
	if query == nil {
		query = &bson.D{}
	}
	if id, ok := idEquality(query); ok {
		// A top-level equality on _id: at most one document can match.
		it, found := c.byID(id)
		if !found || skip > 0 {
			return nil, nil
		}
		ok, err := mongokit.Match(it.doc, query)
		if err != nil || !ok {
			return nil, err
		}
		return []docItem{it}, nil
	}
	var (
		out     []docItem
		err     error
		skipped int
		sorted  = sortBy != nil && len(*sortBy) > 0
	)
	c.docs.Scan(func(it docItem) bool {
		ok, e := mongokit.Match(it.doc, query)
		if e != nil {
			err = e
			return false
		}
		if !ok {
			return true
		}
		if !sorted && skipped < skip {
			skipped++
			return true
		}
		out = append(out, it)
		return sorted || limit <= 0 || len(out) < limit
	})
	if err != nil || !sorted {
		return out, err
	}
	columns, err := mongokit.Columns(sortBy)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return bsonkit.Order(out[i].doc, out[j].doc, columns, false) < 0 })
	if skip >= len(out) {
		return nil, nil
	}
	out = out[skip:]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// idEquality returns the value of a top-level equality on _id in query: a
// value that is not an operator document, an array or a regular expression
// (those match otherwise than by equality).
func idEquality(query bsonkit.Doc) (any, bool) {
	for _, e := range *query {
		if e.Key != "_id" {
			continue
		}
		switch v := e.Value.(type) {
		case bson.D:
			if len(v) > 0 && strings.HasPrefix(v[0].Key, "$") {
				return nil, false
			}
			return v, true
		case bson.A, primitive.Regex, nil:
			return nil, false
		default:
			return v, true
		}
	}
	return nil, false
}

// docsEqual reports whether two documents have the same BSON bytes: an
// update that changes none is no modification (MongoDB's nModified).
func docsEqual(a, b bsonkit.Doc) bool {
	ab, err1 := bson.Marshal(a)
	bb, err2 := bson.Marshal(b)
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}
