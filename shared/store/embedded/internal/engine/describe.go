package engine

import (
	"sort"
	"strings"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	"go.mongodb.org/mongo-driver/bson"
)

// describe is the update description MongoDB 5.0+ writes in the change
// event of an update that turned before into after: updatedFields names
// each path the update set to a new value, with that value; a path whose
// subdocument the update created is named by the outermost field it
// created, with all of it ({"retrigger": {"lease": ...}} for a $set of
// retrigger.lease on a document without retrigger); a field set to the
// value it had (the same BSON type and value) is left out. removedFields
// names each path it removed. lungo's updater reports the paths as the
// update named them (changes), and this rewrites them with the document
// before. Fields are in name order (MongoDB lists them in the order its
// update applied them), which a change stream's $match on
// updateDescription must not rely on beyond the first field of a
// one-field update.
func describe(before, after bsonkit.Doc, changes *mongokit.Changes) bson.D {
	updated, removed := bson.D{}, bson.A{}
	var created []string
next:
	for _, path := range sortedKeys(changes.Changed) {
		v := changes.Changed[path]
		if v == bsonkit.Missing {
			removed = append(removed, path)
			continue
		}
		for _, q := range created {
			if strings.HasPrefix(path, q+".") {
				continue next // listed with the subdocument it is in
			}
		}
		if q, ok := createdAt(before, path); ok {
			created = append(created, q)
			updated = append(updated, bson.E{Key: q, Value: bsonkit.Get(after, q)})
			continue
		}
		if old := bsonkit.Get(before, path); old != bsonkit.Missing && sameValue(old, v) {
			continue // a no-op
		}
		updated = append(updated, bson.E{Key: path, Value: v})
	}
	return bson.D{
		{Key: "updatedFields", Value: updated},
		{Key: "removedFields", Value: removed},
		{Key: "truncatedArrays", Value: bson.A{}},
	}
}

// createdAt returns the outermost proper prefix of path that before does
// not hold: the field the update created on its way to path.
func createdAt(before bsonkit.Doc, path string) (string, bool) {
	for i := strings.IndexByte(path, '.'); i > 0; {
		if bsonkit.Get(before, path[:i]) == bsonkit.Missing {
			return path[:i], true
		}
		next := strings.IndexByte(path[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return "", false
}

// sameValue says whether a and b are the same BSON value: of one type, and
// equal (for documents and arrays, byte for byte).
func sameValue(a, b any) bool {
	class, ta := bsonkit.Inspect(a)
	_, tb := bsonkit.Inspect(b)
	if ta != tb || bsonkit.Compare(a, b) != 0 {
		return false
	}
	switch class {
	case bsonkit.Document, bsonkit.Array:
		x, err1 := bson.Marshal(bson.D{{Key: "v", Value: a}})
		y, err2 := bson.Marshal(bson.D{{Key: "v", Value: b}})
		return err1 == nil && err2 == nil && string(x) == string(y)
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
