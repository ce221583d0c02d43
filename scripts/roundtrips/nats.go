package roundtrips

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// NATS is JetStream's own accounting of the streams and their consumers.
type NATS struct {
	// Stored is the number of messages each stream stored: its last
	// sequence, which deletions (a work queue's acks) do not lower, and
	// which a publish JetStream drops as a duplicate does not raise.
	Stored map[string]uint64
	// Delivered and Acked are per consumer ("stream/consumer"): messages
	// delivered (redeliveries included) and acknowledged (its ack floor).
	Delivered, Acked map[string]uint64
	// Pending are delivered messages not acknowledged yet, per consumer.
	Pending map[string]int
}

// ReadNATS reads the accounting of the named streams and of every
// consumer on them; a stream that does not exist reads as empty.
func ReadNATS(ctx context.Context, js jetstream.JetStream, streams ...string) (NATS, error) {
	out := NATS{Stored: map[string]uint64{}, Delivered: map[string]uint64{}, Acked: map[string]uint64{}, Pending: map[string]int{}}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("reading stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return out, fmt.Errorf("reading stream %s: %w", name, err)
		}
		out.Stored[name] = info.State.LastSeq
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			key := name + "/" + ci.Name
			out.Delivered[key] = ci.Delivered.Consumer
			out.Acked[key] = ci.AckFloor.Consumer
			out.Pending[key] = ci.NumAckPending
		}
		if err := consumers.Err(); err != nil {
			return out, fmt.Errorf("listing the consumers of %s: %w", name, err)
		}
	}
	return out, nil
}

// Since is what happened between then and n.
func (n NATS) Since(then NATS) NATSCounts {
	var out NATSCounts
	for k, v := range n.Stored {
		out.Stored += v - then.Stored[k]
	}
	for k, v := range n.Delivered {
		out.Delivered += v - then.Delivered[k]
	}
	for k, v := range n.Acked {
		out.Acked += v - then.Acked[k]
	}
	for _, v := range n.Pending {
		out.Pending += v
	}
	return out
}

// NATSCounts are the NATS round trips between two readings, summed over
// the streams and consumers.
type NATSCounts struct {
	Stored    uint64 // messages published and stored
	Delivered uint64 // deliveries to consumers
	Acked     uint64 // acknowledgements
	Pending   int    // delivered, not acknowledged yet, at the second reading
}
