package producer

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

// headerRoom is kept free of the server's max payload for headers.
const headerRoom = 1024

// route turns an event document into the message that moves it on, or nil
// when it needs no work (it succeeded). A malformed or oversized document is
// routed to the dead-letter stream with the reason in a header, so it still
// ends in the errors collection.
func (p *Producer) route(doc bson.Raw) (*nats.Msg, error) {
	ev, err := event.Parse(doc, p.cfg.MaxEventSize)
	if err != nil {
		if ev.ID.Type == 0 {
			return nil, fmt.Errorf("routing a document without _id: %w", err)
		}
		return p.reject(ev, err.Error())
	}
	var subject string
	switch ev.State {
	case event.StateNew, event.StateFailed:
		subject = p.cfg.Names.EventSubject(ev.Type)
	case event.StateError:
		subject = p.cfg.Names.DLQSubject(ev.Type)
	default:
		return nil, nil
	}
	body, err := messaging.Encode(doc)
	if err != nil {
		return p.reject(ev, err.Error())
	}
	if limit := p.maxPayload - headerRoom; len(body) > limit {
		return p.reject(ev, fmt.Sprintf("event is %d bytes as JSON, more than the %d bytes a NATS message can carry (server max_payload %d)", len(body), limit, p.maxPayload))
	}
	return messaging.NewMsg(subject, ev.MsgID(), body), nil
}

// reject routes a document that cannot be run to the dead-letter stream. The
// body is a stub with the id, version and type: the archiver reads the
// document itself from the events collection.
func (p *Producer) reject(ev event.Event, reason string) (*nats.Msg, error) {
	typ := ev.Type
	if typ == "" {
		typ = messaging.InvalidType
	}
	stub, err := bson.Marshal(bson.D{
		{Key: event.FieldID, Value: ev.ID},
		{Key: event.FieldType, Value: typ},
		{Key: event.FieldVersion, Value: ev.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the stub of a rejected event: %w", err)
	}
	body, err := messaging.Encode(stub)
	if err != nil {
		return nil, err
	}
	m := messaging.NewMsg(p.cfg.Names.DLQSubject(typ), event.IDString(ev.ID)+":rejected", body)
	m.Header.Set(messaging.HeaderReason, reason)
	p.log.Warn().Str("event_id", event.IDString(ev.ID)).Str("reason", reason).Msg("event document rejected; archiving it into errors")
	return m, nil
}
