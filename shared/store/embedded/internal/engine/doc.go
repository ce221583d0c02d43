// Package engine is the embedded storage engine's core: collections of BSON
// documents with MongoDB semantics, an oplog that change streams read (its
// entries shaped as MongoDB's change events, an update's description as
// MongoDB 5.0+ writes it: describe), and,
// for a file-backed engine, a journal and snapshots that make every
// acknowledged write survive a crash.
//
// It stands on lungo (github.com/256dpi/lungo): documents are lungo's
// bsonkit documents, and queries, updates, sorts and unique index keys are
// evaluated by lungo's mongokit, unchanged. What it replaces is lungo's
// engine layer (Engine, Transaction, Catalog and its file store), whose
// costs grew with the data: every write cloned the collection's document
// set and the whole oplog (each a map copy), the commit cloned the oplog
// again, a query by _id scanned the collection, and the file store rewrote
// and synced the whole catalog on every write, one write at a time.
//
// Here a collection is a copy-on-write B-tree of its documents in natural
// order and one of their _ids, so a committed state is published to readers
// as an immutable View at the cost of a few pointer copies, and a query with
// an _id equality looks its document up. Writers take turns applying their
// operations to the working state (microseconds each); every operation is
// atomic by itself (an undo log rolls back a partial one) and a Write of
// several is atomic as a whole.
//
// Durability (Options.Path set) is a journal of what each Write changed,
// group-committed: writes that arrive while one batch is written and synced
// join the next batch, one write and one fdatasync for all of them, and a
// Write returns only once its batch is on disk. With Options.SyncInterval a
// Write returns once its batch is written to the file (the operating
// system has it, and a crash of the process loses none of it), and the
// fdatasync comes within the interval: the next append that comes after
// it syncs, or a timer when writes stop; a new journal starts only over a
// synced one. The batch is appended by one
// of its writers (the first to find no append in progress, or the one the
// previous append hands it to), so a writer alone never waits for another
// goroutine to wake. The journal holds zeros ahead of its records, so that
// an append's fdatasync has no file size or block allocation to record. Readers see a state only
// once it is durable. A snapshot of the whole state is written in the
// background once the journal has grown past Options.SnapshotBytes, after
// which the journals it covers are removed; Close writes a last one. Open
// loads the snapshot and replays the journals after it, checking each
// record's chained CRC-32C: a torn or corrupt tail is cut off and reported
// in the Recovery, never replayed. Both files carry a versioned header; a
// data file in lungo v0.4.0's format (format 0: one BSON document, rewritten
// whole on every write) is migrated on open. A lock file keeps a second
// process off the same data.
package engine
