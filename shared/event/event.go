package event

import (
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// State is an event's position in its lifecycle. The numeric codes are those
// of the hand-built trigger approach, so data it wrote keeps its meaning.
// It is stored as a BSON int32.
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

// Runnable reports whether a consumer may run an event in state s.
func (s State) Runnable() bool { return s == StateNew || s == StateFailed }

// Field names of the event document. The counter of failed executions is
// named by Schema.AttemptsField (default FieldAttempts).
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

	// FieldTraceParent and FieldTraceState carry the application's W3C
	// trace context (https://www.w3.org/TR/trace-context/): the span that
	// inserted the event, as the strings of the traceparent and tracestate
	// HTTP headers. They sit at the top level under the names the W3C
	// headers and the CloudEvents distributed-tracing extension give them,
	// so that any client can write them as plain fields; retrigger only
	// reads them. Both are optional, and a malformed value never stops an
	// event (package tracing says what happens then).
	FieldTraceParent = "traceparent"
	FieldTraceState  = "tracestate"

	// FieldRetrigger is the one field retrigger reserves for its own
	// bookkeeping: a document holding the lease of a running attempt, the
	// count of runs that never finished, why an event was archived, and
	// when. Every name retrigger adds lives inside it, so it can never
	// collide with the application's fields.
	FieldRetrigger = "retrigger"
)

// Fields inside FieldRetrigger, as dotted paths from the document's root.
const (
	FieldLease       = FieldRetrigger + ".lease"      // {owner, token, until}: the attempt running now
	FieldLeaseToken  = FieldLease + ".token"          // int64, unique per claim
	FieldLeaseUntil  = FieldLease + ".until"          // date: the lease is void after it
	FieldCrashes     = FieldRetrigger + ".crashes"    // int64: claims in a row that never recorded an outcome
	FieldReason      = FieldRetrigger + ".reason"     // string: why the event is in the error state (a Reason)
	FieldArchivedAt  = FieldRetrigger + ".archivedAt" // date: when it was moved into errors
	FieldHistory     = FieldRetrigger + ".history"    // array: the last attempts (see Attempt)
	FieldRedrivenAt  = FieldRetrigger + ".redrivenAt" // date: when it was last moved back from errors
	FieldRedrives    = FieldRetrigger + ".redrives"   // int64: how often it was moved back from errors
	FieldParkedAt    = FieldRetrigger + ".parkedAt"   // date: it waits for its flow-control key, out of NATS, until woken
	FieldWokenAt     = FieldRetrigger + ".wokenAt"    // date: when its key last woke it (a new message for it)
	FieldKey         = FieldRetrigger + ".key"        // string: the normalised hash of its flow-control key
	FieldSeq         = FieldRetrigger + ".seq"        // int64: its place in its key's order (the insert's cluster time)
	fieldLeaseOwner  = "owner"
	fieldLeaseTokenK = "token"
	fieldLeaseUntilK = "until"
)

// Reason says why an event ended in the error state and in errors.
type Reason string

const (
	ReasonExhausted   Reason = "exhausted"   // every attempt failed
	ReasonPermanent   Reason = "permanent"   // the handler said not to retry
	ReasonRejected    Reason = "rejected"    // the document cannot be run (malformed, too large)
	ReasonCrashed     Reason = "crashed"     // its runs never finished: they crashed or hung their consumer
	ReasonCancelled   Reason = "cancelled"   // an operator cancelled it
	ReasonApplication Reason = "application" // the application set state 3 itself
)

// LastError records why the last execution failed.
type LastError struct {
	Message   string    `bson:"message" json:"message"`
	Retryable bool      `bson:"retryable" json:"retryable"`
	At        time.Time `bson:"at" json:"at"`
}

// Lease is the claim of a consumer on the event it runs. While it holds,
// no other consumer runs the event, and the sweeper leaves it alone.
type Lease struct {
	Owner string    // the replica running it
	Token int64     // unique per claim: the transition that ends the run pins it
	Until time.Time // the lease is void after this time (the owner crashed or hung)
}

// Event is an event document. Missing fields hold their defaults: state new,
// zero attempts, version 0, no per-event maximum.
type Event struct {
	ID            bson.RawValue
	Type          string
	Payload       bson.Raw // nil when the document has none
	State         State
	Attempts      int64
	MaxAttempts   int64 // 0: the retry policy decides
	NextAttemptAt time.Time
	LastError     *LastError
	Version       int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// TraceParent and TraceState are the application's trace context, as
	// given (FieldTraceParent, FieldTraceState): package tracing validates
	// them. TraceContextError says why a field could not be read (it is
	// not a string); the event runs all the same.
	TraceParent, TraceState string
	TraceContextError       string

	// retrigger's bookkeeping (FieldRetrigger)
	Lease   *Lease    // nil: not running
	Crashes int64     // claims in a row whose run never recorded an outcome
	Reason  Reason    // set with StateError
	History []Attempt // the last attempts, oldest first
	// Set on an archived event, and kept when it is redriven (it pins the
	// redriven copy to the archive it came from).
	ArchivedAt time.Time
	RedrivenAt time.Time // when it was last moved back from errors
	Redrives   int64     // how often it was moved back from errors
	// Flow control of keyed types (package flow): the event waits for its
	// key since ParkedAt (zero: it does not); Key is the hash of its key's
	// value and Seq its place in the key's order, both set by its first
	// claim.
	ParkedAt time.Time
	WokenAt  time.Time
	Key      string
	Seq      int64
}

// Attempt is one entry of an event's history: an execution of its handler
// (outcome success, failed or error), a run that never finished (crashed),
// or an operator's or the archiver's action (archived, redriven, retried,
// cancelled). Fields that do not apply are zero.
type Attempt struct {
	At      time.Time     // when it started
	Took    time.Duration // how long the handler ran (stored in milliseconds)
	Outcome string
	Error   string // the handler's error, truncated
	Replica string // the consumer replica that ran it
	Number  int64  // 1 for the first execution
	// TraceID and SpanID name the span of the run or action in lower-case
	// hex (32 and 16 digits), when it was traced and sampled: the span
	// links of later runs point at it. "" otherwise.
	TraceID string
	SpanID  string
}

// History field names of an Attempt inside FieldHistory.
const (
	HistoryAt      = "at"
	HistoryTookMs  = "tookMs"
	HistoryOutcome = "outcome"
	HistoryError   = "error"
	HistoryReplica = "replica"
	HistoryNumber  = "attempt"
	HistoryTraceID = "traceId"
	HistorySpanID  = "spanId"
)

// Due reports whether the event may run at now. A failed event is due at
// its nextAttemptAt, or at once when it has none (a hand-built document).
// A new event is due at once, unless it never ran (version 0) and was
// inserted with a nextAttemptAt in the future: a delayed first run. A
// failed event that the application reset to new (its version is past 0)
// runs at once, whatever its old nextAttemptAt says.
func (e *Event) Due(now time.Time) bool {
	if e.NextAttemptAt.IsZero() || !e.NextAttemptAt.After(now) {
		return true
	}
	return e.State == StateNew && e.Version > 0
}

// Leased reports whether a lease holds the event at now.
func (e *Event) Leased(now time.Time) bool { return e.Lease != nil && e.Lease.Until.After(now) }

// String identifies the event in logs and errors.
func (e *Event) String() string {
	return fmt.Sprintf("event %s (type %q, state %s, version %d)", IDString(e.ID), e.Type, e.State, e.Version)
}
