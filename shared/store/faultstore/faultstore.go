package faultstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// Fault is what happens to one operation.
type Fault int

const (
	// None: the operation runs and answers as the engine does.
	None Fault = iota
	// LostAnswer: the operation is executed (applied, if its condition
	// holds), then the caller is answered with a timeout at once, as when
	// the server's reply was lost.
	LostAnswer
	// LateAnswer: the operation is executed, and the answer is held until
	// the caller's context ends (its deadline: the caller's store
	// timeout), which is then the caller's error. A server that applied
	// the write and answered too late.
	LateAnswer
	// LateWrite: the operation waits until the caller's context ends,
	// is executed, and the caller is answered with its context's error:
	// a slow server that applies a write the client already gave up on,
	// before the client's next request (as a server working through its
	// requests in order does).
	LateWrite
	// Refused: nothing is applied and the caller is answered with a
	// timeout at once: a request that never reached the server.
	Refused
)

var faultNames = [...]string{"none", "lost answer", "late answer", "late write", "refused"}

func (f Fault) String() string {
	if int(f) >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// ErrInjected marks every error the wrapper made up; such an error also
// wraps context.DeadlineExceeded, as a client timeout does.
var ErrInjected = errors.New("faultstore: injected fault")

// Op is one operation a Policy decides on.
type Op struct {
	Collection string
	// Method is the store.Collection method: "InsertOne", "InsertMany",
	// "FindOne", "Find", "Count", "CountBy", "CountByTime", "FindOneAndUpdate",
	// "ReplaceOne", "UpdateOne", "DeleteOne" or "DeleteMany"; or
	// "Transact" for a whole transaction (Collection empty).
	Method string
}

// Write reports whether the operation may change data.
func (o Op) Write() bool {
	switch o.Method {
	case "FindOne", "Find", "Count", "CountBy", "CountByTime":
		return false
	}
	return true
}

// Policy decides the fault of each operation. It is called concurrently.
type Policy func(Op) Fault

// Random returns a policy that gives each operation for which match
// reports true one of faults with probability p, drawn from a generator
// seeded with seed, and no fault to the others.
func Random(seed uint64, p float64, match func(Op) bool, faults ...Fault) Policy {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(op Op) Fault {
		if len(faults) == 0 || !match(op) {
			return None
		}
		mu.Lock()
		defer mu.Unlock()
		if r.Float64() >= p {
			return None
		}
		return faults[r.IntN(len(faults))]
	}
}

// Methods matches operations on collection (any collection when empty)
// by one of methods.
func Methods(collection string, methods ...string) func(Op) bool {
	return func(op Op) bool {
		if collection != "" && op.Collection != collection {
			return false
		}
		for _, m := range methods {
			if op.Method == m {
				return true
			}
		}
		return false
	}
}

// DB is a store.Database whose collections inject the faults its policy
// decides. A transaction takes its fault as a whole (Op.Method
// "Transact"): the operations inside it run as the engine runs them, so
// that a fault never holds a transaction open (which on the embedded
// engine would hold every other write). Watch and Close pass through.
type DB struct {
	store.Database
	policy Policy

	injected [len(faultNames)]atomic.Int64
}

// Wrap returns db with policy's faults.
func Wrap(db store.Database, policy Policy) *DB {
	return &DB{Database: db, policy: policy}
}

// Injected is how many operations got fault f so far.
func (d *DB) Injected(f Fault) int64 {
	if int(f) < 0 || int(f) >= len(d.injected) {
		return 0
	}
	return d.injected[f].Load()
}

// inTransaction marks the context of the operations of a transaction.
type inTransaction struct{}

// Transact runs fn in a transaction of the engine, under the fault the
// policy decides for Op{Method: "Transact"}.
func (d *DB) Transact(ctx context.Context, fn func(ctx context.Context) error) error {
	c := &collection{db: d}
	_, err := do(ctx, c, "Transact", func(ctx context.Context) (none, error) {
		return none{}, d.Database.Transact(context.WithValue(ctx, inTransaction{}, true), fn)
	})
	return err
}

// Collection returns the named collection with faults.
func (d *DB) Collection(name string) store.Collection {
	return &collection{c: d.Database.Collection(name), db: d, name: name}
}

type collection struct {
	c    store.Collection
	db   *DB
	name string
}

// do runs one operation under the policy's fault. run executes it on the
// engine with the context it is given.
func do[T any](ctx context.Context, c *collection, method string, run func(context.Context) (T, error)) (T, error) {
	if ctx.Value(inTransaction{}) != nil {
		return run(ctx) // the transaction takes the fault as a whole
	}
	op := Op{Collection: c.name, Method: method}
	f := c.db.policy(op)
	if _, ok := ctx.Deadline(); !ok && (f == LateAnswer || f == LateWrite) {
		f = LostAnswer // without a deadline, "late" would be never
	}
	if !op.Write() && f != None {
		f = Refused // a read applies nothing: all its faults are a timeout
	}
	c.db.injected[f].Add(1)
	var zero T
	switch f {
	case LostAnswer:
		_, _ = run(context.WithoutCancel(ctx))
		return zero, c.timeout(op, "executed, its answer lost")
	case LateAnswer:
		_, _ = run(context.WithoutCancel(ctx))
		<-ctx.Done()
		return zero, c.late(ctx, op, "executed, its answer held past the deadline")
	case LateWrite:
		<-ctx.Done()
		_, _ = run(context.WithoutCancel(ctx))
		return zero, c.late(ctx, op, "executed after the deadline")
	case Refused:
		return zero, c.timeout(op, "never reached the engine")
	}
	return run(ctx)
}

func (c *collection) timeout(op Op, what string) error {
	return fmt.Errorf("%w: %s on %s %s: %w", ErrInjected, op.Method, op.Collection, what, context.DeadlineExceeded)
}

// late is the error of an operation held until ctx ended: ctx's own error,
// marked as injected.
func (c *collection) late(ctx context.Context, op Op, what string) error {
	return fmt.Errorf("%w: %s on %s %s: %w", ErrInjected, op.Method, op.Collection, what, ctx.Err())
}

type none struct{}

func (c *collection) InsertOne(ctx context.Context, doc any) error {
	_, err := do(ctx, c, "InsertOne", func(ctx context.Context) (none, error) { return none{}, c.c.InsertOne(ctx, doc) })
	return err
}

func (c *collection) InsertMany(ctx context.Context, docs []any) error {
	_, err := do(ctx, c, "InsertMany", func(ctx context.Context) (none, error) { return none{}, c.c.InsertMany(ctx, docs) })
	return err
}

func (c *collection) FindOne(ctx context.Context, filter any) (bson.Raw, error) {
	return do(ctx, c, "FindOne", func(ctx context.Context) (bson.Raw, error) { return c.c.FindOne(ctx, filter) })
}

func (c *collection) Find(ctx context.Context, filter any, opts store.FindOptions) ([]bson.Raw, error) {
	return do(ctx, c, "Find", func(ctx context.Context) ([]bson.Raw, error) { return c.c.Find(ctx, filter, opts) })
}

func (c *collection) Count(ctx context.Context, filter any) (int64, error) {
	return do(ctx, c, "Count", func(ctx context.Context) (int64, error) { return c.c.Count(ctx, filter) })
}

func (c *collection) CountBy(ctx context.Context, filter any, paths ...string) ([]store.Group, error) {
	return do(ctx, c, "CountBy", func(ctx context.Context) ([]store.Group, error) { return c.c.CountBy(ctx, filter, paths...) })
}

func (c *collection) CountByTime(ctx context.Context, filter any, path string, iv store.Intervals) ([]int64, error) {
	return do(ctx, c, "CountByTime", func(ctx context.Context) ([]int64, error) { return c.c.CountByTime(ctx, filter, path, iv) })
}

func (c *collection) FindOneAndUpdate(ctx context.Context, filter, update any) (bson.Raw, error) {
	return do(ctx, c, "FindOneAndUpdate", func(ctx context.Context) (bson.Raw, error) { return c.c.FindOneAndUpdate(ctx, filter, update) })
}

func (c *collection) ReplaceOne(ctx context.Context, filter, doc any, upsert bool) (int64, error) {
	return do(ctx, c, "ReplaceOne", func(ctx context.Context) (int64, error) { return c.c.ReplaceOne(ctx, filter, doc, upsert) })
}

func (c *collection) UpdateOne(ctx context.Context, filter, update any, upsert bool) (int64, error) {
	return do(ctx, c, "UpdateOne", func(ctx context.Context) (int64, error) { return c.c.UpdateOne(ctx, filter, update, upsert) })
}

func (c *collection) DeleteOne(ctx context.Context, filter any) (int64, error) {
	return do(ctx, c, "DeleteOne", func(ctx context.Context) (int64, error) { return c.c.DeleteOne(ctx, filter) })
}

func (c *collection) DeleteMany(ctx context.Context, filter any) (int64, error) {
	return do(ctx, c, "DeleteMany", func(ctx context.Context) (int64, error) { return c.c.DeleteMany(ctx, filter) })
}

func (c *collection) EnsureIndexes(ctx context.Context, indexes []store.Index) error {
	return c.c.EnsureIndexes(ctx, indexes)
}

func (c *collection) Watch(ctx context.Context, opts store.WatchOptions) (store.ChangeStream, error) {
	return c.c.Watch(ctx, opts)
}
