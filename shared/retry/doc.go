// Package retry decides what happens after a handler fails: when the event
// is tried again (exponential backoff with jitter, built on
// github.com/cenkalti/backoff/v4), or that its retries are exhausted. A
// handler steers the decision with the error it returns: Permanent(err) is
// never retried, After(d, err) is retried after d instead of the backoff.
package retry
