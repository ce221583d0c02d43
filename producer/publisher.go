package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Stats count what the producer did since it started.
type Stats struct {
	Changes    atomic.Int64 // changes read from the change stream
	Published  atomic.Int64 // acknowledged by JetStream, duplicates included
	Duplicates atomic.Int64 // acknowledged as duplicates (already in the stream)
	Rejected   atomic.Int64 // malformed documents sent to the DLQ
	Scheduled  atomic.Int64 // failed events published by the scheduler when due
	Swept      atomic.Int64 // published by the sweeper (not duplicates)
	Sweeps     atomic.Int64 // sweeps completed
	Moved      atomic.Int64 // events that cannot travel in a message, moved into errors directly
	Restarts   atomic.Int64 // change stream restarts after an error
	Checkpoint atomic.Int64 // resume tokens saved
	Retired    atomic.Int64 // succeeded events deleted by retention
}

// publisher turns event documents into messages and publishes them. The
// relay, the scheduler and the sweeper share it.
type publisher struct {
	cfg        Config
	log        zerolog.Logger
	store      *eventstore.Store
	js         jetstream.JetStream
	stats      *Stats
	maxPayload int
	// schedule is told the due time of a failed event that is not due yet.
	schedule func(due time.Time)
	// ensureStreams creates the streams again when a publish finds one
	// missing (deleted or lost at run time).
	ensureStreams func(ctx context.Context) error
	ensuredAt     atomic.Int64 // unix ns of the last ensureStreams, to do it at most once a second
	// sweptBefore (unix ns) is the bound of the relay's full sweep when it
	// opened a stream with no history: a new event created by then may be
	// published by both, and both name it by its creation (creationStamp).
	sweptBefore atomic.Int64

	subjectsMu sync.RWMutex
	subjects   map[string]string // EVENTS subject by type, for at most maxSubjects types
}

// maxSubjects bounds the subjects a publisher keeps: an application has a
// few types, documents with random types must not grow it without end.
const maxSubjects = 1024

// eventSubject is the EVENTS subject of typ, built once per type.
func (p *publisher) eventSubject(typ string) string {
	p.subjectsMu.RLock()
	s, ok := p.subjects[typ]
	p.subjectsMu.RUnlock()
	if ok {
		return s
	}
	s = p.cfg.Names.EventSubject(typ)
	p.subjectsMu.Lock()
	if p.subjects == nil {
		p.subjects = map[string]string{}
	}
	if len(p.subjects) < maxSubjects {
		p.subjects[typ] = s
	}
	p.subjectsMu.Unlock()
	return s
}

// streamMissing ensures the streams again, at most once a second, when err
// says a stream is missing; it returns err.
func (p *publisher) streamMissing(ctx context.Context, err error) error {
	if err == nil || !messaging.IsStreamMissing(err) || p.ensureStreams == nil {
		return err
	}
	now := time.Now().UnixNano()
	last := p.ensuredAt.Load()
	if now-last < int64(time.Second) || !p.ensuredAt.CompareAndSwap(last, now) {
		return err
	}
	if eerr := p.ensureStreams(ctx); eerr != nil {
		p.log.Warn().Err(eerr).Msg("a stream is missing and creating it failed")
	} else {
		p.log.Warn().Err(err).Msg("a stream was missing: created it again")
	}
	return err
}

// routed is what to do with an event document.
type routed struct {
	msg    *nats.Msg // nil: nothing to publish
	doc    bson.Raw
	ev     event.Event
	reject string // why the document cannot run, when it is rejected
	// tooLarge: not even its id fits in a message; it goes into errors
	// directly.
	tooLarge string
	sent     time.Time // when its publish started, for the latency metric
	span     tracing.Span
}

// route decides what an event document needs at now: new and failed
// events go to their type's subject when due, or to the scheduler
// otherwise (a retry, a delayed first run), and nowhere when the change is
// their park (they wait for their flow-control key); errored ones to the
// DLQ; malformed ones to the DLQ with the reason. Nothing is published for an event a consumer runs now (its
// lease holds: the transition that ends the run is routed instead) or one
// that succeeded. change names the change the document comes from
// (messaging.Stamp{Change: its cluster time}), for the message's
// Nats-Msg-Id; the zero Stamp when it does not come from a change (the
// scheduler, the sweeper): the event's version and state name it then.
func (p *publisher) route(doc bson.Raw, change messaging.Stamp, now time.Time) routed {
	ev, err := p.store.Parse(doc)
	r := routed{doc: doc, ev: ev}
	if ev.ID.Type == 0 {
		return r // no _id: not a document of ours
	}
	fromChange := change != messaging.Stamp{}
	stamp := change
	if cs := p.creationStamp(&ev, fromChange); cs != "" {
		stamp = messaging.Stamp{Text: cs}
	} else if !fromChange {
		stamp = messaging.Stamp{Text: stateStamp(&ev)}
	}
	if err != nil {
		r.reject = err.Error()
		typ := ev.Type
		if typ == "" {
			typ = messaging.InvalidType
		}
		stamp.Prefix = "rejected."
		return p.message(r, p.cfg.Names.DLQSubject(typ), stamp)
	}
	if ev.Leased(now) {
		return r
	}
	if ev.State.Runnable() && !ev.ParkedAt.IsZero() && fromChange {
		// It waits for its key (flow control), out of NATS: the change is
		// its park. A wake, or the sweeper after the stall, brings it back.
		return r
	}
	switch ev.State {
	case event.StateNew, event.StateFailed:
		if !ev.Due(now) {
			// A retry, or a delayed first run: the scheduler publishes it
			// when it is due.
			if p.schedule != nil {
				p.schedule(ev.NextAttemptAt)
			}
			return r
		}
		if ev.State == event.StateFailed {
			stamp = messaging.Stamp{Text: dueStamp(&ev)}
		}
		return p.message(r, p.eventSubject(ev.Type), stamp)
	case event.StateError:
		return p.message(r, p.cfg.Names.DLQSubject(ev.Type), stamp)
	}
	return r
}

// creationStamp names a new event's message by its creation time rather
// than by a change ("": not so): when the sweeper or the scheduler
// publishes it (no change), and when the relay does but the sweep that
// began its stream may have too. The name then carries the event's place
// among the events of its flow-control key (messaging.CreationStamp), and
// both publishes of it are one message.
func (p *publisher) creationStamp(ev *event.Event, fromChange bool) string {
	if ev.State != event.StateNew || ev.Version != 0 || ev.CreatedAt.IsZero() || !ev.WokenAt.IsZero() || ev.Redrives != 0 {
		// Woken by its key (its place is stamped on it already) or
		// redriven: a new message, which its first one's name would hide.
		return ""
	}
	if fromChange {
		before := p.sweptBefore.Load()
		if before == 0 || ev.CreatedAt.UnixNano() > before {
			return ""
		}
	}
	return messaging.CreationStamp(ev.CreatedAt)
}

// dueStamp names a failed event's attempt by its version and due time, so
// the relay, the scheduler and the sweeper publishing it agree, and
// JetStream keeps one.
func dueStamp(ev *event.Event) string {
	s := "v" + strconv.FormatInt(ev.Version, 10) + ".due" + strconv.FormatInt(ev.NextAttemptAt.UnixMilli(), 10)
	if !ev.WokenAt.IsZero() {
		// Woken by its key after it was parked: its retry's message went
		// already, and this one must not be taken for a duplicate of it.
		s += ".w" + strconv.FormatInt(ev.WokenAt.UnixMilli(), 10)
	}
	return s
}

// stateStamp names an event by its version and state: the stamp of the
// sweeper, which republishes what did not move.
func stateStamp(ev *event.Event) string {
	return "v" + strconv.FormatInt(ev.Version, 10) + ".s" + strconv.Itoa(int(ev.State))
}

// traceRoom is kept free of max_payload for the trace context a traced
// publish adds to the headers: traceparent, and tracestate (at most 512
// characters by the W3C's rules).
const traceRoom = 640

// traceHeaders are the headers of the trace context, as written.
var traceHeaders = []string{"traceparent", "tracestate", "Traceparent", "Tracestate"}

// message builds the message of r: the body shows the document when it
// fits, a stub otherwise. When NATS would refuse the message whatever its
// body (the event's id too large for the Retrigger-Id header, or for
// max_payload), r is marked tooLarge: the event goes into errors directly.
func (p *publisher) message(r routed, subject string, stamp messaging.Stamp) routed {
	msg := messaging.NewStampedMsg(subject, r.ev.ID, stamp, r.ev.Version, nil)
	if r.reject != "" {
		msg.Header.Set(messaging.HeaderReason, r.reject)
	}
	hdr := messaging.HeaderBytes(msg) // the headers stay as they are from here
	if err := messaging.CheckSizes(hdr, 0, p.maxPayload); err != nil {
		r.tooLarge = fmt.Sprintf("its _id (%d bytes) cannot travel in a NATS message: %v", len(r.ev.ID.Value), err)
		return r
	}
	room := p.maxPayload - hdr
	if p.cfg.Tracing != nil {
		room -= traceRoom
	}
	body, err := messaging.Body(r.doc)
	if err != nil || len(body) > room {
		body = messaging.StubBody(&r.ev, len(r.doc))
	}
	msg.Data = body
	if err := messaging.CheckSizes(hdr, len(body), p.maxPayload); err != nil {
		r.tooLarge = fmt.Sprintf("its _id (%d bytes) leaves no room in a NATS message for even a stub body: %v", len(r.ev.ID.Value), err)
		return r
	}
	r.msg = msg
	return r
}

// publishAsync starts publishing r. done is false when there was nothing
// to publish, or r was settled without a publish (moved into errors).
func (p *publisher) publishAsync(ctx context.Context, r *routed) (jetstream.PubAckFuture, error) {
	if r.tooLarge != "" {
		return nil, p.moveToErrors(ctx, *r, r.tooLarge)
	}
	if r.msg == nil {
		return nil, nil
	}
	r.span = p.cfg.Tracing.Publish(&r.ev, r.msg)
	if p.cfg.Tracing != nil { // untraced, the headers are those message measured
		if err := messaging.CheckSize(r.msg, p.maxPayload); err != nil {
			// The trace context took the headers past the limit (an id just
			// under it): the event travels untraced rather than not at all.
			for _, k := range traceHeaders {
				r.msg.Header.Del(k)
			}
		}
	}
	if r.reject != "" {
		p.stats.Rejected.Add(1)
		r.span.Log(p.log.Warn()).Str("event_id", event.IDString(r.ev.ID)).Str("reason", r.reject).Msg("event document rejected; archiving it into errors")
	}
	r.sent = time.Now()
	fut, err := p.js.PublishMsgAsync(r.msg)
	if refused := messaging.Refusal(err); refused != nil {
		err = p.fallback(ctx, *r, refused)
		r.span.End(err)
		return nil, err
	}
	if err != nil {
		r.span.End(err)
		p.cfg.Metrics.NATSError("publish")
		return nil, p.streamMissing(ctx, fmt.Errorf("publishing %s: %w", r.msg.Header.Get(nats.MsgIdHdr), err))
	}
	if e := p.log.Debug(); e.Enabled() {
		r.span.Log(e).Str("subject", r.msg.Subject).Str("msg_id", r.msg.Header.Get(nats.MsgIdHdr)).Msg("published")
	}
	return fut, nil
}

// acked waits for the ack of a publish of r. A message NATS refuses for
// what it is (messaging.Refusal) falls back; other errors are returned
// for the caller to retry.
func (p *publisher) acked(ctx context.Context, r routed, fut jetstream.PubAckFuture) (err error) {
	defer func() { r.span.End(err) }()
	select {
	case ack := <-fut.Ok():
		p.stats.Published.Add(1)
		if ack.Duplicate {
			p.stats.Duplicates.Add(1)
		}
		p.cfg.Metrics.Published(ack.Stream, time.Since(r.sent), ack.Duplicate)
		return nil
	case err := <-fut.Err():
		if refused := messaging.Refusal(err); refused != nil {
			return p.fallback(ctx, r, refused)
		}
		p.cfg.Metrics.NATSError("publish")
		return p.streamMissing(ctx, fmt.Errorf("publish of %s not acknowledged: %w", fut.Msg().Header.Get(nats.MsgIdHdr), err))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fallback handles a message NATS refused for what it is: one too large
// is published again with a stub body; when even that is refused, or the
// refusal is of its headers or subject, which no body changes, the event
// is moved into errors naming the cause, so that it never blocks the
// events after it.
func (p *publisher) fallback(ctx context.Context, r routed, refused error) error {
	if !errors.Is(refused, messaging.ErrMessageTooLarge) {
		return p.moveToErrors(ctx, r, fmt.Sprintf("it cannot be published to NATS: %v", refused))
	}
	stub := *r.msg
	stub.Data = messaging.StubBody(&r.ev, len(r.doc))
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ack, err := p.js.PublishMsg(pctx, &stub)
	if err == nil {
		p.cfg.Metrics.Published(ack.Stream, 0, ack.Duplicate)
		p.stats.Published.Add(1)
		if ack.Duplicate {
			p.stats.Duplicates.Add(1)
		}
		return nil
	}
	if messaging.Refusal(err) == nil {
		return fmt.Errorf("publishing %s again without its body: %w", stub.Header.Get(nats.MsgIdHdr), err)
	}
	return p.moveToErrors(ctx, r, fmt.Sprintf("it cannot be published to NATS: %v", refused))
}

// moveToErrors settles an event that cannot travel in any message: it is
// moved into errors with the reason, as the archiver would.
func (p *publisher) moveToErrors(ctx context.Context, r routed, why string) error {
	msg := "event cannot be run: " + why
	if r.reject != "" {
		msg = r.reject + "; and " + why
	}
	err := p.store.MoveToErrors(ctx, r.doc, eventstore.Archive{Reason: event.ReasonRejected, Message: msg, At: p.cfg.Now()})
	if errors.Is(err, eventstore.ErrStale) {
		return nil // it changed: its new change is routed in turn
	}
	if err != nil {
		return fmt.Errorf("moving an unpublishable event into errors: %w", err)
	}
	p.stats.Moved.Add(1)
	p.cfg.Metrics.Archived(event.ReasonRejected)
	p.log.Warn().Str("event_id", event.IDString(r.ev.ID)).Str("reason", why).Msg("event moved into errors: it cannot travel in a NATS message")
	return nil
}
