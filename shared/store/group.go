package store

import (
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// GroupCounter counts combinations of values the way CountBy groups them:
// numbers by value whatever their BSON type, as MongoDB's $group does,
// anything else by its BSON type and bytes. Backends that group on their
// own side use it. The zero value is ready to use.
type GroupCounter struct {
	groups []Group
	index  map[string]int
	key    []byte
}

// Add counts one document whose values at the paths are values (null for
// a missing field). It keeps values when they start a new group.
func (g *GroupCounter) Add(values []bson.RawValue) {
	g.key = g.key[:0]
	for _, v := range values {
		g.key = groupKey(g.key, v)
	}
	if i, ok := g.index[string(g.key)]; ok {
		g.groups[i].Count++
		return
	}
	if g.index == nil {
		g.index = map[string]int{}
	}
	g.index[string(g.key)] = len(g.groups)
	g.groups = append(g.groups, Group{Values: values, Count: 1})
}

// Groups returns the groups counted so far, in the order they were first
// seen.
func (g *GroupCounter) Groups() []Group { return g.groups }

// groupKey appends to key what identifies v in a group: numbers by their
// value, anything else by its BSON type and bytes.
func groupKey(key []byte, v bson.RawValue) []byte {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		if f, ok := v.AsFloat64OK(); ok {
			key = append(key, 'n')
			key = strconv.AppendFloat(key, f, 'g', -1, 64)
			return append(key, 0)
		}
	}
	key = append(key, byte(v.Type))
	key = strconv.AppendInt(key, int64(len(v.Value)), 10)
	key = append(key, ':')
	return append(key, v.Value...)
}
