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
// an error to have the event retried with the type's backoff policy;
// Permanent(err) to send it straight to errors; After(d, err) to retry it
// after d. It must honour ctx, which ends at the handler timeout and on a
// hard stop. A panic is recovered and recorded as a failure.
type Handler func(ctx context.Context, ev *Event) error

// Permanent marks a handler error as not worth retrying.
func Permanent(err error) error { return retry.Permanent(err) }

// After marks a handler error as retryable after delay, instead of the
// policy's backoff.
func After(delay time.Duration, err error) error { return retry.After(delay, err) }

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
