// Package handlers holds retrigger's built-in handlers, ready to register in
// a consumer.Config by event type.
//
// HTTP delivers each event as a JSON POST to a webhook and turns the
// response into the retry decision: a 2xx is a success; 408, 429 and 5xx
// responses, timeouts and connection errors are retried with the type's
// backoff, or after the response's Retry-After; any other status is
// permanent, and the event goes straight to errors. Demo sleeps and fails
// at random, to watch the retry machinery work without a real endpoint.
//
// A handler's error message becomes the event's lastError.message, so the
// messages name what failed and, for HTTP, the status and the start of the
// response body, with credentials in the URL redacted.
package handlers
