package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Pages: the web view's lists. A page is read by keyset, never by skip:
// documents are ordered by their time (see Filter) and then by _id, newest
// first, and a page continues after (or, for the previous one, before) the
// time and id of the document it starts from. On MongoDB every page query
// leads with the fields of one of pageIndexes and sorts by the rest, so it
// reads about as many index keys and documents as it returns, however deep
// the page and however large the collection. A time that is not a date
// (an event never run has no updatedAt) sorts after every date, ordered
// by _id alone.
//
// _id may be of any BSON type, and a comparison such as {$lt: id} only
// matches ids of id's own type bracket (numbers, strings, ObjectIDs, ...):
// ids of the brackets that sort after it (before it, ascending) are added
// by type, so that a page boundary between two brackets loses nothing.

// pageIndexes serve the pages: every filter of a page (all events, events
// by state, by type, archives, archives by type, by reason) has an index
// whose leading fields are the filter's equalities and $in, and whose rest
// is the page's order (time, _id). Events are always queried with their
// states (all of them when none is asked), so that MongoDB merges the
// index ranges of each state in order instead of sorting.
var (
	eventPageIndexes = []store.Index{
		{Name: "retrigger_page_state", Keys: bson.D{{Key: event.FieldState, Value: 1}, {Key: event.FieldUpdatedAt, Value: -1}, {Key: event.FieldID, Value: -1}}},
		{Name: "retrigger_page_type_state", Keys: bson.D{{Key: event.FieldType, Value: 1}, {Key: event.FieldState, Value: 1}, {Key: event.FieldUpdatedAt, Value: -1}, {Key: event.FieldID, Value: -1}}},
	}
	errorPageIndexes = []store.Index{
		{Name: "retrigger_page_archived", Keys: bson.D{{Key: event.FieldArchivedAt, Value: -1}, {Key: event.FieldID, Value: -1}}},
		{Name: "retrigger_page_type_archived", Keys: bson.D{{Key: event.FieldType, Value: 1}, {Key: event.FieldArchivedAt, Value: -1}, {Key: event.FieldID, Value: -1}}},
		{Name: "retrigger_page_reason_archived", Keys: bson.D{{Key: event.FieldReason, Value: 1}, {Key: event.FieldArchivedAt, Value: -1}, {Key: event.FieldID, Value: -1}}},
	}
)

// PageIndexes are the indexes the pages of w rely on (EnsureIndexes
// creates them).
func PageIndexes(w Where) []store.Index {
	if w == InErrors {
		return errorPageIndexes
	}
	return eventPageIndexes
}

// PageKey is a position in the order of a page: just after (or before) the
// document with this time and id. A zero Time is the place of documents
// without a date, which come after every dated one.
type PageKey struct {
	Time time.Time
	ID   bson.RawValue
}

// undatedStart is the position before the first document without a date:
// after every dated document.
var undatedStart = PageKey{}

func (k PageKey) undated() bool { return k.Time.IsZero() }

// String encodes k for a URL: the time in milliseconds ("-" for none) and
// the id (event.EncodeID), joined by a dot.
func (k PageKey) String() string {
	t := "-"
	if !k.undated() {
		t = strconv.FormatInt(k.Time.UnixMilli(), 10)
	}
	return t + "." + event.EncodeID(k.ID)
}

// ParsePageKey reads PageKey.String.
func ParsePageKey(s string) (PageKey, error) {
	ts, id, ok := strings.Cut(s, ".")
	if !ok {
		return PageKey{}, errors.New("a page key is TIME.ID")
	}
	var k PageKey
	if ts != "-" {
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return PageKey{}, fmt.Errorf("page key time: %w", err)
		}
		k.Time = time.UnixMilli(ms).UTC()
	}
	v, err := event.DecodeID(id)
	if err != nil {
		return PageKey{}, fmt.Errorf("page key: %w", err)
	}
	k.ID = v
	return k, nil
}

// PageRequest asks for one page of w.
type PageRequest struct {
	Filter Filter
	// After: the page holds the documents just older than this key.
	// Before: just newer (the previous page). Neither: the newest.
	After, Before *PageKey
	Limit         int // documents per page; default 50
	// MaxExamined bounds the documents read for one page when Filter.Error
	// (evaluated on each document) leaves most of them out; default 5,000.
	// A page that reached it is Partial.
	MaxExamined int
}

// Page is one page of documents, newest first.
type Page struct {
	Docs []bson.Raw
	// Older and Newer are the keys of the next and previous pages; nil:
	// none.
	Older, Newer *PageKey
	// Examined counts the documents read; Partial: MaxExamined stopped the
	// search before the page was full (follow Older, or Newer, to go on).
	Examined int
	Partial  bool
}

// Default bounds of a page.
const (
	DefaultPageLimit   = 50
	DefaultMaxExamined = 5000
	maxPageLimit       = 1000
)

// Page reads one page of w: see the top of this file for the order and
// how MongoDB serves it. Filter.Error is applied to the documents read;
// everything else is in the query.
func (s *Store) Page(ctx context.Context, w Where, r PageRequest) (*Page, error) {
	if r.Limit <= 0 {
		r.Limit = DefaultPageLimit
	}
	r.Limit = min(r.Limit, maxPageLimit)
	if r.MaxExamined <= 0 {
		r.MaxExamined = DefaultMaxExamined
	}
	if r.After != nil && r.Before != nil {
		return nil, errors.New("a page is after a key or before one, not both")
	}
	if r.Before != nil {
		p, err := s.pageScan(ctx, w, r, r.Before, true)
		if err != nil || p.Newer != nil || p.Partial {
			return p, err
		}
		// The newest documents: the first page, full.
		r.Before = nil
	}
	return s.pageScan(ctx, w, r, r.After, false)
}

// pageScan reads up to r.Limit documents from start (nil: the newest) in
// the direction asked, and one more to know whether there are more.
func (s *Store) pageScan(ctx context.Context, w Where, r PageRequest, start *PageKey, newer bool) (*Page, error) {
	ranged := !r.Filter.Since.IsZero() || !r.Filter.Until.IsZero()
	batch := r.Limit + 1
	if r.Filter.Error != nil {
		batch = max(batch, 200)
	}
	var (
		p     = &Page{}
		found []bson.Raw
		pos   = start
		last  *PageKey // position of the last document examined
	)
	for len(found) <= r.Limit {
		if p.Examined >= r.MaxExamined {
			p.Partial = true
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q, ok := s.pageQuery(w, r.Filter, pos, newer, ranged)
		if !ok {
			break
		}
		ask := min(batch, r.MaxExamined-p.Examined)
		docs, err := s.coll(w).Find(ctx, q.Filter, store.FindOptions{Sort: q.Sort, Limit: int64(ask)})
		if err != nil {
			return nil, wrap("reading a page of "+w.String(), err)
		}
		for _, doc := range docs {
			p.Examined++
			k := keyOf(doc, w.timeField())
			last = &k
			if matches(doc, r.Filter) {
				if found = append(found, doc); len(found) > r.Limit {
					break
				}
			}
		}
		if len(docs) < ask { // this segment is done: on to the next, or the end
			if pos, ok = nextSegment(pos, newer, ranged); !ok {
				break
			}
			continue
		}
		pos = last
	}
	more := len(found) > r.Limit
	if more {
		found = found[:r.Limit]
	}
	var beyond *PageKey // where the following page in this direction starts
	switch {
	case more:
		k := keyOf(found[len(found)-1], w.timeField())
		beyond = &k
	case p.Partial:
		beyond = last
	}
	var first *PageKey // the other end of the page
	if len(found) > 0 {
		k := keyOf(found[0], w.timeField())
		first = &k
	} else {
		first = start
	}
	if newer {
		for i, j := 0, len(found)-1; i < j; i, j = i+1, j-1 {
			found[i], found[j] = found[j], found[i]
		}
		p.Newer, p.Older = beyond, first
	} else {
		p.Older = beyond
		if start != nil {
			p.Newer = first
		}
	}
	p.Docs = found
	return p, nil
}

// nextSegment is the position after the segment of pos, in the
// direction: the dated documents are followed, older, by the undated ones.
func nextSegment(pos *PageKey, newer, ranged bool) (*PageKey, bool) {
	undated := pos != nil && pos.undated()
	switch {
	case !newer && !undated && !ranged:
		k := undatedStart
		return &k, true
	case newer && undated:
		return datedStart, true
	}
	return nil, false
}

// datedStart is the position, newer, before the oldest dated document.
var datedStart = &PageKey{Time: time.Unix(-1<<40, 0).UTC()}

// PageQuery is the query of the first segment a page from key reads: its
// filter and order (for explain plans, and to check that an index leads
// it). key nil: the first page.
func (s *Store) PageQuery(w Where, f Filter, key *PageKey, newer bool) Query {
	q, _ := s.pageQuery(w, f, key, newer, !f.Since.IsZero() || !f.Until.IsZero())
	return q
}

// pageQuery is the query of the segment that starts at pos: false when
// there is none.
func (s *Store) pageQuery(w Where, f Filter, pos *PageKey, newer, ranged bool) (Query, bool) {
	if w == InEvents && len(f.States) == 0 {
		// every state, so that the state index serves the page (see
		// eventPageIndexes)
		f.States = []event.State{event.StateNew, event.StateSuccess, event.StateFailed, event.StateError}
	}
	field := w.timeField()
	dir := -1
	lt, typesAfter := "$lt", lowerBrackets
	if newer {
		dir, lt, typesAfter = 1, "$gt", higherBrackets
	}
	conds := bson.A{s.query(w, f)}
	switch {
	case pos == datedStart || pos == nil:
		conds = append(conds, bson.D{{Key: field, Value: bson.D{{Key: "$type", Value: "date"}}}})
	case pos.undated() && ranged:
		return Query{}, false
	case pos.undated():
		conds = append(conds, bson.D{{Key: field, Value: nil}})
		if pos.ID.Type != 0 { // not undatedStart: after its id
			conds = append(conds, idAfter(pos.ID, lt, typesAfter))
		}
	default:
		cmp := "$lte"
		if newer {
			cmp = "$gte"
		}
		conds = append(conds,
			bson.D{{Key: field, Value: bson.D{{Key: cmp, Value: pos.Time}}}},
			bson.D{{Key: "$or", Value: append(bson.A{
				bson.D{{Key: field, Value: bson.D{{Key: lt, Value: pos.Time}}}},
				bson.D{{Key: event.FieldID, Value: bson.D{{Key: lt, Value: pos.ID}}}},
			}, ofTypes(typesAfter(pos.ID.Type))...)}})
	}
	return Query{
		Name:   w.String() + " page",
		Filter: bson.D{{Key: "$and", Value: conds}},
		Sort:   bson.D{{Key: field, Value: dir}, {Key: event.FieldID, Value: dir}},
	}, true
}

// idAfter selects the ids after id in the page's direction: in its type
// bracket by comparison, in the others by type.
func idAfter(id bson.RawValue, cmp string, typesAfter func(bson.Type) []string) bson.D {
	return bson.D{{Key: "$or", Value: append(bson.A{
		bson.D{{Key: event.FieldID, Value: bson.D{{Key: cmp, Value: id}}}},
	}, ofTypes(typesAfter(id.Type))...)}}
}

// ofTypes selects ids of any of the types, one $type each: some
// MongoDB-compatible servers take no array in $type.
func ofTypes(aliases []string) bson.A {
	out := make(bson.A, len(aliases))
	for i, a := range aliases {
		out[i] = bson.D{{Key: event.FieldID, Value: bson.D{{Key: "$type", Value: a}}}}
	}
	return out
}

// brackets are MongoDB's type brackets in sort order, each with the $type
// aliases of its BSON types that an _id may hold. Types no application
// uses as an _id (minKey, undefined, symbol, dbPointer, the javascript
// types, maxKey; arrays and regular expressions are refused) have no
// alias: some MongoDB-compatible servers reject their names, and an _id
// of such a type could only be missed at a page boundary that falls
// between two documents of the same time.
var brackets = []struct {
	types   []bson.Type
	aliases []string
}{
	{[]bson.Type{bson.TypeMinKey}, nil},
	{[]bson.Type{bson.TypeNull, bson.TypeUndefined}, []string{"null"}},
	{[]bson.Type{bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128}, []string{"double", "int", "long", "decimal"}},
	{[]bson.Type{bson.TypeString, bson.TypeSymbol}, []string{"string"}},
	{[]bson.Type{bson.TypeEmbeddedDocument}, []string{"object"}},
	{[]bson.Type{bson.TypeArray}, nil},
	{[]bson.Type{bson.TypeBinary}, []string{"binData"}},
	{[]bson.Type{bson.TypeObjectID}, []string{"objectId"}},
	{[]bson.Type{bson.TypeBoolean}, []string{"bool"}},
	{[]bson.Type{bson.TypeDateTime}, []string{"date"}},
	{[]bson.Type{bson.TypeTimestamp}, []string{"timestamp"}},
	{[]bson.Type{bson.TypeRegex}, nil},
	{[]bson.Type{bson.TypeDBPointer}, nil},
	{[]bson.Type{bson.TypeJavaScript}, nil},
	{[]bson.Type{bson.TypeCodeWithScope}, nil},
	{[]bson.Type{bson.TypeMaxKey}, nil},
}

func bracketOf(t bson.Type) int {
	for i, b := range brackets {
		for _, bt := range b.types {
			if bt == t {
				return i
			}
		}
	}
	return len(brackets)
}

// lowerBrackets and higherBrackets are the $type aliases of the brackets
// that sort before and after t's.
func lowerBrackets(t bson.Type) []string {
	var out []string
	for _, b := range brackets[:min(bracketOf(t), len(brackets))] {
		out = append(out, b.aliases...)
	}
	return out
}

func higherBrackets(t bson.Type) []string {
	var out []string
	for _, b := range brackets[min(bracketOf(t)+1, len(brackets)):] {
		out = append(out, b.aliases...)
	}
	return out
}

// keyOf is the position of doc in a page's order.
func keyOf(doc bson.Raw, field string) PageKey {
	return PageKey{Time: dateOf(doc, field), ID: doc.Lookup(event.FieldID)}
}
