package roundtrips

import (
	"errors"
	"fmt"
	"strings"

	"github.com/256dpi/lungo/mongokit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// lookupField is the field updateLookup fills in.
const lookupField = "fullDocument"

// split cuts a change stream's $match into the conjuncts MongoDB evaluates
// before the lookup (those that read no fullDocument field) and after it.
// The conjuncts are the top-level fields of match, with a top-level $and
// flattened into them. Either part may be nil.
func split(match bson.D) (before, after bson.D, err error) {
	var conjuncts []any
	for _, e := range match {
		if e.Key == "$and" {
			list, ok := e.Value.(bson.A)
			if !ok {
				return nil, nil, fmt.Errorf("$and of %T: an array, please", e.Value)
			}
			conjuncts = append(conjuncts, list...)
			continue
		}
		conjuncts = append(conjuncts, bson.D{e})
	}
	var b, a bson.A
	for _, c := range conjuncts {
		if reads(c, lookupField) {
			a = append(a, c)
		} else {
			b = append(b, c)
		}
	}
	return and(b), and(a), nil
}

func and(list bson.A) bson.D {
	switch len(list) {
	case 0:
		return nil
	case 1:
		if d, ok := list[0].(bson.D); ok {
			return d
		}
	}
	return bson.D{{Key: "$and", Value: list}}
}

// reads says whether a query reads field: a key that is the field or a
// path under it, or an aggregation field path ("$field...") in $expr.
func reads(v any, field string) bool {
	under := func(path string) bool { return path == field || strings.HasPrefix(path, field+".") }
	switch v := v.(type) {
	case bson.D:
		for _, e := range v {
			if under(e.Key) || reads(e.Value, field) {
				return true
			}
		}
	case bson.A:
		for _, x := range v {
			if reads(x, field) {
				return true
			}
		}
	case string:
		return under(strings.TrimPrefix(v, "$")) && strings.HasPrefix(v, "$")
	}
	return false
}

// afterLookup evaluates the conjuncts MongoDB applies after the lookup on
// a change, with the embedded engine's matcher. They may read only the
// fields a store.Change carries: operationType, documentKey and
// fullDocument.
type afterLookup struct{ query bsonv1.D }

func newAfterLookup(q bson.D) (*afterLookup, error) {
	if q == nil {
		return nil, nil
	}
	var bad []string
	walkKeys(q, func(k string) {
		root, _, _ := strings.Cut(k, ".")
		switch root {
		case "operationType", "documentKey", lookupField:
		default:
			if !strings.HasPrefix(k, "$") {
				bad = append(bad, k)
			}
		}
	})
	if len(bad) > 0 {
		return nil, fmt.Errorf("the part of the $match after the lookup reads %v, which a store.Change does not carry", bad)
	}
	d, err := toV1(q)
	if err != nil {
		return nil, err
	}
	if _, err := mongokit.Match(&bsonv1.D{}, &d); err != nil {
		return nil, fmt.Errorf("the part of the $match after the lookup: %w", err)
	}
	return &afterLookup{query: d}, nil
}

func walkKeys(v any, f func(string)) {
	switch v := v.(type) {
	case bson.D:
		for _, e := range v {
			f(e.Key)
			walkKeys(e.Value, f)
		}
	case bson.A:
		for _, x := range v {
			walkKeys(x, f)
		}
	}
}

func (m *afterLookup) matches(ch store.Change) (bool, error) {
	if m == nil {
		return true, nil
	}
	event := bson.D{{Key: "operationType", Value: ch.Op}}
	if ch.ID.Type != 0 {
		event = append(event, bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: ch.ID}}})
	}
	if ch.Doc != nil {
		event = append(event, bson.E{Key: lookupField, Value: ch.Doc})
	}
	d, err := toV1(event)
	if err != nil {
		return false, err
	}
	return mongokit.Match(&d, &m.query)
}

func toV1(v any) (bsonv1.D, error) {
	b, err := bson.Marshal(v)
	if err != nil {
		return nil, err
	}
	var d bsonv1.D
	if err := bsonv1.Unmarshal(b, &d); err != nil {
		return nil, errors.Join(errors.New("converting a query for the embedded engine's matcher"), err)
	}
	return d, nil
}
