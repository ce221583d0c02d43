package retry

import (
	"errors"
	"time"
)

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the event goes straight to the
// error state and is archived. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type afterError struct {
	err      error
	delay    time.Duration
	typeWide bool // Throttle: the whole type waits, not only the event
}

func (e *afterError) Error() string { return e.err.Error() }
func (e *afterError) Unwrap() error { return e.err }

// After marks err as retryable after delay, which replaces the policy's
// backoff for this attempt (an HTTP Retry-After, a rate limit's reset). The
// attempt still counts. After(d, nil) is nil.
func After(delay time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &afterError{err: err, delay: delay}
}

// RetryAfter returns the delay of an error made by After or Throttle.
func RetryAfter(err error) (time.Duration, bool) {
	var a *afterError
	if errors.As(err, &a) {
		return a.delay, true
	}
	return 0, false
}

// Throttle marks err as the answer of a partner that asked every caller
// to come back after delay (an HTTP 429 or 503 with Retry-After): the
// event is retried after delay, as with After, and its whole type pauses
// for that long, across all replicas. The attempt counts.
// Throttle(d, nil) is nil.
func Throttle(delay time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &afterError{err: err, delay: delay, typeWide: true}
}

// Throttled returns the delay of an error made by Throttle: how long its
// type pauses.
func Throttled(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false // and no allocation for errors.As's target
	}
	var a *afterError
	if errors.As(err, &a) && a.typeWide {
		return a.delay, true
	}
	return 0, false
}

type faultError struct {
	err        error
	downstream bool
}

func (e *faultError) Error() string { return e.err.Error() }
func (e *faultError) Unwrap() error { return e.err }

// Unavailable marks err as the failure of the system a handler calls (a
// partner down, overloaded, timing out), not of the event: it is retried
// with backoff, and counts toward its type's breaker, as a plain error
// does. Use it to say so explicitly, e.g. around an error that wraps one
// marked EventFault. Unavailable(nil) is nil.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return &faultError{err: err, downstream: true}
}

// EventFault marks err as the event's own failure (its payload is wrong
// for now, a record it needs is missing), not its downstream's: it is
// retried with backoff like any failure, but never counts toward its
// type's breaker, however many such failures come at once. EventFault(nil)
// is nil.
func EventFault(err error) error {
	if err == nil {
		return nil
	}
	return &faultError{err: err}
}

// CountsTowardBreaker reports whether a handler's error says that the
// system it calls failed: every retryable failure does (a plain error, a
// timeout, an http handler's connection error, 5xx, 408 or 429), unless it
// is marked Permanent or EventFault. The outermost mark decides.
func CountsTowardBreaker(err error) bool {
	if err == nil {
		return false
	}
	for e := err; e != nil; {
		switch x := e.(type) {
		case *faultError:
			return x.downstream
		case *permanentError:
			return false
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if !CountsTowardBreaker(inner) {
					return false
				}
			}
			return true
		default:
			e = nil
		}
	}
	return true
}
