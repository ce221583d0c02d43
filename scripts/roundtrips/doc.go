// Package roundtrips counts what one event costs in round trips, as it
// would on MongoDB and NATS: the commands each component sends to the
// database, the change events the producer's relay reads, the documents
// MongoDB would read for them (fullDocument: updateLookup), and the NATS
// publishes, deliveries and acks. TestCostPerEvent (scripts/pipeline) and
// the load generator's -cost table (scripts/loadtest) stand on it.
//
// The counter wraps the storage each component uses (Counter.Store) and
// reads JetStream's own accounting of the streams and consumers (ReadNATS).
// Nothing is estimated, except the lookups: the embedded engine has no
// updateLookup (its change events carry the document), so the counter
// applies the change stream's $match the way MongoDB's optimizer does. The
// top-level conjuncts that do not read fullDocument run before the lookup
// ($_internalChangeStreamAddPostImage swaps with a $match on the fields it
// does not modify), the others after it; every update that passes the
// first ones is a lookup.
package roundtrips
