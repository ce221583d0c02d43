package messaging

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS errors retrigger acts on, classified in this one place.

// MaxHeaderBytes is the most a message's headers may take, encoded as
// NATS sends them ("NATS/1.0" and a "Key: value" line each): JetStream
// refuses larger headers (error 10097), whatever the server's
// max_payload. The client does not check it.
const MaxHeaderBytes = 65535

// Why NATS refuses a published message for what it is. A retry of the
// same message can never pass: the producer publishes a smaller body
// instead, or moves the event into errors naming the cause, so that one
// such event never blocks the events after it.
var (
	// ErrHeadersTooLarge: the headers are above MaxHeaderBytes (JetStream
	// error 10097, "header size exceeds maximum allowed of 64k"). For
	// retrigger that is an event id too large for the Retrigger-Id header.
	ErrHeadersTooLarge = errors.New("its message headers are larger than JetStream's limit of 65535 bytes")
	// ErrMessageTooLarge: headers and body are above the server's
	// max_payload (the client refuses it: nats.ErrMaxPayload) or the
	// stream's max_msg_size (JetStream error 10054).
	ErrMessageTooLarge = errors.New("its message is larger than NATS allows (the server's max_payload or the stream's max_msg_size)")
	// ErrMalformed: the subject or a header name is one NATS cannot carry
	// (the client refuses it: nats.ErrBadSubject, nats.ErrBadHeaderMsg).
	ErrMalformed = errors.New("its message has a subject or a header NATS cannot carry")
)

// jsHeaderExceedsMaximum matches JetStream's error 10097, which the
// client library does not name.
var jsHeaderExceedsMaximum = &jetstream.APIError{ErrorCode: 10097}

// Refusal classifies the error of a publish: when NATS refused the
// message for what it is, it returns an error wrapping err and one of
// ErrHeadersTooLarge, ErrMessageTooLarge and ErrMalformed, whose text
// says why; otherwise nil.
//
// Every refusal a publish of retrigger's can meet, and why it is or is
// not one of the message:
//
//   - nats.ErrMaxPayload (client) and JetStream 10054: too large, and
//     JetStream 10097: headers too large. The message's.
//   - nats.ErrBadSubject, nats.ErrBadHeaderMsg (client): malformed. The
//     message's; retrigger's subjects come from validated types
//     (event.ValidateType, which also keeps them under the server's
//     max_control_line), so this is a guard.
//   - A duplicate (the same Nats-Msg-Id inside the duplicate window) is
//     not refused: JetStream acknowledges it with PubAck.Duplicate, and
//     the message counts as published. JetStream 10158 (the same id in
//     process on a clustered stream) passes on a retry, which gets that
//     acknowledgement.
//   - No responders, stream not found: the stream is missing
//     (IsStreamMissing). Timeouts, a lost connection, the server's
//     storage or limits failing (10077: the stream is full with discard
//     new, a disk error; insufficient resources, account limits), a
//     sealed stream, headers not supported: of the server or the stream,
//     not the message. They pass once the server or an operator fixes
//     them, and the publish is retried.
//   - Expected last sequence or message id, per-message TTL, counters
//     and schedules: retrigger sets none of their headers.
func Refusal(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jsHeaderExceedsMaximum):
		return fmt.Errorf("%w (%w)", ErrHeadersTooLarge, err)
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return fmt.Errorf("%w (%w)", ErrMessageTooLarge, err)
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrBadHeaderMsg):
		return fmt.Errorf("%w (%w)", ErrMalformed, err)
	}
	return nil
}

// HeaderBytes is the size of msg's headers as NATS encodes them, which
// MaxHeaderBytes bounds.
func HeaderBytes(msg *nats.Msg) int {
	return msg.Size() - len(msg.Subject) - len(msg.Reply) - len(msg.Data)
}

// CheckSize says, before it is sent, whether NATS would refuse msg for
// its size: its headers above MaxHeaderBytes, or headers and body above
// maxPayload. The error wraps ErrHeadersTooLarge or ErrMessageTooLarge.
func CheckSize(msg *nats.Msg, maxPayload int) error {
	return CheckSizes(HeaderBytes(msg), len(msg.Data), maxPayload)
}

// CheckSizes is CheckSize of a message whose headers take hdr bytes
// (HeaderBytes) and whose body takes body: a caller that knows its
// headers did not change since it measured them need not encode them
// again.
func CheckSizes(hdr, body, maxPayload int) error {
	switch {
	case hdr > MaxHeaderBytes:
		return fmt.Errorf("%w: they take %d bytes", ErrHeadersTooLarge, hdr)
	case hdr+body > maxPayload:
		return fmt.Errorf("%w: %d bytes of headers and %d of body, max_payload %d", ErrMessageTooLarge, hdr, body, maxPayload)
	}
	return nil
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
