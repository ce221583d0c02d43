package messaging

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS errors retrigger acts on, classified in this one place.

// IsMessageError reports whether a publish failed because of the message
// itself, so publishing it again can never succeed: it is larger than the
// server's max_payload (the client refuses it) or the stream's limit (the
// stream refuses it), or its subject or headers are malformed. The
// publisher falls back to a smaller message, or records the event in
// MongoDB, instead of retrying: one such event must never block others.
func IsMessageError(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) ||
		errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) ||
		errors.Is(err, nats.ErrBadSubject) ||
		errors.Is(err, nats.ErrBadHeaderMsg)
}

// IsStreamMissing reports whether a publish or a lookup failed because the
// stream does not exist (it was deleted or lost at run time): nothing
// answers on its subjects. The caller ensures the streams again. A NATS
// server that is down reports the same for a publish until the client
// notices the disconnect, so ensuring first, then retrying with backoff,
// fits both.
func IsStreamMissing(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, nats.ErrNoResponders)
}

// IsConsumerMissing reports whether a consumer was deleted under a replica.
func IsConsumerMissing(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted)
}
