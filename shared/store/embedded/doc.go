// Package embedded is the storage backend that runs in-process: a
// MongoDB-compatible engine with an oplog, kept in memory or on disk. It is
// the default for the one-command local run and for the test suites, so the
// domain code's query documents execute with MongoDB semantics without a
// server.
//
// The engine (internal/engine) stands on lungo (github.com/256dpi/lungo
// v0.4.0), unmodified: documents are lungo's bsonkit documents, and queries,
// updates, sorts and unique index keys are evaluated by lungo's mongokit.
// What it does not use is lungo's engine layer (Engine, Transaction,
// Catalog, FileStore), whose costs grew with the data: every write cloned the
// collection's document set and the whole oplog (map copies, about 0.7 ms at
// 1,000 oplog entries), the commit cloned the oplog again, a query by _id
// scanned the collection, and the file store rewrote and synced the whole
// catalog on every write, one write at a time (33 events/s through the
// local run). In its place the engine keeps each collection in copy-on-write
// B-trees (by natural order and by _id), publishes each committed state to
// readers as an immutable view, and, on disk, group-commits a journal of
// what each write changed (one append and one fdatasync for all the writes
// that arrive while the previous one syncs) and writes a snapshot in the
// background now and then. A write returns once it is durable (with
// Options.SyncInterval, once the operating system has it, which a crash of
// the process never loses, synced within the interval); readers and
// change streams see only such writes. Open replays the journal after the
// snapshot, cuts off a torn or corrupt tail (checksummed records; reported
// in DB.Recovery), converts a data file of lungo v0.4.0's format, refuses a
// newer format naming its version, and refuses a data file another process
// holds, naming it.
//
// Why not a patch or a fork of lungo: the changes are all in lungo's engine
// layer (its transaction's copy per operation, its catalog's data
// structures, its store interface of whole catalogs), which would be a
// rewrite of most of lungo's engine.go, transaction.go, catalog.go and
// store.go; the parts with MongoDB's semantics (mongokit, bsonkit) need no
// change. So lungo stays an ordinary, unpatched dependency, and this package
// owns an engine layer of its own: about 2,200 lines of Go and 300 of
// comments, and 1,400 of tests. Maintenance: a lungo upgrade brings its
// matcher's and updater's fixes by itself; the few rules the engine
// re-implements from lungo's collection code (an upsert's document from the
// query's equalities, a replacement keeping its _id, nModified by BSON
// bytes, the oplog trimming rule) are to be checked against lungo's
// mongokit/collection.go and transaction.go at each upgrade. The storage
// port's and the event store's conformance suites run on both modes.
//
// Documents cross from the port (driver v2 bson) to the engine (driver v1
// bson) as raw BSON bytes: the format is the same in both driver
// generations.
//
// Change streams read the engine's oplog directly: an oplog entry has the
// shape of a MongoDB change event (an update's description as MongoDB 5.0+
// writes it), so WatchOptions.Match is evaluated with lungo's matcher on
// the entry as stored, and only the changes that match are converted.
package embedded
