// Package mongostore is the production storage backend: MongoDB through the
// official driver, go.mongodb.org/mongo-driver/v2, on replica sets, sharded
// clusters and Atlas. Filters and updates from the domain code go to the
// server unchanged; change streams run a server-side $match and ask for
// fullDocument: updateLookup, so an update event carries the document as it
// is when the server reads it (its state after that update or a later one).
//
// Driver errors are mapped to the port's sentinels in one place, classify,
// so callers test them with errors.Is. Its errors never carry the
// connection string's credentials (shared/redact).
package mongostore
