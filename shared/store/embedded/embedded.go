package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded/internal/engine"
)

// Options configure the engine. The zero value is an in-memory engine with
// the defaults below.
type Options struct {
	// Path of the data file (a snapshot); beside it the journals
	// (Path.journal-NNNNNN) and the lock file (Path.lock); the directory is
	// created. Empty keeps everything in memory, lost on Close. A write
	// returns once it is in the journal (see SyncInterval); a data file
	// another process has open is refused, naming that process; one in
	// lungo v0.4.0's format (what this backend wrote before) is converted.
	Path string
	// SyncInterval: 0 (the default) returns a write once its journal
	// record is synced to disk (fdatasync), so it survives an operating
	// system crash or a power cut. Above 0, a write returns once the
	// operating system has its record, which a crash of this process
	// (kill -9) never loses, and the journal is synced at most this long
	// after: an operating system crash may lose the last interval's
	// writes, as with MongoDB's journal commit interval (100 ms) and NATS's
	// sync_interval (2 min). The local run uses 100 ms.
	SyncInterval time.Duration
	// Database is the database name. Default "retrigger".
	Database string

	// The history (oplog) that change streams read and resume from. An
	// entry is dropped once it is both beyond OplogMinSize entries and older
	// than OplogMinAge, and also beyond OplogMaxSize entries or older than
	// OplogMaxAge. Ages count in whole seconds: an entry from the current
	// second is never dropped, whatever the sizes. The defaults keep the
	// last 2000 changes, enough to resume a producer after a restart; the
	// sweeper recovers from a token that fell out. A write's cost does not
	// depend on the history's size.
	OplogMinSize int           // default 1000
	OplogMaxSize int           // default 2000
	OplogMinAge  time.Duration // default 1s
	OplogMaxAge  time.Duration // default 24h (at most 21 days)
}

// maxOplogAge bounds the history's age, as lungo did.
const maxOplogAge = 21 * 24 * time.Hour

func (o Options) withDefaults() Options {
	if o.Database == "" {
		o.Database = "retrigger"
	}
	if o.OplogMinSize == 0 {
		o.OplogMinSize = 1000
	}
	if o.OplogMaxSize == 0 {
		o.OplogMaxSize = 2000
	}
	if o.OplogMinAge == 0 {
		o.OplogMinAge = time.Second
	}
	if o.OplogMaxAge == 0 {
		o.OplogMaxAge = 24 * time.Hour
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.OplogMinSize < 0:
		return fmt.Errorf("OplogMinSize must not be negative, got %d", o.OplogMinSize)
	case o.OplogMaxSize < o.OplogMinSize:
		return fmt.Errorf("OplogMaxSize (%d) must not be below OplogMinSize (%d)", o.OplogMaxSize, o.OplogMinSize)
	case o.OplogMinAge < 0:
		return fmt.Errorf("OplogMinAge must not be negative, got %s", o.OplogMinAge)
	case o.OplogMaxAge < o.OplogMinAge:
		return fmt.Errorf("OplogMaxAge (%s) must not be below OplogMinAge (%s)", o.OplogMaxAge, o.OplogMinAge)
	case o.OplogMaxAge > maxOplogAge:
		return fmt.Errorf("OplogMaxAge must be at most %s, got %s", maxOplogAge, o.OplogMaxAge)
	case o.SyncInterval < 0:
		return fmt.Errorf("SyncInterval must not be negative, got %s", o.SyncInterval)
	}
	return nil
}

// Recovery is what Open found in the data file and its journals, and did
// with them: a new store, a conversion from an older format, the records
// replayed, and the torn or damaged journal tails it cut off. Its String is
// a sentence for a log.
type Recovery = engine.Recovery

// Dropped is a journal tail that Open cut off instead of replaying.
type Dropped = engine.Dropped

// ErrFormat: the data file is in a format this build does not read: newer,
// or not a data file. The error that wraps it names the file and the format.
var ErrFormat = engine.ErrFormat

// DB is an open engine. It implements store.Database.
type DB struct {
	engine   *engine.Engine
	database string
	recovery Recovery
}

var _ store.Database = (*DB)(nil)

// Open starts an engine, loading the data at opts.Path when there is some.
// A data file another process holds is refused with an error wrapping
// filelock.ErrLocked that names the process.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("opening embedded store: %w", err)
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("opening embedded store: %w", err)
	}
	e, rec, err := engine.Open(engine.Options{
		Path:         opts.Path,
		SyncInterval: opts.SyncInterval,
		OplogMinSize: opts.OplogMinSize,
		OplogMaxSize: opts.OplogMaxSize,
		OplogMinAge:  opts.OplogMinAge,
		OplogMaxAge:  opts.OplogMaxAge,
	})
	if err != nil {
		where := "in memory"
		if opts.Path != "" {
			where = opts.Path
		}
		return nil, fmt.Errorf("opening embedded store (%s): %w", where, err)
	}
	return &DB{engine: e, database: opts.Database, recovery: rec}, nil
}

// Recovery reports what Open found and did (for a file-backed engine).
func (d *DB) Recovery() Recovery { return d.recovery }

// Collection implements store.Database.
func (d *DB) Collection(name string) store.Collection {
	return &collection{db: d, ns: engine.NS{DB: d.database, Coll: name}}
}

// txnKey carries the transaction of Transact in a context; the DB is part
// of the key, so a transaction never leaks to another engine.
type txnKey struct{ db *DB }

func (d *DB) txnOf(ctx context.Context) *engine.Txn {
	txn, _ := ctx.Value(txnKey{d}).(*engine.Txn)
	return txn
}

// Transact implements store.Database: fn's operations run in one of the
// engine's writes, which commits when fn returns nil. Other writers wait
// meanwhile (the engine applies one write at a time), so fn must only use
// the store, with the context it is given.
func (d *DB) Transact(ctx context.Context, fn func(ctx context.Context) error) error {
	if d.txnOf(ctx) != nil {
		return fn(ctx) // already inside one
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("starting a transaction: %w", err)
	}
	var fnErr error
	err := d.engine.Write(func(txn *engine.Txn) error {
		fnErr = fn(context.WithValue(ctx, txnKey{d}, txn))
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("committing a transaction: %w", err)
	}
	return nil
}

// DropCollection drops a collection, as an operator (or a $out) would: its
// change streams see a "drop". Tests use it; retrigger never drops.
func (d *DB) DropCollection(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := d.engine.Write(func(txn *engine.Txn) error {
		return txn.Drop(engine.NS{DB: d.database, Coll: name})
	})
	if err != nil {
		return fmt.Errorf("dropping %s: %w", name, err)
	}
	return nil
}

// Close commits the writes in flight and stops the engine; a file-backed
// one writes a last snapshot, so that the next Open reads one file. Open
// change streams return an error from Next. Safe to call twice.
func (d *DB) Close(context.Context) error {
	return d.engine.Close()
}
