// Package store is retrigger's storage port: the handful of MongoDB
// collection operations retrigger needs. Filters and update documents are
// MongoDB query documents (anything go.mongodb.org/mongo-driver/v2/bson can
// marshal), written once, in package eventstore, the one user of this port;
// every backend executes them with MongoDB semantics.
//
// Two backends implement the port: store/mongostore (the official driver,
// for replica sets, sharded clusters and Atlas) and store/embedded (an
// in-process MongoDB-compatible engine on lungo's matcher, in memory or
// durable on disk, for the local run and the tests).
// store/storetest holds the conformance suite both must pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sentinel errors that callers act on. Backends wrap them, so test with
// errors.Is.
var (
	// ErrNotFound: no document matched the filter (or the condition of a
	// conditional update did not hold).
	ErrNotFound = errors.New("store: document not found")
	// ErrDuplicate: an insert or upsert violated a unique index.
	ErrDuplicate = errors.New("store: duplicate key")
	// ErrHistoryLost: a change stream cannot resume from the given token
	// because the history (oplog) no longer holds it.
	ErrHistoryLost = errors.New("store: change stream history lost")
	// ErrNoTransactions: the deployment cannot run multi-document
	// transactions (a standalone server); the caller falls back to an
	// ordered sequence of idempotent writes.
	ErrNoTransactions = errors.New("store: transactions are not supported by this deployment")
	// ErrNoChangeStreams: the server cannot open a change stream at all (a
	// standalone mongod, or a server that does not implement
	// $changeStream). Trying again does not help.
	ErrNoChangeStreams = errors.New("store: the server does not support change streams")
)

// Database opens collections. It is safe for concurrent use.
type Database interface {
	// Collection returns a handle on the named collection; it does no I/O.
	Collection(name string) Collection
	// Transact runs fn in one multi-document transaction: the operations
	// fn makes with the context it is given commit together, with a
	// majority write concern, or not at all. An error from fn aborts it and
	// is returned. ErrNoTransactions: the deployment has none (fn did not
	// run).
	Transact(ctx context.Context, fn func(ctx context.Context) error) error
	// Close releases the connection or the engine. Safe to call twice.
	Close(ctx context.Context) error
}

// Collection is the set of operations retrigger performs on one collection.
// Every method is safe for concurrent use. Documents come back as raw BSON,
// valid until the caller drops them.
type Collection interface {
	// InsertOne inserts doc. A unique-index violation wraps ErrDuplicate.
	InsertOne(ctx context.Context, doc any) error
	// InsertMany inserts docs in order, stopping at the first error.
	InsertMany(ctx context.Context, docs []any) error
	// FindOne returns the first document matching filter, or ErrNotFound.
	FindOne(ctx context.Context, filter any) (bson.Raw, error)
	// Find returns the documents matching filter, in opts.Sort order, at
	// most opts.Limit of them (0: no limit).
	Find(ctx context.Context, filter any, opts FindOptions) ([]bson.Raw, error)
	// Count returns the number of documents matching filter.
	Count(ctx context.Context, filter any) (int64, error)
	// CountBy counts the documents matching filter per distinct
	// combination of the values at paths (dotted field paths), in no
	// particular order. A missing field counts as null; numbers group by
	// value, whatever their BSON type, as in MongoDB's $group.
	CountBy(ctx context.Context, filter any, paths ...string) ([]Group, error)
	// CountByTime counts the documents matching filter per interval of
	// the date at path: counts[i] is the number of those whose date falls
	// in iv's i-th interval. A document whose path holds no date, or a date
	// outside the intervals, is not counted. On MongoDB the range of the
	// intervals on path joins the filter, so that an index leading with the
	// filter's equalities and then path serves it.
	CountByTime(ctx context.Context, filter any, path string, iv Intervals) (counts []int64, err error)
	// FindOneAndUpdate applies update to the first document matching filter
	// and returns the document as it is after the update. When no document
	// matches it returns ErrNotFound: that is how a conditional update
	// reports that its condition did not hold.
	FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error)
	// ReplaceOne replaces the first document matching filter with doc,
	// keeping its _id, and reports how many matched (0 or 1). doc should
	// not hold an _id. With upsert, doc is inserted when none matches, with
	// the _id of the filter's equality on _id, and matched is still 0.
	ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (matched int64, err error)
	// UpdateOne applies update to the first document matching filter and
	// reports how many matched (0 or 1). With upsert, a document is
	// inserted when none matches, and matched is still 0.
	UpdateOne(ctx context.Context, filter, update any, upsert bool) (matched int64, err error)
	// DeleteOne deletes the first document matching filter and reports how
	// many were deleted (0 or 1).
	DeleteOne(ctx context.Context, filter any) (deleted int64, err error)
	// DeleteMany deletes every document matching filter.
	DeleteMany(ctx context.Context, filter any) (deleted int64, err error)
	// EnsureIndexes creates the indexes that do not exist yet. Repeating it
	// with the same indexes is a no-op.
	EnsureIndexes(ctx context.Context, indexes []Index) error
	// Watch opens a change stream on the collection. See WatchOptions.
	Watch(ctx context.Context, opts WatchOptions) (ChangeStream, error)
}

// FindOptions shape the result of Find.
type FindOptions struct {
	Sort  bson.D // e.g. bson.D{{Key: "updatedAt", Value: 1}}; nil: natural order
	Limit int64  // 0: no limit
}

// Group is one combination of values found by CountBy and the number of
// documents holding it.
type Group struct {
	Values []bson.RawValue // one per path, in order; null for a missing field
	Count  int64
}

// Intervals are N consecutive intervals of Step from From: the i-th is
// [From + i·Step, From + (i+1)·Step).
type Intervals struct {
	From time.Time
	Step time.Duration // at least a millisecond, the precision of a BSON date
	N    int
}

// End is the end of the last interval.
func (iv Intervals) End() time.Time { return iv.From.Add(time.Duration(iv.N) * iv.Step) }

// Index returns the interval t falls in, or false when it falls in none.
func (iv Intervals) Index(t time.Time) (int, bool) {
	if t.Before(iv.From) || !t.Before(iv.End()) {
		return 0, false
	}
	return int(t.Sub(iv.From) / iv.Step), true
}

// Validate reports intervals that cannot be counted.
func (iv Intervals) Validate() error {
	if iv.Step < time.Millisecond || iv.N <= 0 {
		return fmt.Errorf("intervals: a step of at least 1ms and at least one interval, got %d of %s", iv.N, iv.Step)
	}
	return nil
}

// Index describes one index.
type Index struct {
	Name   string
	Keys   bson.D // e.g. bson.D{{Key: "state", Value: 1}, {Key: "updatedAt", Value: 1}}
	Unique bool
	Sparse bool // only documents that have the indexed fields
}

// WatchOptions configure a change stream.
type WatchOptions struct {
	// Match is a $match stage applied to change events (fields such as
	// operationType and fullDocument.state). nil delivers every change.
	Match bson.D
	// ResumeAfter is a token from Change.Token: the stream delivers every
	// change after it, and nothing before. nil starts at the present. A token
	// that is no longer in the history makes Watch or Next return an error
	// wrapping ErrHistoryLost.
	ResumeAfter bson.Raw
}

// ChangeStream delivers changes in commit order. It is not safe for
// concurrent use: one goroutine reads it.
type ChangeStream interface {
	// Next blocks until the next change, ctx ends, or the stream fails. An
	// error wrapping ErrHistoryLost means the stream fell off the history.
	Next(ctx context.Context) (Change, error)
	// TryNext is Next that waits at most about a second (the server's
	// await time): false when no change came.
	TryNext(ctx context.Context) (Change, bool, error)
	// ResumeToken resumes the stream after everything it has read,
	// including the changes its $match filtered out: after TryNext found
	// nothing, a checkpoint of it keeps the history a restart needs short.
	ResumeToken() bson.Raw
	// Close ends the stream. Safe to call twice.
	Close(ctx context.Context) error
}

// Operation types of a change.
const (
	OpInsert  = "insert"
	OpUpdate  = "update"
	OpReplace = "replace"
	OpDelete  = "delete"
	// OpInvalidate ends a stream: its collection was dropped or renamed.
	OpInvalidate = "invalidate"
)

// Change is one change event.
type Change struct {
	Op  string        // OpInsert, OpUpdate, OpReplace, OpDelete, or another server operation type
	ID  bson.RawValue // documentKey._id
	Doc bson.Raw      // the full document after the change (nil for deletes)
	// ClusterTime is when the change was committed, in the server's clock:
	// unique per change within a replica set, and the same each time the
	// change is delivered again.
	ClusterTime bson.Timestamp
	// Token resumes a stream right after this change (WatchOptions.ResumeAfter).
	Token bson.Raw
}
