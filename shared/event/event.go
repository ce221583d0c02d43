package event

import (
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// State is an event's position in its lifecycle. The numeric codes are those
// of the hand-built trigger approach, so data it wrote keeps its meaning.
type State int32

const (
	StateNew     State = 0 // inserted, not run yet
	StateSuccess State = 1 // the handler succeeded: terminal
	StateFailed  State = 2 // the handler failed; retried at nextAttemptAt
	StateError   State = 3 // retries exhausted or non-retryable; about to be archived
)

// String returns the state's name, as logs show it.
func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateSuccess:
		return "success"
	case StateFailed:
		return "failed"
	case StateError:
		return "error"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// NeedsWork reports whether an event in state s must still be handled by a
// consumer (new, failed) or the archiver (error).
func (s State) NeedsWork() bool { return s == StateNew || s == StateFailed || s == StateError }

// Field names of the event document.
const (
	FieldID            = "_id"
	FieldType          = "type"
	FieldPayload       = "payload"
	FieldState         = "state"
	FieldAttempts      = "attempts"
	FieldMaxAttempts   = "maxAttempts"
	FieldNextAttemptAt = "nextAttemptAt"
	FieldLastError     = "lastError"
	FieldVersion       = "version"
	FieldCreatedAt     = "createdAt"
	FieldUpdatedAt     = "updatedAt"
	FieldArchivedAt    = "archivedAt" // only in the errors collection
)

// LastError records why the last execution failed.
type LastError struct {
	Message   string    `bson:"message" json:"message"`
	Retryable bool      `bson:"retryable" json:"retryable"`
	At        time.Time `bson:"at" json:"at"`
}

// Event is an event document. Missing fields hold their defaults: state new,
// zero attempts, version 0, no per-event maximum.
type Event struct {
	ID            bson.RawValue
	Type          string
	Payload       bson.Raw // nil when the document has none
	State         State
	Attempts      int
	MaxAttempts   int // 0: the retry policy decides
	NextAttemptAt time.Time
	LastError     *LastError
	Version       int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// IDString renders an event id for logs and message ids: the hex of an
// ObjectID, a string as it is, anything else as relaxed extended JSON.
func IDString(id bson.RawValue) string {
	switch id.Type {
	case bson.TypeObjectID:
		return id.ObjectID().Hex()
	case bson.TypeString:
		return id.StringValue()
	case bson.TypeInt32:
		return strconv.FormatInt(int64(id.Int32()), 10)
	case bson.TypeInt64:
		return strconv.FormatInt(id.Int64(), 10)
	}
	return id.String()
}

// MsgID is the Nats-Msg-Id of the message derived from the event at this
// version: JetStream drops a republished change with the same id.
func (e *Event) MsgID() string { return MsgID(e.ID, e.Version) }

// MsgID builds the Nats-Msg-Id "<id>:<version>".
func MsgID(id bson.RawValue, version int64) string {
	return IDString(id) + ":" + strconv.FormatInt(version, 10)
}

// String identifies the event in logs and errors.
func (e *Event) String() string {
	return fmt.Sprintf("event %s (type %q, state %s, version %d)", IDString(e.ID), e.Type, e.State, e.Version)
}
