// Package eventstore owns retrigger's collections: events, errors and the
// producer's checkpoints. Every filter and update document retrigger sends
// to MongoDB is written here, and nowhere else: claiming an event and its
// lease, the transition that ends a run, the scheduler's and the sweeper's
// queries, retention, archiving, checkpoints and the operator's actions.
// The producer, the consumer and the archiver call its methods.
//
// It holds the one concurrency rule of the pipeline: a consumer runs an
// event only under a lease it claimed with a conditional update, and the
// transition that records the run's outcome is conditional on that lease
// and on the version and state the event had when it was claimed. An
// application's edit, another consumer or an operator that changed the
// event in between makes the transition match nothing (ErrStale), so no
// outcome is ever recorded twice or over someone else's.
//
// Numbers are written and queried with one declared BSON type each: state
// as int32, version and the counters as int64. Documents written by other
// tools (doubles from mongosh, say) still match, as MongoDB compares
// numbers by value.
//
// It runs on the generic storage port (package store), so the same code
// runs on MongoDB and on the embedded engine; eventstoretest is the suite
// that checks, on each backend, the behaviours the pipeline relies on.
package eventstore
