package mongostore

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/retrigger/retrigger/shared/store"
)

// The groupings run as one aggregation ($match, then $group) and check
// the answer: a server that speaks MongoDB's wire protocol without its
// aggregation semantics (jongodb groups by the literal "$type" of an _id
// document, and evaluates no expression in it) answers with values no
// document can hold. Such an answer is thrown away and the documents are
// counted on this side instead, from a find that returns only the paths:
// a count that costs the matched documents' transfer, but is right. On
// MongoDB the check costs nothing and the fallback never runs.

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	keys := make(bson.D, len(paths))
	for i, p := range paths {
		keys[i] = bson.E{Key: "k" + strconv.Itoa(i), Value: "$" + p}
	}
	pipeline := bson.A{
		bson.D{{Key: "$match", Value: filterOf(filter)}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: keys}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	}
	var out []store.Group
	err := c.aggregate(ctx, pipeline, func(doc bson.Raw) {
		id, _ := doc.Lookup("_id").DocumentOK()
		g := store.Group{Values: make([]bson.RawValue, len(paths))}
		for i := range paths {
			v, err := id.LookupErr("k" + strconv.Itoa(i))
			if err != nil {
				v = bson.RawValue{Type: bson.TypeNull} // $group leaves a missing field out
			}
			g.Values[i] = v
		}
		g.Count, _ = doc.Lookup("n").AsInt64OK()
		out = append(out, g)
	})
	if err != nil {
		return nil, fmt.Errorf("counting in %s: %w", c.coll.Name(), err)
	}
	literal, err := c.groupedByLiteral(ctx, filter, paths, out)
	if err != nil {
		return nil, fmt.Errorf("counting in %s: %w", c.coll.Name(), err)
	}
	if !literal {
		return out, nil
	}
	var groups store.GroupCounter
	err = c.scan(ctx, filter, paths, func(doc bson.Raw) {
		values := make([]bson.RawValue, len(paths))
		for i, p := range paths {
			values[i] = at(doc, p)
		}
		groups.Add(values)
	})
	if err != nil {
		return nil, fmt.Errorf("counting in %s without $group: %w", c.coll.Name(), err)
	}
	return groups.Groups(), nil
}

// groupedByLiteral reports whether the server grouped by the text of a
// field path instead of its values: a group whose value at a path is the
// string "$path" while fewer matching documents hold that string. (A
// document may hold "$type" as its type; then the count agrees.)
func (c *collection) groupedByLiteral(ctx context.Context, filter any, paths []string, groups []store.Group) (bool, error) {
	for _, g := range groups {
		for i, p := range paths {
			s, ok := g.Values[i].StringValueOK()
			if !ok || s != "$"+p {
				continue
			}
			n, err := c.coll.CountDocuments(ctx, bson.D{{Key: "$and", Value: bson.A{filterOf(filter), bson.D{{Key: p, Value: s}}}}})
			if err != nil {
				return false, classify(err)
			}
			if n < g.Count {
				return true, nil
			}
		}
	}
	return false, nil
}

func (c *collection) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	if err := iv.Validate(); err != nil {
		return nil, err
	}
	inRange := bson.D{{Key: "$and", Value: bson.A{filterOf(filter),
		bson.D{{Key: path, Value: bson.D{{Key: "$gte", Value: iv.From}, {Key: "$lt", Value: iv.End()}}}}}}}
	stepMs := float64(iv.Step) / float64(time.Millisecond)
	interval := bson.D{{Key: "$floor", Value: bson.D{{Key: "$divide", Value: bson.A{
		bson.D{{Key: "$subtract", Value: bson.A{"$" + path, iv.From}}}, stepMs}}}}}
	pipeline := bson.A{
		bson.D{{Key: "$match", Value: inRange}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: interval}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	}
	counts := make([]int64, iv.N)
	wrong := false
	err := c.aggregate(ctx, pipeline, func(doc bson.Raw) {
		f, ok := doc.Lookup("_id").AsFloat64OK()
		n, okN := doc.Lookup("n").AsInt64OK()
		// The $match leaves dates in the intervals only: any other
		// interval is an answer the server made up.
		if !ok || !okN || f != math.Trunc(f) || f < 0 || f >= float64(iv.N) {
			wrong = true
			return
		}
		counts[int(f)] += n
	})
	if err != nil {
		return nil, fmt.Errorf("counting in %s by %s: %w", c.coll.Name(), path, err)
	}
	if !wrong {
		return counts, nil
	}
	clear(counts)
	err = c.scan(ctx, inRange, []string{path}, func(doc bson.Raw) {
		if t, ok := at(doc, path).TimeOK(); ok {
			if i, ok := iv.Index(t); ok {
				counts[i]++
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("counting in %s by %s without $group: %w", c.coll.Name(), path, err)
	}
	return counts, nil
}

// aggregate runs pipeline and hands each result to each.
func (c *collection) aggregate(ctx context.Context, pipeline bson.A, each func(bson.Raw)) error {
	cursor, err := c.coll.Aggregate(ctx, pipeline)
	if err != nil {
		return classify(err)
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	for cursor.Next(ctx) {
		each(bson.Raw(bytes.Clone(cursor.Current)))
	}
	return classify(cursor.Err())
}

// scan hands each document matching filter to each, with at least the
// fields at paths.
func (c *collection) scan(ctx context.Context, filter any, paths []string, each func(bson.Raw)) error {
	projection := bson.D{}
	for _, p := range paths {
		projection = append(projection, bson.E{Key: p, Value: 1})
	}
	cursor, err := c.coll.Find(ctx, filterOf(filter), options.Find().SetProjection(projection))
	if err != nil {
		return classify(err)
	}
	defer cursor.Close(context.WithoutCancel(ctx))
	for cursor.Next(ctx) {
		each(cursor.Current)
	}
	return classify(cursor.Err())
}

// at is the value at a dotted path of doc, null when it is missing.
func at(doc bson.Raw, path string) bson.RawValue {
	v, err := doc.LookupErr(strings.Split(path, ".")...)
	if err != nil {
		return bson.RawValue{Type: bson.TypeNull}
	}
	return bson.RawValue{Type: v.Type, Value: bytes.Clone(v.Value)}
}
