package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// The documents of flow control (package flow decides what they mean; this
// file only reads and writes them). They live in the flow collection
// (Options.Flow, default "retrigger_flow"), named by kind and event type;
// a type never holds a '.', so the names cannot collide:
//
//	type.<type>             FlowState: the breaker, its window and the pause
//	rate.<type>             a rate limit's theoretical arrival time (GCRA)
//	slot.<type>             the holders of the type's concurrency slots (recovery waves)
//	slot.<type>.<key hash>  the holders of one key's concurrency slots
//
// Waiting for a key needs no document of its own: the waiting event is
// marked in the events collection (FieldParkedAt).

// FlowState is the flow-control document of one event type, shared by every
// replica that runs it. Rev is its revision: SaveFlow writes a new state
// only over the revision it was computed from.
type FlowState struct {
	Type    string
	Rev     int64 // 0: no document yet
	Breaker Breaker
	Window  Window
	Pause   *Pause // nil: not paused
	// Limits describes the limits and keys the replicas run the type with,
	// as the last replica to start printed them, for operators.
	Limits    string
	LimitsBy  string
	UpdatedAt time.Time
}

// Breaker is a type's circuit breaker.
type Breaker struct {
	State     string    // "" or "closed", "open", "recovering"
	Since     time.Time // when it entered State
	Trips     int64     // how often it tripped
	Reason    string    // why it last tripped
	NextProbe time.Time // open: when the next probe may start
	Interval  time.Duration
	Probe     *event.Lease // open: the probe running now, if any
}

// Window counts a type's recent runs in buckets: Runs[i] and Fails[i] are
// those of bucket Head-len+1+i, each Width long (bucket n covers
// [n*Width, (n+1)*Width) since the Unix epoch).
type Window struct {
	Head  int64
	Width time.Duration
	Runs  []int64
	Fails []int64
}

// Pause holds a type by hand (an operator) or by a partner's Retry-After.
type Pause struct {
	By     string
	At     time.Time
	Until  time.Time // zero: until resumed
	Reason string
	Source string // "operator" or "retry-after"
}

// FlowID names the flow document of kind for typ, and parts after it.
func FlowID(kind, typ string, parts ...string) string {
	id := kind + "." + typ
	for _, p := range parts {
		id += "." + p
	}
	return id
}

// LoadFlows returns the flow states of types, or of every type when types
// is nil; a type without a document is missing from the result.
func (s *Store) LoadFlows(ctx context.Context, types []string) ([]FlowState, error) {
	filter := bson.D{{Key: "kind", Value: "type"}}
	if types != nil {
		ids := make(bson.A, len(types))
		for i, t := range types {
			ids[i] = FlowID("type", t)
		}
		filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	}
	docs, err := s.flow.Find(ctx, filter, store.FindOptions{Sort: bson.D{{Key: "_id", Value: 1}}})
	if err != nil {
		return nil, wrap("reading flow states", err)
	}
	out := make([]FlowState, 0, len(docs))
	for _, d := range docs {
		out = append(out, parseFlow(d))
	}
	return out, nil
}

// SaveFlow writes f over revision f.Rev (0: the document must not exist
// yet) as revision f.Rev+1. ErrStale: another writer got there first, and
// nothing was written; read again and decide again. A write whose answer
// was lost is read back: each write carries a token of its own, so one
// that was applied reports success, and its counts are not written twice.
func (s *Store) SaveFlow(ctx context.Context, f FlowState) error {
	id, token := FlowID("type", f.Type), rand.Int64()
	doc := append(flowDoc(f), bson.E{Key: "write", Value: token})
	var err error
	if f.Rev == 0 {
		err = s.flow.InsertOne(ctx, append(bson.D{{Key: "_id", Value: id}}, doc...))
		if errors.Is(err, store.ErrDuplicate) {
			return ErrStale
		}
	} else {
		var n int64
		n, err = s.flow.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "rev", Value: f.Rev}}, doc, false)
		if err == nil && n == 0 {
			return ErrStale
		}
	}
	if err != nil && !s.wrote(ctx, id, token) {
		return wrap("writing a flow state", err)
	}
	return nil
}

// wrote reports whether the flow document id holds the write token: a
// write that failed was applied after all (its answer was lost).
func (s *Store) wrote(ctx context.Context, id string, token int64) bool {
	doc, err := s.flow.FindOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return false
	}
	got, ok := doc.Lookup("write").AsInt64OK()
	return ok && got == token
}

func flowDoc(f FlowState) bson.D {
	b := f.Breaker
	breaker := bson.D{{Key: "state", Value: b.State}, {Key: "since", Value: b.Since}, {Key: "trips", Value: b.Trips}, {Key: "reason", Value: b.Reason},
		{Key: "nextProbe", Value: b.NextProbe}, {Key: "intervalMs", Value: b.Interval.Milliseconds()}}
	if b.Probe != nil {
		breaker = append(breaker, bson.E{Key: "probe", Value: leaseDoc(*b.Probe)})
	}
	w := f.Window
	window := bson.D{{Key: "head", Value: w.Head}, {Key: "widthMs", Value: w.Width.Milliseconds()}, {Key: "runs", Value: int64s(w.Runs)}, {Key: "fails", Value: int64s(w.Fails)}}
	doc := bson.D{{Key: "kind", Value: "type"}, {Key: "type", Value: f.Type}, {Key: "rev", Value: f.Rev + 1},
		{Key: "breaker", Value: breaker}, {Key: "window", Value: window}}
	if p := f.Pause; p != nil {
		pause := bson.D{{Key: "by", Value: p.By}, {Key: "at", Value: p.At}, {Key: "reason", Value: p.Reason}, {Key: "source", Value: p.Source}}
		if !p.Until.IsZero() {
			pause = append(pause, bson.E{Key: "until", Value: p.Until})
		}
		doc = append(doc, bson.E{Key: "pause", Value: pause})
	}
	return append(doc, bson.E{Key: "limits", Value: f.Limits}, bson.E{Key: "limitsBy", Value: f.LimitsBy}, bson.E{Key: "updatedAt", Value: f.UpdatedAt})
}

func int64s(v []int64) bson.A {
	out := make(bson.A, len(v))
	for i, n := range v {
		out[i] = n
	}
	return out
}

// parseFlow reads a flow document leniently: a part of the wrong type reads
// as missing (a closed breaker, no pause), so a damaged document never
// stops a type.
func parseFlow(d bson.Raw) FlowState {
	var f FlowState
	f.Type, _ = d.Lookup("type").StringValueOK()
	f.Rev, _ = d.Lookup("rev").AsInt64OK()
	if b, ok := d.Lookup("breaker").DocumentOK(); ok {
		f.Breaker.State, _ = b.Lookup("state").StringValueOK()
		f.Breaker.Since = dateOf(b, "since")
		f.Breaker.Trips, _ = b.Lookup("trips").AsInt64OK()
		f.Breaker.Reason, _ = b.Lookup("reason").StringValueOK()
		f.Breaker.NextProbe = dateOf(b, "nextProbe")
		ms, _ := b.Lookup("intervalMs").AsInt64OK()
		f.Breaker.Interval = time.Duration(ms) * time.Millisecond
		if p, ok := b.Lookup("probe").DocumentOK(); ok {
			l := &event.Lease{Until: dateOf(p, "until")}
			l.Owner, _ = p.Lookup("owner").StringValueOK()
			l.Token, _ = p.Lookup("token").AsInt64OK()
			f.Breaker.Probe = l
		}
	}
	if w, ok := d.Lookup("window").DocumentOK(); ok {
		f.Window.Head, _ = w.Lookup("head").AsInt64OK()
		ms, _ := w.Lookup("widthMs").AsInt64OK()
		f.Window.Width = time.Duration(ms) * time.Millisecond
		f.Window.Runs = readInt64s(w.Lookup("runs"))
		f.Window.Fails = readInt64s(w.Lookup("fails"))
		if len(f.Window.Runs) != len(f.Window.Fails) {
			f.Window = Window{}
		}
	}
	if p, ok := d.Lookup("pause").DocumentOK(); ok {
		pause := &Pause{At: dateOf(p, "at"), Until: dateOf(p, "until")}
		pause.By, _ = p.Lookup("by").StringValueOK()
		pause.Reason, _ = p.Lookup("reason").StringValueOK()
		pause.Source, _ = p.Lookup("source").StringValueOK()
		f.Pause = pause
	}
	f.Limits, _ = d.Lookup("limits").StringValueOK()
	f.LimitsBy, _ = d.Lookup("limitsBy").StringValueOK()
	f.UpdatedAt = dateOf(d, "updatedAt")
	return f
}

func readInt64s(v bson.RawValue) []int64 {
	a, ok := v.ArrayOK()
	if !ok {
		return nil
	}
	vals, err := a.Values()
	if err != nil {
		return nil
	}
	out := make([]int64, len(vals))
	for i, v := range vals {
		out[i], _ = v.AsInt64OK()
	}
	return out
}

// Slot is one holder of a concurrency slot: the run holding it, until it
// ends or Until passes (its replica died).
type Slot struct {
	Owner string
	Token int64
	Until time.Time
}

// ErrContended: other writers kept changing the document between this
// writer's read and its write; nothing was decided. Look again soon.
var ErrContended = errors.New("eventstore: other replicas kept writing the same flow document")

// AcquireSlot takes one of the limit slots of name for h, and reports
// false when all are held by live holders (whose Until has not passed:
// one whose replica died makes room after it). The slots are one document
// written over its revision: a read and a write when a slot is free, more
// when other replicas write at the same time (each lost race is another
// writer's progress; ErrContended after many). It uses no array update
// operator, so MongoDB-compatible servers without them run it too.
func (s *Store) AcquireSlot(ctx context.Context, name string, limit int, h Slot, now time.Time) (bool, error) {
	for try := 0; try < 20; try++ {
		rev, holders, err := s.slots(ctx, name)
		if err != nil {
			return false, err
		}
		live := holders[:0]
		for _, o := range holders {
			if o.Until.After(now) {
				live = append(live, o)
			}
		}
		if len(live) >= limit {
			return false, nil
		}
		ok, err := s.writeSlots(ctx, name, rev, append(live, h))
		if err != nil {
			// Its answer lost, the write may be applied: a slot held by
			// no run would shut the key out until h.Until.
			if _, now, rerr := s.slots(ctx, name); rerr == nil && holding(now, h.Token) {
				return true, nil
			}
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, ErrContended
}

// holding reports whether token is among holders.
func holding(holders []Slot, token int64) bool {
	for _, h := range holders {
		if h.Token == token {
			return true
		}
	}
	return false
}

// ReapSlots drops the holders past their Until from the key slots of typ
// (slot.<typ>.<key>: their replica died, or took the slot without
// learning it had) and returns the keys that got room, once per holder
// dropped, for their next events to be woken: an event that waits for its
// key is woken by a release, and a holder that died never releases. One
// query, and a write per key with such a holder.
func (s *Store) ReapSlots(ctx context.Context, typ string, now time.Time) ([]string, error) {
	prefix := FlowID("slot", typ) + "."
	docs, err := s.flow.Find(ctx, bson.D{
		{Key: "_id", Value: bson.D{{Key: "$gt", Value: prefix}, {Key: "$lt", Value: FlowID("slot", typ) + "/"}}}, // '/' follows '.'
		{Key: "holders.until", Value: bson.D{{Key: "$lte", Value: now}}},
	}, store.FindOptions{})
	if err != nil {
		return nil, wrap("reading expired concurrency slots", err)
	}
	var freed []string
	for _, d := range docs {
		name, _ := d.Lookup("_id").StringValueOK()
		for try := 0; try < 20; try++ {
			rev, holders, err := s.slots(ctx, name)
			if err != nil {
				return freed, err
			}
			live := holders[:0]
			for _, h := range holders {
				if h.Until.After(now) {
					live = append(live, h)
				}
			}
			gone := len(holders) - len(live)
			if gone == 0 {
				break
			}
			ok, err := s.writeSlots(ctx, name, rev, live)
			if err != nil {
				return freed, err
			}
			if ok {
				for range gone {
					freed = append(freed, name[len(prefix):])
				}
				break
			}
		}
	}
	return freed, nil
}

// ReleaseSlot gives back the slot token holds, and deletes the document of
// name when no holder is left, so a key that goes quiet leaves nothing.
func (s *Store) ReleaseSlot(ctx context.Context, name string, token int64) error {
	for try := 0; try < 20; try++ {
		rev, holders, err := s.slots(ctx, name)
		if err != nil || rev == 0 {
			return err
		}
		rest := holders[:0]
		for _, o := range holders {
			if o.Token != token {
				rest = append(rest, o)
			}
		}
		if len(rest) == len(holders) {
			return nil // dropped as expired, or never taken
		}
		ok, err := s.writeSlots(ctx, name, rev, rest)
		if err != nil {
			if _, now, rerr := s.slots(ctx, name); rerr == nil && !holding(now, token) {
				return nil // applied, its answer lost
			}
			return err
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("releasing a concurrency slot (it ends with its run's bound): %w", ErrContended)
}

// slots reads the holders of name and the revision they are at (0: no
// document).
func (s *Store) slots(ctx context.Context, name string) (int64, []Slot, error) {
	doc, err := s.flow.FindOne(ctx, bson.D{{Key: "_id", Value: name}})
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, wrap("reading concurrency slots", err)
	}
	rev, _ := doc.Lookup("rev").AsInt64OK()
	var out []Slot
	if a, ok := doc.Lookup("holders").ArrayOK(); ok {
		vals, _ := a.Values()
		for _, v := range vals {
			d, ok := v.DocumentOK()
			if !ok {
				continue
			}
			h := Slot{Until: dateOf(d, "until")}
			h.Owner, _ = d.Lookup("owner").StringValueOK()
			h.Token, _ = d.Lookup("token").AsInt64OK()
			out = append(out, h)
		}
	}
	return max(rev, 1), out, nil
}

// writeSlots writes holders over revision rev (0: none yet); no holder
// left deletes the document. false: another writer got there first.
func (s *Store) writeSlots(ctx context.Context, name string, rev int64, holders []Slot) (bool, error) {
	list := make(bson.A, len(holders))
	for i, h := range holders {
		list[i] = bson.D{{Key: "owner", Value: h.Owner}, {Key: "token", Value: h.Token}, {Key: "until", Value: h.Until}}
	}
	doc := bson.D{{Key: "kind", Value: "slot"}, {Key: "rev", Value: rev + 1}, {Key: "holders", Value: list}}
	var (
		n   int64
		err error
	)
	switch {
	case rev == 0:
		err = s.flow.InsertOne(ctx, append(bson.D{{Key: "_id", Value: name}}, doc...))
		if errors.Is(err, store.ErrDuplicate) {
			return false, nil
		}
		n = 1
	case len(holders) == 0:
		n, err = s.flow.DeleteOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "rev", Value: rev}})
	default:
		n, err = s.flow.ReplaceOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "rev", Value: rev}}, doc, false)
	}
	if err != nil {
		return false, wrap("writing concurrency slots", err)
	}
	return n == 1, nil
}

// TakeRate reserves the next turn of the rate limit name, by the generic
// cell rate algorithm: each turn moves the theoretical arrival time (tat)
// on by interval, and a turn may start once it is no earlier than tat
// minus tolerance. It reports the time the reserved turn starts: now, or
// up to maxWait later (the caller waits until then). ok is false when the
// next free turn is further away than maxWait; the time is then when a
// reservation would be within it. Concurrent callers never share a turn;
// one conditional update when the limit is idle, two when busy, three
// when the caller must come back later.
func (s *Store) TakeRate(ctx context.Context, name string, now time.Time, interval, tolerance, maxWait time.Duration) (bool, time.Time, error) {
	t := now.UnixNano()
	id := bson.E{Key: "_id", Value: name}
	// Idle (tat in the past): the turn is now and tat becomes now+interval.
	_, err := s.flow.UpdateOne(ctx, bson.D{id, {Key: "tat", Value: bson.D{{Key: "$lt", Value: t}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "kind", Value: "rate"}, {Key: "tat", Value: t + int64(interval)}}}}, true)
	if err == nil {
		return true, now, nil
	}
	if !errors.Is(err, store.ErrDuplicate) {
		return false, time.Time{}, wrap("taking a rate limit's turn", err)
	}
	// Busy: the turn at tat-tolerance, if that is within maxWait.
	doc, err := s.flow.FindOneAndUpdate(ctx, bson.D{id, {Key: "tat", Value: bson.D{{Key: "$gte", Value: t}, {Key: "$lte", Value: t + int64(tolerance+maxWait)}}}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "tat", Value: int64(interval)}}}})
	if err == nil {
		tat, _ := doc.Lookup("tat").AsInt64OK()
		return true, time.Unix(0, max(t, tat-int64(interval)-int64(tolerance))), nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, time.Time{}, wrap("taking a rate limit's turn", err)
	}
	doc, err = s.flow.FindOne(ctx, bson.D{id})
	if err != nil {
		return false, time.Time{}, wrap("reading a rate limit", err)
	}
	tat, _ := doc.Lookup("tat").AsInt64OK()
	return false, time.Unix(0, tat-int64(tolerance+maxWait)), nil
}

// KeyQuery names an event's flow-control key.
type KeyQuery struct {
	Type  string
	ID    bson.RawValue // the event itself, never its own predecessor
	Path  string        // the key's field path in the event document
	Value bson.RawValue // the key's value there
	Key   string        // the value's normalised hash (event.Event.Key)
	Seq   int64         // the event's place in the key's order
}

// notDone selects events that are not finished: new or failed.
var notDone = bson.E{Key: event.FieldState, Value: bson.D{{Key: "$in", Value: bson.A{stateValue(event.StateNew), stateValue(event.StateFailed), nil}}}}

// EarlierOfKey returns an unfinished event of q's key that comes before
// q's event, if there is one: one stamped with a smaller Seq, or one not
// stamped yet that holds the same value (it has not been claimed yet, so
// its place is unknown: the caller waits for it to be placed). One query,
// served by the index on the key and its order where the backend has
// indexes; its conditions are ordered so that a scan (the embedded
// engine) rejects most documents at the first.
func (s *Store) EarlierOfKey(ctx context.Context, q KeyQuery) (Earlier, error) {
	filter := bson.D{
		{Key: "$or", Value: bson.A{
			bson.D{{Key: event.FieldKey, Value: q.Key}, {Key: event.FieldSeq, Value: bson.D{{Key: "$lt", Value: q.Seq}}}},
			bson.D{{Key: event.FieldKey, Value: bson.D{{Key: "$exists", Value: false}}}, {Key: q.Path, Value: q.Value}},
		}},
		{Key: event.FieldType, Value: q.Type},
		notDone,
		{Key: event.FieldID, Value: bson.D{{Key: "$ne", Value: q.ID}}},
	}
	doc, err := s.events.FindOne(ctx, filter)
	if errors.Is(err, store.ErrNotFound) {
		return Earlier{}, nil
	}
	if err != nil {
		return Earlier{}, wrap("looking for an earlier event of the key", err)
	}
	_, placed := doc.Lookup(splitPath(event.FieldKey)...).StringValueOK()
	return Earlier{Found: true, ID: doc.Lookup(event.FieldID), Placed: placed}, nil
}

// Earlier is what EarlierOfKey found.
type Earlier struct {
	Found  bool
	ID     bson.RawValue // the earlier event
	Placed bool          // it is stamped with its place in the key's order
}

// Park gives back the lease of a claimed event that must wait for its key
// and marks it parked, stamped with its key and order: the producer does
// not publish a parked event again (the change it sees is the park), so it
// waits out of NATS, at no cost, until WakeNext or the sweeper's stall
// brings it back. Its crash count stays: the park is no outcome.
// key is "" for an event held by its type (paused, breaker open, ...): it
// is parked unstamped, and its message, handed back, brings it back.
func (s *Store) Park(ctx context.Context, c *Claim, now time.Time, key string, seq int64) error {
	set := bson.D{{Key: event.FieldParkedAt, Value: now}}
	if key != "" {
		set = append(set, bson.E{Key: event.FieldKey, Value: key}, bson.E{Key: event.FieldSeq, Value: KeySeq(&c.Event, seq)})
	}
	update := bson.D{{Key: "$unset", Value: bson.D{{Key: event.FieldLease, Value: ""}}}, {Key: "$set", Value: set}}
	n, err := s.events.UpdateOne(ctx, byLease(c), update, false)
	if err != nil {
		return wrap("parking an event", err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// WakeNext brings back the parked event that comes next for key: with
// ordered, the unfinished event of the key first in its order (if that one
// is parked: one that is not has a message on its way); otherwise the one
// parked longest. It clears the mark and stamps wokenAt, a change the
// producer routes like any other (wokenAt makes its message new even for
// a failed event whose retry was published already), and reports whether
// it woke one. Two round trips.
func (s *Store) WakeNext(ctx context.Context, typ, key string, ordered bool, now time.Time) (bool, error) {
	filter := bson.D{{Key: event.FieldKey, Value: key}, {Key: event.FieldType, Value: typ}, notDone}
	sort := bson.D{{Key: event.FieldSeq, Value: 1}}
	if !ordered {
		filter = append(filter, bson.E{Key: event.FieldParkedAt, Value: bson.D{{Key: "$type", Value: "date"}}})
		sort = bson.D{{Key: event.FieldParkedAt, Value: 1}}
	}
	docs, err := s.events.Find(ctx, filter, store.FindOptions{Sort: sort, Limit: 1})
	if err != nil {
		return false, wrap("finding the next event of a key", err)
	}
	if len(docs) == 0 {
		return false, nil
	}
	id := docs[0].Lookup(event.FieldID)
	parkedAt, ok := docs[0].Lookup(splitPath(event.FieldParkedAt)...).DateTimeOK()
	if !ok {
		return false, nil
	}
	n, err := s.events.UpdateOne(ctx, bson.D{{Key: event.FieldID, Value: id}, {Key: event.FieldParkedAt, Value: bson.NewDateTimeFromTime(time.UnixMilli(parkedAt))}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: event.FieldParkedAt, Value: ""}}}, {Key: "$set", Value: bson.D{{Key: event.FieldWokenAt, Value: now}}}}, false)
	if err != nil {
		return false, wrap("waking the next event of a key", err)
	}
	return n == 1, nil
}

// KeySeq is the order an event of a keyed type is stamped with: the
// smallest it was ever given (seq, or its own stamp). The lease the writer
// holds makes the read-then-write safe.
func KeySeq(ev *event.Event, seq int64) int64 {
	if ev.Seq != 0 && ev.Seq < seq {
		return ev.Seq
	}
	return seq
}

// flowIndexes: keyed events by key and order (EarlierOfKey, WakeNext).
var flowIndexes = []store.Index{
	{Name: "retrigger_key_seq", Keys: bson.D{{Key: event.FieldKey, Value: 1}, {Key: event.FieldSeq, Value: 1}}, Sparse: true},
}

// CountParked counts the events waiting for their key (parked with one),
// per type, in one query. (An event its type holds is parked without a
// key, briefly: its message comes back.)
func (s *Store) CountParked(ctx context.Context) (map[string]int64, error) {
	groups, err := s.events.CountBy(ctx, bson.D{{Key: event.FieldParkedAt, Value: bson.D{{Key: "$type", Value: "date"}}},
		{Key: event.FieldKey, Value: bson.D{{Key: "$type", Value: "string"}}}}, event.FieldType)
	if err != nil {
		return nil, wrap("counting parked events by type", err)
	}
	out := make(map[string]int64, len(groups))
	for _, g := range groups {
		typ, _ := g.Values[0].StringValueOK()
		if g.Values[0].Type == bson.TypeNull {
			typ = s.opts.Schema.DefaultType
		}
		out[typ] += g.Count
	}
	return out, nil
}
