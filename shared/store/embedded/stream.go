package embedded

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded/internal/engine"
)

var errStreamClosed = errors.New("change stream closed")

// Watch opens a change stream on the engine's oplog. An oplog entry has
// the shape of a MongoDB change event (operationType, ns, documentKey, and
// fullDocument, the document after an insert, update or replace), so Match
// is evaluated on the entry as stored and only matching entries are
// converted. A resume token is the raw BSON of an entry's _id, {ts:
// Timestamp}. The stream keeps its position as the timestamp of the last
// entry it read and finds it in the oplog (in timestamp order) by a binary
// search: once that entry is trimmed, the history is lost. It reads only
// committed (for a file-backed engine: durable) writes.
func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.ns.Coll, err)
	}
	s := &stream{db: c.db, ns: c.ns}
	if opts.Match != nil {
		match, err := toDoc(opts.Match)
		if err == nil {
			_, err = mongokit.Match(&bsonv1.D{}, match) // reject a malformed query now
		}
		if err != nil {
			return nil, fmt.Errorf("watching %s: parsing match: %w", c.ns.Coll, err)
		}
		s.match = match
	}
	view, _, err := c.db.engine.Current()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.ns.Coll, err)
	}
	oplog := view.Oplog()
	if opts.ResumeAfter == nil {
		// Start at the present. On an empty oplog the stream reads from
		// the oplog's start.
		if len(oplog) > 0 {
			s.last, s.read, s.at = engine.EntryTS(oplog[len(oplog)-1]), true, len(oplog)-1
		}
		return s, nil
	}
	ts, err := tokenTS(opts.ResumeAfter)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.ns.Coll, err)
	}
	if _, ok := position(oplog, ts, -1); !ok {
		return nil, fmt.Errorf("watching %s: resuming after %s: %w", c.ns.Coll, opts.ResumeAfter, store.ErrHistoryLost)
	}
	s.last, s.read, s.at = ts, true, -1
	return s, nil
}

// tokenTS returns the timestamp of a resume token.
func tokenTS(token bson.Raw) (primitive.Timestamp, error) {
	if err := token.Validate(); err != nil {
		return primitive.Timestamp{}, fmt.Errorf("invalid resume token: %w", err)
	}
	t, i, ok := token.Lookup("ts").TimestampOK()
	if !ok {
		return primitive.Timestamp{}, errors.New("invalid resume token: no ts timestamp")
	}
	return primitive.Timestamp{T: t, I: i}, nil
}

// position returns the index of the oplog entry of timestamp ts. hint is
// where it was last: the oplog only grows at its end and loses entries at
// its start, so it is there unless entries were trimmed since.
func position(oplog []bsonkit.Doc, ts primitive.Timestamp, hint int) (int, bool) {
	if hint >= 0 && hint < len(oplog) && engine.EntryTS(oplog[hint]).Equal(ts) {
		return hint, true
	}
	k := sort.Search(len(oplog), func(k int) bool { return !engine.EntryTS(oplog[k]).Before(ts) })
	return k, k < len(oplog) && engine.EntryTS(oplog[k]).Equal(ts)
}

type stream struct {
	db     *DB
	ns     engine.NS
	match  bsonkit.Doc         // nil: every change
	last   primitive.Timestamp // of the oplog entry read last
	read   bool                // false: none read yet
	at     int                 // its index when it was read
	closed bool
}

func (s *stream) Next(ctx context.Context) (store.Change, error) {
	ch, _, err := s.next(ctx, nil)
	return ch, err
}

// awaitTime is how long TryNext waits for a change, as a server's getMore.
const awaitTime = time.Second

func (s *stream) TryNext(ctx context.Context) (store.Change, bool, error) {
	t := time.NewTimer(awaitTime)
	defer t.Stop()
	return s.next(ctx, t.C)
}

// ResumeToken is the token of the last oplog entry read, matching or not.
func (s *stream) ResumeToken() bson.Raw {
	if !s.read {
		return nil
	}
	b, err := bsonv1.Marshal(bsonv1.D{{Key: "ts", Value: s.last}})
	if err != nil {
		return nil
	}
	return b
}

// next returns the next change; with give, false once give fires first.
func (s *stream) next(ctx context.Context, give <-chan time.Time) (store.Change, bool, error) {
	for {
		if s.closed {
			return store.Change{}, false, fmt.Errorf("reading change stream: %w", errStreamClosed)
		}
		if err := ctx.Err(); err != nil {
			return store.Change{}, false, fmt.Errorf("reading change stream: %w", err)
		}
		view, commit, err := s.db.engine.Current()
		if err != nil {
			return store.Change{}, false, fmt.Errorf("reading change stream: %w", err)
		}
		oplog := view.Oplog()
		next := 0
		if s.read {
			i, ok := position(oplog, s.last, s.at)
			if !ok { // trimmed from the history before we read past it
				return store.Change{}, false, fmt.Errorf("reading change stream: %w: the entry of %v is no longer in the oplog", store.ErrHistoryLost, s.last)
			}
			next = i + 1
		}
		for i, entry := range oplog[next:] {
			s.last, s.read, s.at = engine.EntryTS(entry), true, next+i
			change, ok, err := s.convert(entry)
			if err != nil {
				return store.Change{}, false, fmt.Errorf("reading change stream: %w", err)
			}
			if ok {
				return change, true, nil
			}
		}

		select {
		case <-commit:
		case <-give:
			return store.Change{}, false, nil
		case <-ctx.Done():
			return store.Change{}, false, fmt.Errorf("reading change stream: %w", ctx.Err())
		}
	}
}

// convert returns the change of an oplog entry, and false when the entry
// belongs to another collection or does not match.
func (s *stream) convert(entry bsonkit.Doc) (store.Change, bool, error) {
	var (
		change            store.Change
		token, key, full  any
		hasKey            bool
		database, collect string
	)
	for _, field := range *entry {
		switch field.Key {
		case "_id":
			token = field.Value
		case "operationType":
			change.Op, _ = field.Value.(string)
		case "ns":
			ns, _ := field.Value.(bsonv1.D)
			for _, e := range ns {
				switch e.Key {
				case "db":
					database, _ = e.Value.(string)
				case "coll":
					collect, _ = e.Value.(string)
				}
			}
		case "documentKey":
			if k, ok := field.Value.(bsonv1.D); ok && len(k) > 0 {
				key, hasKey = k[0].Value, true
			}
		case "fullDocument":
			full = field.Value
		}
	}
	if database != s.ns.DB || collect != s.ns.Coll {
		return change, false, nil
	}
	if s.match != nil {
		ok, err := mongokit.Match(entry, s.match)
		if err != nil || !ok {
			return change, false, err
		}
	}

	b, err := bsonv1.Marshal(token)
	if err != nil {
		return change, false, err
	}
	change.Token = bson.Raw(b)
	ts := engine.EntryTS(entry)
	change.ClusterTime = bson.Timestamp{T: ts.T, I: ts.I}
	if full != nil {
		if b, err = bsonv1.Marshal(full); err != nil {
			return change, false, err
		}
		change.Doc = bson.Raw(b)
		change.ID = change.Doc.Lookup("_id")
	} else if hasKey {
		t, b, err := bsonv1.MarshalValue(key)
		if err != nil {
			return change, false, err
		}
		change.ID = bson.RawValue{Type: bson.Type(t), Value: b}
	}
	return change, true, nil
}

func (s *stream) Close(context.Context) error {
	s.closed = true
	return nil
}
