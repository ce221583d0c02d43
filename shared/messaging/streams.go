package messaging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retrigger/retrigger/shared/config"
)

// Defaults of the streams and consumers.
const (
	DefaultStreamPrefix    = "RETRIGGER"
	DefaultSubjectPrefix   = "retrigger"
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultDLQMaxAge       = 7 * 24 * time.Hour
	DefaultAckWait         = 30 * time.Second
	DefaultMaxAckPending   = 1000
)

// Names derives stream, subject and consumer names from two prefixes, so
// several retrigger deployments can share one NATS account.
type Names struct {
	StreamPrefix  string // default "RETRIGGER": streams RETRIGGER_EVENTS, RETRIGGER_DLQ
	SubjectPrefix string // default "retrigger": subjects retrigger.events.<type>, retrigger.dlq.<type>
}

// Validate reports the first prefix that cannot make a valid stream,
// consumer or subject name: the stream prefix is a name (no '.', '*',
// '>', '/', '\\', white space or control characters), the subject prefix
// one or more '.'-separated tokens, none empty (not "a..b", ".a" or
// "a."), without '*', '>', white space or control characters. Both are
// required. The errors name the field and its flag (config.ForFlags).
func (n Names) Validate() error {
	f := func(field, flag, format string, args ...any) error {
		return config.Field("messaging.Names."+field, flag, format, args...)
	}
	if n.StreamPrefix == "" {
		return f("StreamPrefix", "stream-prefix", "must not be empty")
	}
	if strings.IndexFunc(n.StreamPrefix, badNameRune) >= 0 || strings.ContainsAny(n.StreamPrefix, "./\\") {
		return f("StreamPrefix", "stream-prefix", "%q must be a name without '.', '*', '>', '/', '\\', spaces or control characters", n.StreamPrefix)
	}
	if n.SubjectPrefix == "" {
		return f("SubjectPrefix", "subject-prefix", "must not be empty")
	}
	if strings.IndexFunc(n.SubjectPrefix, badNameRune) >= 0 {
		return f("SubjectPrefix", "subject-prefix", "%q must not contain '*', '>', spaces or control characters", n.SubjectPrefix)
	}
	for _, tok := range strings.Split(n.SubjectPrefix, ".") {
		if tok == "" {
			return f("SubjectPrefix", "subject-prefix", "%q has an empty token: write '.'-separated tokens, like retrigger or acme.retrigger", n.SubjectPrefix)
		}
	}
	return nil
}

// badNameRune: NATS wildcards, white space and control characters.
func badNameRune(r rune) bool {
	return r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
}

// DefaultNames are the names of docs/DESIGN.md.
func DefaultNames() Names {
	return Names{StreamPrefix: DefaultStreamPrefix, SubjectPrefix: DefaultSubjectPrefix}
}

func (n Names) EventsStream() string           { return n.StreamPrefix + "_EVENTS" }
func (n Names) DLQStream() string              { return n.StreamPrefix + "_DLQ" }
func (n Names) EventSubject(typ string) string { return n.SubjectPrefix + ".events." + typ }
func (n Names) DLQSubject(typ string) string   { return n.SubjectPrefix + ".dlq." + typ }

// TypeOf returns the event type of a subject of the EVENTS stream.
func (n Names) TypeOf(subject string) (string, bool) {
	return strings.CutPrefix(subject, n.SubjectPrefix+".events.")
}

// WorkersConsumer is the durable pull consumer of one event type, which
// every replica with a handler for that type shares: a replica only ever
// receives events it can run, and events of a type no replica handles
// wait in the stream. A type made of letters, digits, '-' and '_' is used
// as it is; any other is cleaned and suffixed with a hash, since consumer
// names exclude characters that subject tokens allow.
func (n Names) WorkersConsumer(typ string) string {
	return n.StreamPrefix + "_WORKERS_" + consumerToken(typ)
}

func consumerToken(typ string) string {
	clean := true
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			clean = false
			break
		}
	}
	if clean {
		return typ
	}
	var b strings.Builder
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(typ))
	return b.String() + "_" + hex.EncodeToString(sum[:4])
}

// ArchiverConsumer is the durable pull consumer of the archiver on the DLQ.
func (n Names) ArchiverConsumer() string { return n.StreamPrefix + "_ARCHIVER" }

// InvalidType is the subject token of events whose type cannot be one.
const InvalidType = "_invalid"

// StreamOptions tune the two streams.
type StreamOptions struct {
	Replicas        int           // default 1; 3 in production
	DuplicateWindow time.Duration // default 2m: how long a republished message is recognised
	DLQMaxAge       time.Duration // default 7 days: how long operators can inspect dead letters
	Storage         jetstream.StorageType
}

// WithDefaults returns o with its zero fields set.
func (o StreamOptions) WithDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.DLQMaxAge == 0 {
		o.DLQMaxAge = DefaultDLQMaxAge
	}
	return o
}

// EventsConfig is the work-queue stream consumers take events from.
func (n Names) EventsConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.WithDefaults()
	return jetstream.StreamConfig{
		Name:        n.EventsStream(),
		Description: "retrigger: events to run (state new or failed and due)",
		Subjects:    []string{n.EventSubject(">")},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
	}
}

// DLQConfig is the limits stream of events whose retries are exhausted.
func (n Names) DLQConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.WithDefaults()
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

// EnsureStreams creates both streams when they are missing. With update it
// also brings existing ones to this configuration (the producer owns the
// streams' settings; consumers only make sure they exist, so a replica
// started first never waits, and never undoes the producer's settings). It
// returns what it changed, for the log.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, n Names, o StreamOptions, update bool) ([]string, error) {
	var changed []string
	for _, cfg := range []jetstream.StreamConfig{n.EventsConfig(o), n.DLQConfig(o)} {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return changed, fmt.Errorf("creating stream %s: %w", cfg.Name, err)
			}
			changed = append(changed, "created stream "+cfg.Name)
		case err != nil:
			return changed, fmt.Errorf("looking up stream %s: %w", cfg.Name, err)
		case update:
			if diff := streamDiff(s.CachedInfo().Config, cfg); diff != "" {
				if _, err := js.UpdateStream(ctx, cfg); err != nil {
					return changed, fmt.Errorf("updating stream %s (%s): %w", cfg.Name, diff, err)
				}
				changed = append(changed, "updated stream "+cfg.Name+": "+diff)
			}
		}
	}
	return changed, nil
}

// streamDiff names the settings retrigger owns that differ in have.
func streamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	if !reflect.DeepEqual(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects %v -> %v", have.Subjects, want.Subjects))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d -> %d", have.Replicas, want.Replicas))
	}
	if have.Duplicates != want.Duplicates {
		d = append(d, fmt.Sprintf("duplicate window %s -> %s", have.Duplicates, want.Duplicates))
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max age %s -> %s", have.MaxAge, want.MaxAge))
	}
	if have.Description != want.Description {
		d = append(d, "description")
	}
	return strings.Join(d, ", ")
}

// ConsumerOptions tune a durable pull consumer.
type ConsumerOptions struct {
	AckWait       time.Duration // default 30s: redelivery after this without an ack or progress
	MaxAckPending int           // default 1000: messages out at once across replicas
}

// WithDefaults returns o with its zero fields set.
func (o ConsumerOptions) WithDefaults() ConsumerOptions {
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	return o
}

// WorkersConfig is the consumer of one event type.
func (n Names) WorkersConfig(typ string, o ConsumerOptions) jetstream.ConsumerConfig {
	return consumerConfig(n.WorkersConsumer(typ), n.EventSubject(typ), "retrigger: replicas running events of type "+typ, o)
}

// ArchiverConfig is the archiver's consumer on the DLQ.
func (n Names) ArchiverConfig(o ConsumerOptions) jetstream.ConsumerConfig {
	return consumerConfig(n.ArchiverConsumer(), n.DLQSubject(">"), "retrigger: the archiver", o)
}

func consumerConfig(name, filter, description string, o ConsumerOptions) jetstream.ConsumerConfig {
	o = o.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1, // a run that crashes its consumer is counted on the event's lease instead
		MaxAckPending: o.MaxAckPending,
		FilterSubject: filter,
	}
}

// EnsureConsumer creates the durable consumer on stream when it is
// missing, and updates it when its settings differ, saying what changed
// (for the log): replicas started with other settings reconfigure it.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, string, error) {
	c, err := js.Consumer(ctx, stream, cfg.Durable)
	if err == nil {
		have := c.CachedInfo().Config
		diff := consumerDiff(have, cfg)
		if diff == "" {
			return c, "", nil
		}
		c, err = js.UpdateConsumer(ctx, stream, cfg)
		if err != nil {
			return nil, "", fmt.Errorf("updating consumer %s on %s (%s): %w", cfg.Durable, stream, diff, err)
		}
		return c, "updated consumer " + cfg.Durable + ": " + diff, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, "", fmt.Errorf("looking up consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	c, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("creating consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, "", nil
}

func consumerDiff(have, want jetstream.ConsumerConfig) string {
	var d []string
	if have.AckWait != want.AckWait {
		d = append(d, fmt.Sprintf("ack wait %s -> %s", have.AckWait, want.AckWait))
	}
	if have.MaxAckPending != want.MaxAckPending {
		d = append(d, fmt.Sprintf("max ack pending %d -> %d", have.MaxAckPending, want.MaxAckPending))
	}
	if have.FilterSubject != want.FilterSubject {
		d = append(d, fmt.Sprintf("filter %s -> %s", have.FilterSubject, want.FilterSubject))
	}
	if have.MaxDeliver != want.MaxDeliver {
		d = append(d, fmt.Sprintf("max deliver %d -> %d", have.MaxDeliver, want.MaxDeliver))
	}
	return strings.Join(d, ", ")
}

// Unserved returns the event types with messages waiting in the EVENTS
// stream and no workers consumer: no replica has a handler for them, so
// they wait (they are not archived) until one starts.
func Unserved(ctx context.Context, js jetstream.JetStream, n Names) (map[string]uint64, error) {
	s, err := js.Stream(ctx, n.EventsStream())
	if err != nil {
		return nil, fmt.Errorf("looking up stream %s: %w", n.EventsStream(), err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(n.EventSubject(">")))
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", n.EventsStream(), err)
	}
	out := map[string]uint64{}
	for subject, count := range info.State.Subjects {
		typ, ok := n.TypeOf(subject)
		if !ok || count == 0 {
			continue
		}
		if _, err := js.Consumer(ctx, n.EventsStream(), n.WorkersConsumer(typ)); errors.Is(err, jetstream.ErrConsumerNotFound) {
			out[typ] = count
		} else if err != nil {
			return nil, fmt.Errorf("looking up the consumer of type %s: %w", typ, err)
		}
	}
	return out, nil
}
