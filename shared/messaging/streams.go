package messaging

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names derives stream, subject and consumer names from two prefixes, so
// several retrigger deployments can share one NATS account.
type Names struct {
	StreamPrefix  string // default "RETRIGGER": streams RETRIGGER_EVENTS, RETRIGGER_DLQ
	SubjectPrefix string // default "retrigger": subjects retrigger.events.<type>, retrigger.dlq.<type>
}

// DefaultNames are the names of DESIGN.md.
func DefaultNames() Names { return Names{StreamPrefix: "RETRIGGER", SubjectPrefix: "retrigger"} }

func (n Names) EventsStream() string           { return n.StreamPrefix + "_EVENTS" }
func (n Names) DLQStream() string              { return n.StreamPrefix + "_DLQ" }
func (n Names) EventSubject(typ string) string { return n.SubjectPrefix + ".events." + typ }
func (n Names) DLQSubject(typ string) string   { return n.SubjectPrefix + ".dlq." + typ }

// WorkersConsumer is the durable pull consumer every consumer replica shares.
func (n Names) WorkersConsumer() string { return n.StreamPrefix + "_WORKERS" }

// ArchiverConsumer is the durable pull consumer of the archiver on the DLQ.
func (n Names) ArchiverConsumer() string { return n.StreamPrefix + "_ARCHIVER" }

// InvalidType is the subject token of events whose type cannot be one.
const InvalidType = "_invalid"

// StreamOptions tune the two streams.
type StreamOptions struct {
	Replicas        int           // default 1
	DuplicateWindow time.Duration // default 2m: how long a republished change is recognised
	DLQMaxAge       time.Duration // default 7 days: how long operators can inspect dead letters
	Storage         jetstream.StorageType
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.DLQMaxAge == 0 {
		o.DLQMaxAge = 7 * 24 * time.Hour
	}
	return o
}

// EventsConfig is the work-queue stream consumers take events from.
func (n Names) EventsConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        n.EventsStream(),
		Description: "retrigger: events to run (state new or failed)",
		Subjects:    []string{n.EventSubject(">")},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
	}
}

// DLQConfig is the limits stream of events whose retries are exhausted.
func (n Names) DLQConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        n.DLQStream(),
		Description: "retrigger: dead letters (state error), archived into the errors collection",
		Subjects:    []string{n.DLQSubject(">")},
		Retention:   jetstream.LimitsPolicy,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		MaxAge:      o.DLQMaxAge,
	}
}

// EnsureStreams creates both streams, or updates them to this
// configuration. Repeating it changes nothing.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, n Names, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{n.EventsConfig(o), n.DLQConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ConsumerOptions tune a durable pull consumer.
type ConsumerOptions struct {
	AckWait       time.Duration // default 30s: redelivery after this without an ack or progress
	MaxAckPending int           // default 1000: messages out at once across replicas
}

// EnsureWorkers creates or updates the shared workers consumer.
func EnsureWorkers(ctx context.Context, js jetstream.JetStream, n Names, o ConsumerOptions) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, n.EventsStream(), n.WorkersConsumer(), n.EventSubject(">"), o)
}

// EnsureArchiver creates or updates the archiver's consumer on the DLQ.
func EnsureArchiver(ctx context.Context, js jetstream.JetStream, n Names, o ConsumerOptions) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, n.DLQStream(), n.ArchiverConsumer(), n.DLQSubject(">"), o)
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream, name, filter string, o ConsumerOptions) (jetstream.Consumer, error) {
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 1000
	}
	c, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1, // a not-yet-due event is nak'ed with a delay, as often as needed
		MaxAckPending: o.MaxAckPending,
		FilterSubject: filter,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on %s: %w", name, stream, err)
	}
	return c, nil
}
