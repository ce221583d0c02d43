package loadtest

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retrigger/retrigger/scripts/roundtrips"
	"github.com/retrigger/retrigger/shared/messaging"
)

// RoundTrips are a load's round trips per terminal event (Options.RoundTrips),
// periodic work (sweeps, checkpoints, retention, leadership) included.
type RoundTrips struct {
	Events int `json:"events"`
	// Commands each component sent to the storage, by
	// "collection.operation", and their sum per component.
	Commands map[string]map[string]float64 `json:"commands"`
	Total    map[string]float64            `json:"commands_total"`
	// Changes are the change events the relay read; Lookups the documents
	// MongoDB would read for them (fullDocument: updateLookup).
	Changes float64 `json:"changes"`
	Lookups float64 `json:"lookups"`
	// NATS: messages stored in the streams, delivered to the workers and
	// the archiver, acknowledged.
	Stored    float64 `json:"nats_stored"`
	Delivered float64 `json:"nats_delivered"`
	Acked     float64 `json:"nats_acked"`
}

// tripCount counts one load's round trips; a nil one counts nothing.
type tripCount struct {
	counter *roundtrips.Counter
	js      jetstream.JetStream
	streams []string
	before  roundtrips.NATS
}

func newTripCount() *tripCount { return &tripCount{counter: roundtrips.New()} }

// start forgets the pipeline's start-up and reads NATS's accounting.
func (c *tripCount) start(ctx context.Context, t *target, names messaging.Names) error {
	if c == nil {
		return nil
	}
	js, err := jetstream.New(t.pipe.Conn)
	if err != nil {
		return fmt.Errorf("counting the round trips: %w", err)
	}
	if names == (messaging.Names{}) {
		names = messaging.DefaultNames()
	}
	c.js, c.streams = js, []string{names.EventsStream(), names.DLQStream()}
	c.counter.Take()
	c.before, err = roundtrips.ReadNATS(ctx, js, c.streams...)
	return err
}

// result is what was counted since start, per event; the components have
// stopped.
func (c *tripCount) result(ctx context.Context, t *target, events int) (*RoundTrips, error) {
	if c == nil || events == 0 {
		return nil, nil
	}
	got := c.counter.Take()
	after, err := roundtrips.ReadNATS(ctx, c.js, c.streams...)
	if err != nil {
		return nil, err
	}
	nc := after.Since(c.before)
	n := float64(events)
	out := &RoundTrips{Events: events, Commands: map[string]map[string]float64{}, Total: map[string]float64{},
		Changes: float64(got.ChangesRead()) / n, Lookups: float64(got.Lookups) / n,
		Stored: float64(nc.Stored) / n, Delivered: float64(nc.Delivered) / n, Acked: float64(nc.Acked) / n}
	for component, ops := range got.Commands {
		out.Commands[component] = map[string]float64{}
		for op, v := range ops {
			out.Commands[component][op] = float64(v) / n
		}
		out.Total[component] = float64(got.CommandsOf(component)) / n
	}
	return out, nil
}
