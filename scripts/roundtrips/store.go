package roundtrips

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// Counter counts the database round trips of the components whose storage
// it wraps. It is safe for concurrent use.
type Counter struct {
	mu       sync.Mutex
	commands map[string]map[string]int // component → "collection.op" → n
	changes  map[string]int            // operation type → change events the relay read
	lookups  int
}

// New returns a counter with nothing counted.
func New() *Counter {
	return &Counter{commands: map[string]map[string]int{}, changes: map[string]int{}}
}

// Store wraps db as the named component uses it: each operation counts as
// one command of that component, and a change stream it opens counts its
// change events and the lookups MongoDB would make for them.
func (c *Counter) Store(component string, db store.Database) store.Database {
	return &database{Database: db, c: c, component: component}
}

// Take returns what was counted since the last Take, and starts again.
func (c *Counter) Take() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{Commands: c.commands, Changes: c.changes, Lookups: c.lookups}
	c.commands, c.changes, c.lookups = map[string]map[string]int{}, map[string]int{}, 0
	return out
}

// Read returns what was counted since the last Take, and goes on.
func (c *Counter) Read() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{Commands: map[string]map[string]int{}, Changes: maps.Clone(c.changes), Lookups: c.lookups}
	for k, v := range c.commands {
		out.Commands[k] = maps.Clone(v)
	}
	return out
}

func (c *Counter) command(component, coll, op string) {
	c.mu.Lock()
	m := c.commands[component]
	if m == nil {
		m = map[string]int{}
		c.commands[component] = m
	}
	m[coll+"."+op]++
	c.mu.Unlock()
}

func (c *Counter) change(op string, lookup bool) {
	c.mu.Lock()
	if op != "" {
		c.changes[op]++
	}
	if lookup {
		c.lookups++
	}
	c.mu.Unlock()
}

// Counts are the database round trips counted.
type Counts struct {
	// Commands per component, by "collection.operation" (one command
	// each: insert, find, findOne, findOneAndUpdate, update, replace,
	// delete, ...; a transaction counts its operations).
	Commands map[string]map[string]int
	// Changes are the change events the relay read, by operation type.
	Changes map[string]int
	// Lookups are the updates MongoDB would read the document of for the
	// relay's stream (fullDocument: updateLookup): those that pass the
	// conjuncts of its $match that run before the lookup, whether or not
	// they pass the rest.
	Lookups int
}

// CommandsOf is the number of commands component sent.
func (c Counts) CommandsOf(component string) int {
	n := 0
	for _, v := range c.Commands[component] {
		n += v
	}
	return n
}

// ChangesRead is the number of change events the relay read.
func (c Counts) ChangesRead() int {
	n := 0
	for _, v := range c.Changes {
		n += v
	}
	return n
}

// Format renders counts as one line: "worker: events.findOneAndUpdate=1
// events.update=1; relay read insert=1; lookups 0".
func Format(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

type database struct {
	store.Database
	c         *Counter
	component string
}

func (d *database) Collection(name string) store.Collection {
	return &collection{Collection: d.Database.Collection(name), d: d, name: name}
}

type collection struct {
	store.Collection
	d    *database
	name string
}

func (c *collection) count(op string) { c.d.c.command(c.d.component, c.name, op) }

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	c.count("insert")
	return c.Collection.InsertOne(ctx, doc)
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	c.count("insertMany")
	return c.Collection.InsertMany(ctx, docs)
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	c.count("findOne")
	return c.Collection.FindOne(ctx, filter)
}

func (c *collection) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	c.count("find")
	return c.Collection.Find(ctx, filter, opts)
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	c.count("count")
	return c.Collection.Count(ctx, filter)
}

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	c.count("countBy")
	return c.Collection.CountBy(ctx, filter, paths...)
}

func (c *collection) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	c.count("countByTime")
	return c.Collection.CountByTime(ctx, filter, path, iv)
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	c.count("findOneAndUpdate")
	return c.Collection.FindOneAndUpdate(ctx, filter, update)
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	c.count("replace")
	return c.Collection.ReplaceOne(ctx, filter, doc, upsert)
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	c.count("update")
	return c.Collection.UpdateOne(ctx, filter, update, upsert)
}

func (c *collection) DeleteOne(ctx context.Context, filter any) (int64, error) {
	c.count("delete")
	return c.Collection.DeleteOne(ctx, filter)
}

func (c *collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	c.count("deleteMany")
	return c.Collection.DeleteMany(ctx, filter)
}

func (c *collection) EnsureIndexes(ctx context.Context, indexes []store.Index) error {
	c.count("createIndexes")
	return c.Collection.EnsureIndexes(ctx, indexes)
}

// Watch opens the stream with the part of the $match MongoDB runs before
// the lookup, counts each update it delivers as a lookup, and hands on
// only the changes that also pass the rest: what the whole $match would
// deliver.
func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	c.count("aggregate $changeStream")
	before, after, err := split(opts.Match)
	if err != nil {
		return nil, fmt.Errorf("counting round trips: %w", err)
	}
	post, err := newAfterLookup(after)
	if err != nil {
		return nil, fmt.Errorf("counting round trips: %w", err)
	}
	opts.Match = before
	cs, err := c.Collection.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &stream{ChangeStream: cs, c: c.d.c, after: post}, nil
}

type stream struct {
	store.ChangeStream
	c     *Counter
	after *afterLookup
}

// pass counts ch and says whether the whole $match delivers it.
func (s *stream) pass(ch store.Change) (bool, error) {
	ok, err := s.after.matches(ch)
	if err != nil {
		return false, fmt.Errorf("counting round trips: %w", err)
	}
	op := ""
	if ok {
		op = ch.Op
	}
	s.c.change(op, ch.Op == store.OpUpdate)
	return ok, nil
}

func (s *stream) Next(ctx context.Context) (store.Change, error) {
	for {
		ch, err := s.ChangeStream.Next(ctx)
		if err != nil {
			return ch, err
		}
		if ok, err := s.pass(ch); ok || err != nil {
			return ch, err
		}
	}
}

func (s *stream) TryNext(ctx context.Context) (store.Change, bool, error) {
	for {
		ch, ok, err := s.ChangeStream.TryNext(ctx)
		if !ok || err != nil {
			return ch, ok, err
		}
		if pass, err := s.pass(ch); pass || err != nil {
			return ch, pass, err
		}
	}
}
