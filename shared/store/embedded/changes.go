package embedded

import (
	"strings"

	"github.com/256dpi/lungo/bsonkit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
)

// mongoUpdate gives an update's oplog entry the update description MongoDB
// 5.0+ would give it, so that a change stream's $match on it answers as
// on MongoDB. lungo lists every path an update wrote as written: a $set of
// "retrigger.lease" on a document without retrigger is
// {"retrigger.lease": ...}. MongoDB lists the field it created instead,
// with everything in it: {"retrigger": {"lease": ...}}. lungo has no
// pre-image, so a subdocument counts as created when the update wrote
// every field it holds now and removed none of its fields; one that
// existed empty, or whose every field the update overwrote, reads as
// created too. Two differences stay: lungo lists a field set to the value
// it had (MongoDB leaves it out, and writes no change at all when nothing
// changed), and it orders the fields by name (MongoDB by how the update
// was applied). entry is returned as it is when nothing changes; it is
// never modified.
func mongoUpdate(entry bsonkit.Doc) bsonkit.Doc {
	desc, _ := bsonkit.Get(entry, "updateDescription").(bsonv1.D)
	updated, _ := bsonkit.Get(entry, "updateDescription.updatedFields").(bsonv1.D)
	post, _ := bsonkit.Get(entry, "fullDocument").(bsonv1.D)
	if desc == nil || post == nil || !dotted(updated) {
		return entry
	}
	var removed []string
	if list, ok := bsonkit.Get(entry, "updateDescription.removedFields").(bsonv1.A); ok {
		for _, r := range list {
			if s, ok := r.(string); ok {
				removed = append(removed, s)
			}
		}
	}
	w := written{updated: updated, removed: removed, post: post}
	out := make(bsonv1.D, 0, len(updated))
	var created []string
	changed := false
next:
	for _, e := range updated {
		for _, q := range created {
			if under(e.Key, q) {
				continue next // listed with the subdocument it is in
			}
		}
		q, ok := w.createdPrefix(e.Key)
		if !ok {
			out = append(out, e)
			continue
		}
		changed = true
		created = append(created, q)
		out = append(out, bsonv1.E{Key: q, Value: bsonkit.Get(&post, q)})
	}
	if !changed {
		return entry
	}
	newDesc := make(bsonv1.D, len(desc))
	for i, e := range desc {
		if e.Key == "updatedFields" {
			e.Value = out
		}
		newDesc[i] = e
	}
	newEntry := make(bsonv1.D, len(*entry))
	for i, e := range *entry {
		if e.Key == "updateDescription" {
			e.Value = newDesc
		}
		newEntry[i] = e
	}
	return &newEntry
}

func dotted(fields bsonv1.D) bool {
	for _, e := range fields {
		if strings.Contains(e.Key, ".") {
			return true
		}
	}
	return false
}

// under says whether path is prefix or a path inside it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+".")
}

// written is what one update wrote.
type written struct {
	updated bsonv1.D
	removed []string
	post    bsonv1.D
}

// createdPrefix returns the outermost subdocument on the way to path that
// the update created (see mongoUpdate).
func (w written) createdPrefix(path string) (string, bool) {
	for i := strings.IndexByte(path, '.'); i > 0; {
		if q := path[:i]; w.created(q) {
			return q, true
		}
		next := strings.IndexByte(path[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return "", false
}

// created says whether the subdocument at q holds only fields the update
// wrote, and lost none.
func (w written) created(q string) bool {
	doc, ok := bsonkit.Get(&w.post, q).(bsonv1.D)
	if !ok || len(doc) == 0 {
		return false
	}
	for _, r := range w.removed {
		if under(r, q) {
			return false
		}
	}
	for _, f := range doc {
		p := q + "." + f.Key
		whole, inside := false, false
		for _, u := range w.updated {
			switch {
			case u.Key == p:
				whole = true
			case strings.HasPrefix(u.Key, p+"."):
				inside = true
			}
		}
		if !whole && !(inside && w.created(p)) {
			return false
		}
	}
	return true
}
