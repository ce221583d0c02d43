// Package event defines the event document that flows through retrigger:
// its fields, its states (0 new, 1 success, 2 failed, 3 error), the defaults
// of a document inserted with only a type and a payload, and the validation
// that turns a malformed document into a precise, recorded reason instead of
// a crash. It also holds the query documents that select and transition
// events, written once here and executed by every storage backend.
package event
