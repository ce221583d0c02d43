package admin

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
)

// Stats is the state of a deployment at one moment.
type Stats struct {
	At     time.Time               `json:"at"`
	Events []eventstore.GroupCount `json:"events"` // by type and state
	Errors []eventstore.GroupCount `json:"errors"` // by type and reason
	// OldestDue is the runnable event that has waited longest; nil: none.
	OldestDue        *Due     `json:"oldestDue,omitempty"`
	ArchivedLastHour int64    `json:"archivedLastHour"`
	ArchivedLastDay  int64    `json:"archivedLastDay"`
	Streams          []Stream `json:"streams,omitempty"`
	// StreamsError says why the streams' figures are missing.
	StreamsError string `json:"streamsError,omitempty"`
	// Unserved are the event types with messages waiting and no consumer:
	// no replica has a handler for them.
	Unserved map[string]uint64 `json:"unserved,omitempty"`
	// Flow is each type's flow control: breaker, pause, limits, and the
	// events waiting behind them.
	Flow []FlowStatus `json:"flow,omitempty"`
}

// InState is the number of events in state (new, failed, success, error),
// of every type.
func (s *Stats) InState(state string) int64 {
	var n int64
	for _, g := range s.Events {
		if g.State == state {
			n += g.Count
		}
	}
	return n
}

// Due is the event that has waited longest to run.
type Due struct {
	ID     json.RawMessage `json:"id"`
	IDText string          `json:"idText"`
	Type   string          `json:"type"`
	State  string          `json:"state"`
	Since  time.Time       `json:"since"`
}

// Stream is the depth of a stream and the lag of its consumers.
type Stream struct {
	Name      string     `json:"name"`
	Messages  uint64     `json:"messages"`
	Bytes     uint64     `json:"bytes"`
	Consumers []Consumer `json:"consumers"`
}

// Consumer is the lag of a durable consumer: messages not delivered yet
// (Pending) and delivered but not acknowledged (AckPending).
type Consumer struct {
	Name        string `json:"name"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ackPending"`
	Redelivered int    `json:"redelivered"`
	Waiting     int    `json:"waiting"` // pull requests of replicas waiting for messages
}

// Stats counts the events by type and state and the archive by type and
// reason, finds the oldest due event, counts the archives of the last hour
// and day, and reads the streams' depth and their consumers' lag.
func (a *Admin) Stats(ctx context.Context) (*Stats, error) {
	now := a.now()
	s := &Stats{At: now}
	var err error
	if s.Events, err = a.store.CountByType(ctx, eventstore.InEvents); err != nil {
		return nil, err
	}
	if s.Errors, err = a.store.CountByType(ctx, eventstore.InErrors); err != nil {
		return nil, err
	}
	for _, g := range [][]eventstore.GroupCount{s.Events, s.Errors} {
		sort.Slice(g, func(i, j int) bool {
			if g[i].Type != g[j].Type {
				return g[i].Type < g[j].Type
			}
			return g[i].State+g[i].Reason < g[j].State+g[j].Reason
		})
	}
	due, err := a.store.OldestDue(ctx, now)
	if err != nil {
		return nil, err
	}
	if due != nil {
		s.OldestDue = &Due{ID: idJSON(due.ID), IDText: FormatID(due.ID), Type: due.Type, State: due.State.String(), Since: due.Since}
	}
	if s.ArchivedLastHour, s.ArchivedLastDay, err = a.store.ArchivedRecently(ctx, now); err != nil {
		return nil, err
	}
	if s.Flow, err = a.flow(ctx, s.Events); err != nil {
		return nil, err
	}
	if err := a.streams(ctx, s); err != nil {
		s.StreamsError = err.Error()
	}
	return s, nil
}

// streamTimeout bounds the reading of the streams, so that stats answer
// with the database's figures while NATS does not.
const streamTimeout = 5 * time.Second

func (a *Admin) streams(ctx context.Context, s *Stats) error {
	if a.js == nil {
		return errors.New("no NATS connection")
	}
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	for _, name := range []string{a.names.EventsStream(), a.names.DLQStream()} {
		st, err := a.js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		out := Stream{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes}
		lister := st.ListConsumers(ctx)
		for c := range lister.Info() {
			out.Consumers = append(out.Consumers, Consumer{Name: c.Name, Pending: c.NumPending, AckPending: c.NumAckPending,
				Redelivered: c.NumRedelivered, Waiting: c.NumWaiting})
		}
		if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			return err
		}
		sort.Slice(out.Consumers, func(i, j int) bool { return out.Consumers[i].Name < out.Consumers[j].Name })
		s.Streams = append(s.Streams, out)
	}
	unserved, err := messaging.Unserved(ctx, a.js, a.names)
	if err != nil {
		return err
	}
	if len(unserved) > 0 {
		s.Unserved = unserved
	}
	return nil
}
