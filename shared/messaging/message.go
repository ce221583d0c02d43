package messaging

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// Headers retrigger sets besides Nats-Msg-Id.
const (
	// HeaderReason carries why the producer sent an event straight to the
	// dead-letter stream (a malformed or oversized document).
	HeaderReason = "Retrigger-Reason"
)

// Encode renders an event document as the body of a message: relaxed
// extended JSON, readable in `nats stream view` and decodable without loss of
// BSON types.
func Encode(doc bson.Raw) ([]byte, error) {
	b, err := bson.MarshalExtJSON(doc, false, false)
	if err != nil {
		return nil, fmt.Errorf("encoding event as extended JSON: %w", err)
	}
	return b, nil
}

// Ref is what a consumer needs from a message to find its event: the id and
// the version and state the message was derived from.
type Ref struct {
	ID      bson.RawValue
	Version int64
	State   event.State
	// NextAttemptAt is when a failed event is due: a consumer hands back
	// an early message without reading the event.
	NextAttemptAt time.Time
}

// DecodeRef reads the event reference from a message body.
func DecodeRef(data []byte) (Ref, error) {
	var doc bson.Raw
	if err := bson.UnmarshalExtJSON(data, false, &doc); err != nil {
		return Ref{}, fmt.Errorf("decoding message body: %w", err)
	}
	var r Ref
	id, err := doc.LookupErr(event.FieldID)
	if err != nil {
		return Ref{}, fmt.Errorf("decoding message body: no _id")
	}
	r.ID = id
	if v, err := doc.LookupErr(event.FieldVersion); err == nil && v.Type != bson.TypeNull {
		n, ok := v.AsInt64OK()
		if !ok {
			return Ref{}, fmt.Errorf("decoding message body: version is %s", v.Type)
		}
		r.Version = n
	}
	if v, err := doc.LookupErr(event.FieldState); err == nil && v.Type != bson.TypeNull {
		n, ok := v.AsInt64OK()
		if !ok {
			return Ref{}, fmt.Errorf("decoding message body: state is %s", v.Type)
		}
		r.State = event.State(n)
	}
	if v, err := doc.LookupErr(event.FieldNextAttemptAt); err == nil {
		if ms, ok := v.DateTimeOK(); ok {
			r.NextAttemptAt = time.UnixMilli(ms)
		}
	}
	return r, nil
}

// NewMsg builds a message with its deduplication id.
func NewMsg(subject, msgID string, body []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	m.Header.Set(nats.MsgIdHdr, msgID)
	return m
}
