package admin

import (
	"context"
	"encoding/json"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Show is what ShowEvent found for an id: usually one event, in events or
// in errors; more when the text stands for ids of several types that all
// exist (a string "7" and an int 7), or an event is in both (a redrive
// interrupted half-way).
type Show struct {
	Query string  `json:"query"`
	Found []Shown `json:"found"`
}

// Shown is one event with its timeline.
type Shown struct {
	Item
	Payload  json.RawMessage `json:"payload,omitempty"` // relaxed extended JSON
	Timeline []Step          `json:"timeline"`
	// Dropped is how many attempts ran before the oldest one the bounded
	// history keeps.
	Dropped int64 `json:"dropped,omitempty"`
	// TraceParent is the application's trace context, as the event gives
	// it; TraceInvalid says why it cannot be used.
	TraceParent  string `json:"traceparent,omitempty"`
	TraceInvalid string `json:"traceInvalid,omitempty"`
}

// Step is one moment of an event's life.
type Step struct {
	At      time.Time `json:"at"`
	What    string    `json:"what"` // inserted, success, failed, error, crashed, archived, redriven, retried, cancelled, due
	Attempt int64     `json:"attempt,omitempty"`
	TookMs  int64     `json:"tookMs,omitempty"`
	Error   string    `json:"error,omitempty"`
	Replica string    `json:"replica,omitempty"` // the replica, or the operator, that acted
	// TraceID and SpanID name the step's span: the application's for the
	// insert, the run's or action's for the others, when traced.
	TraceID string `json:"traceId,omitempty"`
	SpanID  string `json:"spanId,omitempty"`
}

// Show finds the event with the id, in events and in errors, and tells
// its timeline: insert, each attempt kept in its history (time, duration,
// error, replica, trace), archives and redrives, and when it is due next.
// ErrNotFound: no event has the id.
func (a *Admin) Show(ctx context.Context, id string) (*Show, error) {
	ids, err := ParseID(id)
	if err != nil {
		return nil, invalid("%v", err)
	}
	events, archived, err := a.store.FindIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(events)+len(archived) == 0 {
		return nil, refuse(ErrNotFound, "no event with id %s in events or errors", id)
	}
	out := &Show{Query: id, Found: []Shown{}}
	for _, doc := range events {
		out.Found = append(out.Found, a.shown(eventstore.InEvents, doc))
	}
	for _, doc := range archived {
		out.Found = append(out.Found, a.shown(eventstore.InErrors, doc))
	}
	return out, nil
}

func (a *Admin) shown(w eventstore.Where, doc bson.Raw) Shown {
	ev, _ := a.store.Parse(doc)
	s := Shown{Item: a.item(w, doc)}
	if ev.Payload != nil {
		if b, err := bson.MarshalExtJSON(ev.Payload, false, false); err == nil {
			s.Payload = b
		}
	}
	inserted := ev.CreatedAt
	if inserted.IsZero() && ev.ID.Type == bson.TypeObjectID {
		inserted = ev.ID.ObjectID().Timestamp().UTC()
	}
	origin, invalid := tracing.Origin(&ev)
	s.TraceParent, s.TraceInvalid = ev.TraceParent, invalid
	if !inserted.IsZero() {
		st := Step{At: inserted, What: "inserted"}
		if origin.IsValid() {
			st.TraceID, st.SpanID = origin.TraceID().String(), origin.SpanID().String()
		}
		s.Timeline = append(s.Timeline, st)
	}
	var oldest int64
	for _, h := range ev.History {
		s.Timeline = append(s.Timeline, Step{At: h.At, What: h.Outcome, Attempt: h.Number, TookMs: h.Took.Milliseconds(), Error: h.Error, Replica: h.Replica, TraceID: h.TraceID, SpanID: h.SpanID})
		if h.Number > 0 && (oldest == 0 || h.Number < oldest) {
			oldest = h.Number
		}
	}
	if oldest > 1 {
		s.Dropped = oldest - 1
	}
	if w == eventstore.InEvents && ev.State == event.StateFailed && !ev.NextAttemptAt.IsZero() {
		s.Timeline = append(s.Timeline, Step{At: ev.NextAttemptAt, What: "due", Attempt: ev.Attempts + 1})
	}
	return s
}
