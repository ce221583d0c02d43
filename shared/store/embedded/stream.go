package embedded

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/bsonkit"
	"github.com/256dpi/lungo/mongokit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

var errStreamClosed = errors.New("change stream closed")

// Watch opens a change stream. It reads lungo's oplog directly instead of
// through lungo's Stream, which hands an event out only as a copy (a marshal
// and an unmarshal of the whole event, before Match could even run): about
// 7x the cost per delivered change. An oplog entry has the shape of a
// MongoDB change event (operationType, ns, documentKey, and fullDocument,
// the document after an insert, update or replace), so Match is evaluated on
// the entry as stored and only matching entries are converted. A resume
// token is the raw BSON of an entry's _id, {ts: Timestamp}. Like lungo's
// Stream, the stream keeps its position as the last entry it read and finds
// it in the oplog's index: once that entry is trimmed, the history is lost.
func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.handle[1], err)
	}
	s := &stream{db: c.db, handle: c.handle}
	if opts.Match != nil {
		match, err := toDoc(opts.Match)
		if err == nil {
			_, err = mongokit.Match(&bsonv1.D{}, match) // reject a malformed query now
		}
		if err != nil {
			return nil, fmt.Errorf("watching %s: parsing match: %w", c.handle[1], err)
		}
		s.match = match
	}
	if c.db.closed.Load() {
		return nil, fmt.Errorf("watching %s: %w", c.handle[1], lungo.ErrEngineClosed)
	}

	oplog := c.db.engine.Catalog().Namespaces[lungo.Oplog].Documents.List
	if opts.ResumeAfter == nil {
		// Start at the present. On an empty oplog last stays nil and the
		// stream reads from the oplog's start, like lungo's own streams.
		if len(oplog) > 0 {
			s.last = oplog[len(oplog)-1]
		}
		return s, nil
	}
	last, err := findToken(oplog, opts.ResumeAfter)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", c.handle[1], err)
	}
	s.last = last
	return s, nil
}

// findToken returns the oplog entry whose _id is token. The oplog is in
// timestamp order, so it is a binary search.
func findToken(oplog bsonkit.List, token bson.Raw) (bsonkit.Doc, error) {
	if err := token.Validate(); err != nil {
		return nil, fmt.Errorf("invalid resume token: %w", err)
	}
	t, i, ok := token.Lookup("ts").TimestampOK()
	if !ok {
		return nil, errors.New("invalid resume token: no ts timestamp")
	}
	want := primitive.Timestamp{T: t, I: i}
	k := sort.Search(len(oplog), func(k int) bool { return !entryTS(oplog[k]).Before(want) })
	if k == len(oplog) || !entryTS(oplog[k]).Equal(want) {
		return nil, fmt.Errorf("resuming after %s: %w", token, store.ErrHistoryLost)
	}
	return oplog[k], nil
}

func entryTS(entry bsonkit.Doc) primitive.Timestamp {
	ts, _ := bsonkit.Get(entry, "_id.ts").(primitive.Timestamp)
	return ts
}

type stream struct {
	db     *DB
	handle lungo.Handle
	match  bsonkit.Doc // nil: every change
	last   bsonkit.Doc // the oplog entry read last; nil: none yet
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
	if s.last == nil {
		return nil
	}
	b, err := bsonv1.Marshal(bsonkit.Get(s.last, "_id"))
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
		commit := s.db.commits.wait() // before reading the catalog: see commitSignal
		if s.db.closed.Load() {
			return store.Change{}, false, fmt.Errorf("reading change stream: %w", lungo.ErrEngineClosed)
		}

		oplog := s.db.engine.Catalog().Namespaces[lungo.Oplog].Documents
		next := 0
		if s.last != nil {
			i, ok := oplog.Index[s.last]
			if !ok { // trimmed from the history before we read past it
				return store.Change{}, false, fmt.Errorf("reading change stream: %w: %w", store.ErrHistoryLost, lungo.ErrLostOplogPosition)
			}
			next = i + 1
		}
		for _, entry := range oplog.List[next:] {
			s.last = entry
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
	if database != s.handle[0] || collect != s.handle[1] {
		return change, false, nil
	}
	if s.match != nil {
		matched := entry
		if change.Op == store.OpUpdate {
			matched = mongoUpdate(entry)
		}
		ok, err := mongokit.Match(matched, s.match)
		if err != nil || !ok {
			return change, false, err
		}
	}

	b, err := bsonv1.Marshal(token)
	if err != nil {
		return change, false, err
	}
	change.Token = bson.Raw(b)
	if ts, ok := bsonkit.Get(entry, "_id.ts").(primitive.Timestamp); ok {
		change.ClusterTime = bson.Timestamp{T: ts.T, I: ts.I}
	}
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
