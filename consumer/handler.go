package consumer

import (
	"context"
	"time"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/retry"
)

// Event is the event a handler runs for.
type Event = event.Event

// Handler runs the function of one event type. It returns nil on success;
// an error to have the event retried with the type's backoff policy (and
// counted toward the type's breaker: most runs of a type failing at once
// is its partner's failure, not each event's); Permanent(err) to send it
// straight to errors; EventFault(err) for a retryable failure of the
// event itself, which the breaker does not count; After(d, err) to retry
// it after d; Throttle(d, err) to also pause its whole type for d. It must honour ctx, which ends at the handler timeout and on a
// hard stop. A panic is recovered and recorded as a failure.
type Handler func(ctx context.Context, ev *Event) error

// Permanent marks a handler error as not worth retrying.
func Permanent(err error) error { return retry.Permanent(err) }

// After marks a handler error as retryable after delay, instead of the
// policy's backoff.
func After(delay time.Duration, err error) error { return retry.After(delay, err) }

// Throttle marks a handler error as the partner's request that every
// caller wait delay (an HTTP 429 or 503 with Retry-After): the event is
// retried after delay, and its whole type pauses for that long, across
// all replicas.
func Throttle(delay time.Duration, err error) error { return retry.Throttle(delay, err) }

// Unavailable marks a handler error as the failure of the system the
// handler calls (down, overloaded): retried with backoff, and counted
// toward the type's breaker, as a plain error is. Use it to say so
// explicitly.
func Unavailable(err error) error { return retry.Unavailable(err) }

// EventFault marks a handler error as the event's own (its payload is
// wrong for now, a record it needs is missing): retried with backoff, but
// never counted toward the type's breaker, however many come at once.
func EventFault(err error) error { return retry.EventFault(err) }

// Transition reports one state change a worker or the archiver wrote, for
// observers such as the local run's summary and the load generator.
type Transition struct {
	ID       string
	Type     string
	From, To event.State
	Attempts int64         // failed executions after this transition
	Error    string        // the handler's error, for failures
	Took     time.Duration // the handler's run time
	At       time.Time
	Archived bool         // the archiver moved the event into errors
	Reason   event.Reason // why it is in the error state (errors and archives)
}
