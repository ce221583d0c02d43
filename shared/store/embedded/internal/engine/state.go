package engine

import (
	"sort"
	"sync"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// state is the working state: what the writes so far made, durable or not.
// Only the writer holding Engine.mu touches it.
type state struct {
	colls map[NS]*coll
	// oplog shares its array with the views cut from it: the writer only
	// appends beyond every view's length and trims by reslicing, so a view's
	// entries never change.
	oplog []bsonkit.Doc
}

// View is a committed state: immutable, safe for any number of readers.
type View struct {
	colls map[NS]*coll
	oplog []bsonkit.Doc
	ts    primitive.Timestamp // the clock's last timestamp when it was cut
}

// Find returns the documents of ns matching query (nil: all), in sort order
// (nil: natural order), after skip of them, at most limit (0: all).
func (v *View) Find(ns NS, query, sort bsonkit.Doc, skip, limit int) (bsonkit.List, error) {
	c := v.colls[ns]
	if c == nil {
		return nil, nil
	}
	items, err := c.find(query, sort, skip, limit)
	return docsOf(items), err
}

// Oplog returns the history, oldest first, in timestamp order. The caller
// must not change it.
func (v *View) Oplog() []bsonkit.Doc { return v.oplog }

// Indexes returns the specs of ns's indexes, by name.
func (v *View) Indexes(ns NS) []IndexSpec {
	if c := v.colls[ns]; c != nil {
		return c.specs()
	}
	return nil
}

// Len returns the number of documents in ns.
func (v *View) Len(ns NS) int {
	if c := v.colls[ns]; c != nil {
		return c.docs.Len()
	}
	return 0
}

func (v *View) namespaces() []NS {
	out := make([]NS, 0, len(v.colls))
	for ns := range v.colls {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// EntryTS returns the timestamp of an oplog entry (its _id.ts).
func EntryTS(entry bsonkit.Doc) primitive.Timestamp {
	// The engine writes _id first, {ts} alone: read it in place (a
	// change stream reads it for every entry it passes).
	if d := *entry; len(d) > 0 && d[0].Key == "_id" {
		if id, ok := d[0].Value.(bson.D); ok && len(id) == 1 && id[0].Key == "ts" {
			if ts, ok := id[0].Value.(primitive.Timestamp); ok {
				return ts
			}
		}
	}
	ts, _ := bsonkit.Get(entry, "_id.ts").(primitive.Timestamp) // lungo's order
	return ts
}

// clock issues the oplog's timestamps: seconds and a counter, strictly
// increasing, also across restarts (it starts after the last one it finds).
type clock struct {
	mu   sync.Mutex
	last primitive.Timestamp
}

func (c *clock) next() primitive.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := uint32(time.Now().Unix())
	switch {
	case now > c.last.T:
		c.last = primitive.Timestamp{T: now, I: 1}
	case c.last.I == ^uint32(0):
		c.last = primitive.Timestamp{T: c.last.T + 1, I: 1}
	default:
		c.last.I++
	}
	return c.last
}

// observe makes the clock issue timestamps after ts.
func (c *clock) observe(ts primitive.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts.After(c.last) {
		c.last = ts
	}
}

// trim drops the oldest entries of the working oplog, as lungo does: an
// entry goes once it is both beyond minSize entries and older than minAge,
// and also beyond maxSize entries or older than maxAge. Ages count in whole
// seconds.
func (s *state) trim(o Options, now time.Time) {
	n := len(s.oplog)
	minIndex, maxIndex := n-o.OplogMinSize, n-o.OplogMaxSize
	if minIndex <= 0 {
		return
	}
	nowT := uint32(now.Unix())
	minTS := primitive.Timestamp{T: nowT - uint32(o.OplogMinAge/time.Second)}
	maxTS := primitive.Timestamp{T: nowT - uint32(o.OplogMaxAge/time.Second)}
	dropped := 0
	for i, e := range s.oplog {
		ts := EntryTS(e)
		willing := i < minIndex && (o.OplogMinAge == 0 || ts.Before(minTS))
		forced := i < maxIndex || ts.Before(maxTS)
		if !willing || !forced {
			break
		}
		dropped++
	}
	if dropped > 0 {
		// Not cleared: views cut earlier still read these entries. The
		// array drops them when an append outgrows it.
		s.oplog = s.oplog[dropped:]
	}
}
