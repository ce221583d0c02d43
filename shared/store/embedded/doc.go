// Package embedded is the storage backend that runs in-process on lungo
// (github.com/256dpi/lungo), a MongoDB-compatible engine with an oplog, kept
// in memory or in a single file. It is the default for the one-command local
// run and for the test suites, so the domain code's query documents execute
// with MongoDB semantics without a server.
//
// Documents cross from the port (driver v2 bson) to lungo (driver v1 bson)
// as raw BSON bytes: the format is the same in both driver generations.
//
// Change streams are read straight from lungo's oplog rather than through
// lungo's Stream type: lungo rejects pipelines (it panics on one), so the
// backend applies WatchOptions.Match itself with lungo's matcher, on the
// oplog entry as stored (an update's description rewritten as MongoDB
// 5.0+ writes it: mongoUpdate), and converts only the changes that match. Every
// write commits a new copy of the collection and of the oplog, so its cost
// grows with both: keep the live set small and the history bounded (see
// Options), and never judge MongoDB's speed by this engine.
package embedded
