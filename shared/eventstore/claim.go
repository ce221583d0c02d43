package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// ClaimRequest asks for the right to run one event now. Sending the very
// same request again (same Token) after a storage error is safe: a claim
// whose answer was lost is found by its token and returned, without
// counting anything twice.
type ClaimRequest struct {
	ID   bson.RawValue
	Type string // the handler's type: an event whose type changed is not claimed
	// Owner names the claiming replica; Token is unique per claim, and
	// not 0.
	Owner string
	Token int64
	Now   time.Time
	// TTL is how long the lease holds unless renewed.
	TTL time.Duration
	// Early lets a failed event be claimed this long before its due time,
	// to absorb small clock differences between the producer and consumers.
	Early time.Duration
	// Grace is how long after its end a lease is still left to its holder
	// before it is taken over (and a crash counted): room for clocks that
	// differ, and for a release its holder sent late.
	Grace time.Duration
}

// Outcome says what a claim found.
type Outcome int

const (
	Claimed Outcome = iota // the caller holds the lease and runs the event
	Gone                   // no such event any more (archived, deleted)
	Done                   // not runnable: succeeded, errored, or its type changed
	NotDue                 // failed, due later (Claim.Event.NextAttemptAt)
	Leased                 // another consumer runs it until Claim.Event.Lease.Until
	Invalid                // the document cannot be read (Claim.Err says why)
)

var outcomeNames = [...]string{"claimed", "gone", "done", "not due", "leased", "invalid"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Claim is the result of ClaimEvent.
type Claim struct {
	Outcome Outcome
	Event   event.Event // as claimed, or as found
	Doc     bson.Raw    // the document Event was read from, when Claimed
	Lease   event.Lease // when Claimed
	Err     error       // when Invalid
}

// ClaimEvent takes the lease of an event that is runnable now: new, or
// failed and due, with no lease or a lease that expired. It is one
// conditional find-and-modify; when it matches nothing, one more read says
// why. A lease that expired belonged to a run that never recorded its
// outcome (its consumer crashed, or its handler hung past its timeout):
// ClaimEvent takes it over and counts the crash in Event.Crashes.
//
// It is idempotent per token: the find-and-modify also matches an event
// whose lease already holds r.Token, which is this very claim (or its
// takeover) applied by an earlier try whose answer was lost. Such a retry
// returns the event as claimed, with the crash count the first try wrote,
// and writes the same lease again.
func (s *Store) ClaimEvent(ctx context.Context, r ClaimRequest) (Claim, error) {
	lease := event.Lease{Owner: r.Owner, Token: r.Token, Until: r.Now.Add(r.TTL)}
	doc, err := s.events.FindOneAndUpdate(ctx, s.claimFilter(r), claimUpdate(lease))
	if err == nil {
		return s.claimed(doc, lease)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return Claim{}, wrap("claiming an event", err)
	}
	// Why not? One read decides.
	doc, err = s.events.FindOne(ctx, byID(r.ID))
	if errors.Is(err, store.ErrNotFound) {
		return Claim{Outcome: Gone}, nil
	}
	if err != nil {
		return Claim{}, wrap("reading an unclaimed event", err)
	}
	ev, err := s.Parse(doc)
	switch {
	case err != nil:
		return Claim{Outcome: Invalid, Event: ev, Err: err}, nil
	case ev.Type != r.Type || !ev.State.Runnable():
		return Claim{Outcome: Done, Event: ev}, nil
	case !ev.Due(r.Now.Add(r.Early)):
		return Claim{Outcome: NotDue, Event: ev}, nil
	case ev.Lease != nil && ev.Lease.Token == r.Token:
		// This claim, applied by an earlier try, between the two reads.
		return Claim{Outcome: Claimed, Event: ev, Lease: lease}, nil
	case ev.Leased(r.Now.Add(-r.Grace)):
		return Claim{Outcome: Leased, Event: ev}, nil
	case ev.Lease == nil:
		// Released between the two reads, or a malformed lease: claim it
		// again next time.
		return Claim{Outcome: Leased, Event: ev}, nil
	}
	// The lease expired: take it over, pinned on its token so that only
	// one consumer does, and count the run that never finished.
	takeover := bson.D{
		{Key: event.FieldID, Value: r.ID},
		{Key: event.FieldLeaseToken, Value: pinned(ev.Lease.Token, int64(0), ev.Lease.Token == 0)},
		{Key: "$and", Value: bson.A{s.ofType(r.Type), runnable(r.Now.Add(r.Early))}},
	}
	set := bson.D{{Key: event.FieldLease, Value: leaseDoc(lease)}, {Key: event.FieldCrashes, Value: ev.Crashes + 1}}
	doc, err = s.events.FindOneAndUpdate(ctx, takeover, bson.D{{Key: "$set", Value: set}})
	if errors.Is(err, store.ErrNotFound) {
		return Claim{Outcome: Leased, Event: ev}, nil // another consumer took it over first
	}
	if err != nil {
		return Claim{}, wrap("taking over an expired lease", err)
	}
	return s.claimed(doc, lease)
}

func (s *Store) claimed(doc bson.Raw, lease event.Lease) (Claim, error) {
	ev, err := s.Parse(doc)
	if err != nil {
		return Claim{Outcome: Invalid, Event: ev, Lease: lease, Err: err}, nil
	}
	return Claim{Outcome: Claimed, Event: ev, Doc: doc, Lease: lease}, nil
}

func leaseDoc(l event.Lease) bson.D {
	return bson.D{{Key: "owner", Value: l.Owner}, {Key: "token", Value: l.Token}, {Key: "until", Value: l.Until}}
}

// ofType selects events of the handler's type; documents without one are
// of the schema's default type.
func (s *Store) ofType(typ string) bson.D {
	if typ != "" && typ == s.opts.Schema.DefaultType {
		return bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: event.FieldType, Value: typ}},
			bson.D{{Key: event.FieldType, Value: bson.D{{Key: "$exists", Value: false}}}},
		}}}
	}
	return bson.D{{Key: event.FieldType, Value: typ}}
}

// runnable selects the events due at the given time (event.Event.Due):
// failed ones whose nextAttemptAt passed or is missing (or not a date), and
// new ones, except those never run (version 0) whose nextAttemptAt is
// still ahead: a delayed first run.
func runnable(due time.Time) bson.D {
	dueBy := bson.A{
		bson.D{{Key: event.FieldNextAttemptAt, Value: bson.D{{Key: "$lte", Value: due}}}},
		bson.D{{Key: event.FieldNextAttemptAt, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "date"}}}}}},
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{
			{Key: event.FieldState, Value: bson.D{{Key: "$in", Value: bson.A{stateValue(event.StateNew), nil}}}},
			{Key: "$or", Value: append(dueBy[:2:2], bson.D{{Key: event.FieldVersion, Value: bson.D{{Key: "$gt", Value: int64(0)}}}})},
		},
		bson.D{
			{Key: event.FieldState, Value: stateValue(event.StateFailed)},
			{Key: "$or", Value: dueBy},
		},
	}}}
}

// unleasedOr selects events no lease holds, whose bookkeeping field can
// take one (it is absent, or a document), and events whose lease holds
// token: the caller's own claim, applied by a try whose answer was lost.
func unleasedOr(token int64) bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: event.FieldRetrigger, Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{
			{Key: event.FieldRetrigger, Value: bson.D{{Key: "$type", Value: "object"}}},
			{Key: event.FieldLease, Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "object"}}}}},
		},
		bson.D{{Key: event.FieldLeaseToken, Value: token}},
	}}}
}

// byLease selects the event only while the lease is the caller's.
func byLease(c *Claim) bson.D {
	return bson.D{{Key: event.FieldID, Value: c.Event.ID}, {Key: event.FieldLeaseToken, Value: c.Lease.Token}}
}

// RenewLease extends a held lease to until. ErrLeaseLost: it is no longer
// the caller's.
func (s *Store) RenewLease(ctx context.Context, c *Claim, until time.Time) error {
	n, err := s.events.UpdateOne(ctx, byLease(c), bson.D{{Key: "$set", Value: bson.D{{Key: event.FieldLeaseUntil, Value: until}}}}, false)
	if err != nil {
		return wrap("renewing a lease", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	c.Lease.Until = until
	return nil
}

// Release gives the lease back without recording an outcome, after a
// transition found the event changed: the change the release makes lets the
// producer route the event as it now is.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	_, err := s.events.UpdateOne(ctx, byLease(c), bson.D{{Key: "$unset", Value: bson.D{
		{Key: event.FieldLease, Value: ""}, {Key: event.FieldCrashes, Value: ""}, {Key: event.FieldParkedAt, Value: ""}}}}, false)
	return wrap("releasing a lease", err)
}

// Abandon gives back a lease that no run used to completion: a claim
// whose answer came too late or not at all (the caller never started the
// handler), or a run whose outcome could not be written. It removes the
// lease if it is still this claim's and leaves the crash count as it is:
// an abandoned claim is not a crash, and it does not forget the crashes
// before it. It is safe whether or not the claim was ever applied.
func (s *Store) Abandon(ctx context.Context, c *Claim) error {
	_, err := s.events.UpdateOne(ctx, byLease(c), bson.D{{Key: "$unset", Value: bson.D{{Key: event.FieldLease, Value: ""}}}}, false)
	return wrap("abandoning a lease", err)
}

// Transition is the outcome of a run, written by Complete.
type Transition struct {
	To  event.State // success, failed or error
	At  time.Time
	Run event.Attempt // the history entry of the run
	// When To is failed or error:
	Attempts  int64     // failed executions including this one
	NextAt    time.Time // failed: when it is due again
	LastError event.LastError
	Reason    event.Reason // error: why
	// Key and Seq stamp an event of a keyed type (package flow) with its
	// key's hash and its place in the key's order, so that the later
	// events of its key find it while it is unfinished. "": not keyed.
	Key string
	Seq int64
}

// Complete records the outcome of a claimed run and releases the lease, in
// one update conditional on the lease and on the version and state the
// event was claimed at. ErrStale: the event changed meanwhile (the
// application or an operator edited its state or version, or the lease
// expired and another consumer took the event over), and nothing was
// written.
func (s *Store) Complete(ctx context.Context, c *Claim, t Transition) error {
	n, err := s.events.UpdateOne(ctx, completeFilter(c), s.completeUpdate(&c.Event, t), false)
	if err != nil {
		return wrap("writing a transition", err)
	}
	if n == 0 {
		return ErrStale
	}
	return nil
}

// Recorded says whether the outcome t of the run c is what the event
// holds: whether a Complete whose answer was lost was applied after all,
// when a later try of it found nothing to update (ErrStale). It looks for
// the run's history entry (its start, replica and outcome) in the event,
// or in its archive (the event may have moved on and been archived
// since); with the history off, for the version and update time the
// transition wrote. A transition the event has since moved past is still
// found by its history entry, while the history keeps it.
func (s *Store) Recorded(ctx context.Context, c *Claim, t Transition) (bool, error) {
	for _, coll := range []store.Collection{s.events, s.errs} {
		doc, err := coll.FindOne(ctx, byID(c.Event.ID))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, wrap("reading an event to check its outcome", err)
		}
		ev, err := s.Parse(doc)
		if err != nil {
			return false, nil // not a document our transition wrote
		}
		if s.opts.History < 0 {
			return ev.Version == c.Event.Version+1 && ev.UpdatedAt.Equal(t.At.Truncate(time.Millisecond)), nil
		}
		for _, a := range ev.History {
			if a.At.Equal(t.Run.At.Truncate(time.Millisecond)) && a.Replica == t.Run.Replica && a.Outcome == t.Run.Outcome && a.Number == t.Run.Number {
				return true, nil
			}
		}
	}
	return false, nil
}

// history returns the event's history with entry appended, cut to the
// configured length; nil when histories are off.
func (s *Store) history(old []event.Attempt, entry event.Attempt) bson.A {
	if s.opts.History < 0 {
		return nil
	}
	all := s.kept(old, entry)
	out := make(bson.A, len(all))
	for i, a := range all {
		out[i] = attemptDoc(a)
	}
	return out
}

// kept is the history with entry appended, cut to the configured length.
func (s *Store) kept(old []event.Attempt, entry event.Attempt) []event.Attempt {
	all := append(old[:len(old):len(old)], entry)
	if len(all) > s.opts.History {
		all = all[len(all)-s.opts.History:]
	}
	return all
}

// maxHistoryError bounds the error text an entry of the history keeps.
const maxHistoryError = 512

func attemptDoc(a event.Attempt) bson.D {
	d := bson.D{{Key: event.HistoryAt, Value: a.At}, {Key: event.HistoryOutcome, Value: a.Outcome}}
	if a.Took > 0 {
		d = append(d, bson.E{Key: event.HistoryTookMs, Value: a.Took.Milliseconds()})
	}
	if a.Number > 0 {
		d = append(d, bson.E{Key: event.HistoryNumber, Value: a.Number})
	}
	if a.Error != "" {
		d = append(d, bson.E{Key: event.HistoryError, Value: truncate(a.Error, maxHistoryError)})
	}
	if a.Replica != "" {
		d = append(d, bson.E{Key: event.HistoryReplica, Value: a.Replica})
	}
	if a.TraceID != "" {
		d = append(d, bson.E{Key: event.HistoryTraceID, Value: a.TraceID}, bson.E{Key: event.HistorySpanID, Value: a.SpanID})
	}
	return d
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
