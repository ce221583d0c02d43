// Package event defines the event document that flows through retrigger:
// its fields, its states (0 new, 1 success, 2 failed, 3 error), the
// bookkeeping retrigger keeps in its one reserved field, the keys and
// encodings of its _id (any BSON type), and Schema.Parse, the one decoder
// that turns a document into an Event, or a malformed one into a precise,
// recorded reason instead of a crash. The queries on event documents live
// in package eventstore.
package event
