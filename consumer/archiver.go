package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
)

// ArchiverConfig configures the archiver. Zero fields take their defaults.
type ArchiverConfig struct {
	Names messaging.Names // default messaging.DefaultNames()
	// Events is the collection of event documents. Default "events".
	Events string
	// Errors is the collection of archived events. Default "errors".
	Errors string
	// Concurrency bounds the messages archived at once. Default 4.
	Concurrency int
	// AckWait is JetStream's redelivery deadline. Default 30s.
	AckWait time.Duration
	// DrainTimeout bounds the wait for archives in flight at shutdown.
	// Default 10s.
	DrainTimeout time.Duration
	Now          func() time.Time // default time.Now
	OnTransition func(Transition) // called after each event is archived
	Logger       zerolog.Logger
}

func (c ArchiverConfig) withDefaults() ArchiverConfig {
	if c.Names == (messaging.Names{}) {
		c.Names = messaging.DefaultNames()
	}
	if c.Events == "" {
		c.Events = "events"
	}
	if c.Errors == "" {
		c.Errors = "errors"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first setting to fix, naming its flag.
func (c ArchiverConfig) Validate() error { return c.withDefaults().validate() }

func (c ArchiverConfig) validate() error {
	switch {
	case c.Concurrency < 1:
		return config.Invalid("concurrency", "must be at least 1, got %d", c.Concurrency)
	case c.AckWait <= time.Second:
		return config.Invalid("ack-wait", "must be longer than 1s, got %s", c.AckWait)
	case c.Events == c.Errors:
		return config.Invalid("errors-collection", "must differ from the events collection %q", c.Events)
	}
	return nil
}

// ArchiverStats count what the archiver did.
type ArchiverStats struct {
	Archived atomic.Int64 // events moved into errors
	Repeated atomic.Int64 // messages whose event was already archived or gone
	Stale    atomic.Int64 // messages whose event left the error state
	Retried  atomic.Int64 // messages handed back after a storage error
}

// Archiver moves dead letters into the errors collection.
type Archiver struct {
	cfg    ArchiverConfig
	log    zerolog.Logger
	events store.Collection
	errs   store.Collection
	js     jetstream.JetStream
	stats  ArchiverStats
}

// NewArchiver builds an archiver on db and nc.
func NewArchiver(cfg ArchiverConfig, db store.Database, nc *nats.Conn) (*Archiver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating jetstream context: %w", err)
	}
	return &Archiver{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "archiver").Logger(),
		events: db.Collection(cfg.Events),
		errs:   db.Collection(cfg.Errors),
		js:     js,
	}, nil
}

// Stats returns the archiver's counters.
func (a *Archiver) Stats() *ArchiverStats { return &a.stats }

// Run archives dead letters until ctx ends, then drains.
func (a *Archiver) Run(ctx context.Context) error {
	open := func(ctx context.Context) (jetstream.Consumer, error) {
		return messaging.EnsureArchiver(ctx, a.js, a.cfg.Names, messaging.ConsumerOptions{AckWait: a.cfg.AckWait})
	}
	return consume(ctx, a.log, open, a.cfg.Concurrency, a.cfg.DrainTimeout, a.handle)
}

// handle archives one dead letter: it reads the event from the events
// collection (the authoritative copy), upserts it into errors, deletes it
// from events on the version it read, and acks. Each step is idempotent, so
// a repeated or redelivered message changes nothing.
func (a *Archiver) handle(ctx context.Context, msg jetstream.Msg) {
	ref, err := messaging.DecodeRef(msg.Data())
	if err != nil {
		a.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("terminating an undecodable dead letter")
		_ = msg.Term()
		return
	}
	id := event.IDString(ref.ID)
	reason := msg.Headers().Get(messaging.HeaderReason)
	doc, err := a.events.FindOne(ctx, event.ByID(ref.ID))
	if errors.Is(err, store.ErrNotFound) {
		a.stats.Repeated.Add(1)
		_ = msg.Ack()
		return
	}
	if err != nil {
		a.retryLater(msg, id, err)
		return
	}
	ev, perr := event.Parse(doc, 0)
	if reason == "" && (perr != nil || ev.State != event.StateError) {
		// Not in the error state any more (the application reset it): its
		// change flows through the producer again.
		a.stats.Stale.Add(1)
		_ = msg.Ack()
		return
	}
	now := a.cfg.Now()
	if _, err := a.errs.UpdateOne(ctx, event.ByID(ref.ID), archiveUpdate(doc, reason, now), true); err != nil {
		a.retryLater(msg, id, err)
		return
	}
	deleted, err := a.events.DeleteOne(ctx, sameVersion(doc))
	if err != nil {
		a.retryLater(msg, id, err)
		return
	}
	if deleted == 0 {
		// Changed between our read and delete: archive what it is now.
		a.retryLater(msg, id, errors.New("event changed while being archived"))
		return
	}
	_ = msg.Ack()
	a.stats.Archived.Add(1)
	a.log.Debug().Str("event_id", id).Str("reason", reason).Msg("archived")
	if a.cfg.OnTransition != nil {
		a.cfg.OnTransition(Transition{ID: id, Type: ev.Type, From: ev.State, To: event.StateError, Attempts: ev.Attempts, At: now, Archived: true, Error: reason})
	}
}

// archiveUpdate copies every field of the event into its errors document;
// archivedAt is set once, so repeating it changes nothing. A rejected
// document gets the producer's reason as its lastError.
func archiveUpdate(doc bson.Raw, reason string, now time.Time) bson.D {
	elems, _ := doc.Elements()
	set := make(bson.D, 0, len(elems)+1)
	for _, el := range elems {
		if el.Key() == event.FieldID || (reason != "" && el.Key() == event.FieldLastError) {
			continue
		}
		set = append(set, bson.E{Key: el.Key(), Value: el.Value()})
	}
	if reason != "" {
		set = append(set, bson.E{Key: event.FieldLastError, Value: event.LastError{Message: reason, Retryable: false, At: now}})
	}
	return bson.D{
		{Key: "$set", Value: set},
		{Key: "$setOnInsert", Value: bson.D{{Key: event.FieldArchivedAt, Value: now}}},
	}
}

// sameVersion selects the document only at the version it was read at.
func sameVersion(doc bson.Raw) bson.D {
	f := bson.D{{Key: event.FieldID, Value: doc.Lookup(event.FieldID)}}
	if v, err := doc.LookupErr(event.FieldVersion); err == nil {
		return append(f, bson.E{Key: event.FieldVersion, Value: v})
	}
	return append(f, bson.E{Key: event.FieldVersion, Value: bson.D{{Key: "$exists", Value: false}}})
}

func (a *Archiver) retryLater(msg jetstream.Msg, id string, err error) {
	a.stats.Retried.Add(1)
	a.log.Warn().Err(err).Str("event_id", id).Msg("archiving failed; the dead letter will be redelivered")
	_ = msg.NakWithDelay(time.Second)
}
