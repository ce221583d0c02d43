package eventstore

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/retrigger/retrigger/shared/event"
)

// rawDoc builds a BSON document into one buffer. The writes every run
// makes (the claim, the transition) build their filters and updates with
// it instead of a bson.D: a bson.D boxes each value and nests a slice per
// level, some fifty allocations per run, and then the driver marshals it
// by reflection; a rawDoc is one buffer the driver sends as it is. Each
// such document has a bson.D twin, the readable form, and a test that the
// two marshal to the same bytes.
type rawDoc struct {
	buf    []byte
	starts [12]int32 // open documents and arrays (the claim filter nests 9 deep)
	depth  int
}

func newRawDoc(size int) *rawDoc {
	d := &rawDoc{}
	d.starts[0], d.buf = bsoncore.AppendDocumentStart(make([]byte, 0, size))
	d.depth = 1
	return d
}

// doc opens a document under key; end closes it.
func (d *rawDoc) doc(key string) *rawDoc {
	d.starts[d.depth], d.buf = bsoncore.AppendDocumentElementStart(d.buf, key)
	d.depth++
	return d
}

// array opens an array under key; its elements are keyed "0", "1", ...
func (d *rawDoc) array(key string) *rawDoc {
	d.starts[d.depth], d.buf = bsoncore.AppendArrayElementStart(d.buf, key)
	d.depth++
	return d
}

func (d *rawDoc) end() *rawDoc {
	d.depth--
	d.buf, _ = bsoncore.AppendDocumentEnd(d.buf, d.starts[d.depth])
	return d
}

func (d *rawDoc) str(key, v string) *rawDoc {
	d.buf = bsoncore.AppendStringElement(d.buf, key, v)
	return d
}

func (d *rawDoc) int32(key string, v int32) *rawDoc {
	d.buf = bsoncore.AppendInt32Element(d.buf, key, v)
	return d
}

func (d *rawDoc) int64(key string, v int64) *rawDoc {
	d.buf = bsoncore.AppendInt64Element(d.buf, key, v)
	return d
}

func (d *rawDoc) bool(key string, v bool) *rawDoc {
	d.buf = bsoncore.AppendBooleanElement(d.buf, key, v)
	return d
}

// time writes t as a BSON date (milliseconds), as the driver does.
func (d *rawDoc) time(key string, t time.Time) *rawDoc {
	d.buf = bsoncore.AppendDateTimeElement(d.buf, key, int64(bson.NewDateTimeFromTime(t)))
	return d
}

func (d *rawDoc) null(key string) *rawDoc {
	d.buf = bsoncore.AppendNullElement(d.buf, key)
	return d
}

func (d *rawDoc) value(key string, v bson.RawValue) *rawDoc {
	d.buf = bsoncore.AppendValueElement(d.buf, key, bsoncore.Value{Type: bsoncore.Type(v.Type), Data: v.Value})
	return d
}

// done closes the document and returns it.
func (d *rawDoc) done() bson.Raw {
	for d.depth > 0 {
		d.end()
	}
	return d.buf
}

// index is the key of an array's ith element.
func index(i int) string {
	if i < len(indexes) {
		return indexes[i]
	}
	return itoa(i)
}

var indexes = func() []string {
	out := make([]string, 64)
	for i := range out {
		out[i] = itoa(i)
	}
	return out
}()

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}

// claimFilter selects the event of r while it is of the handler's type,
// runnable at r.Now+r.Early and unleased, or leased by this very claim:
//
//	{_id, $and: [ofType(r.Type), runnable(r.Now+r.Early), unleasedOr(r.Token)]}
func (s *Store) claimFilter(r ClaimRequest) bson.Raw {
	d := newRawDoc(384)
	d.value(event.FieldID, r.ID).array("$and")
	if r.Type != "" && r.Type == s.opts.Schema.DefaultType {
		d.doc("0").array("$or").
			doc("0").str(event.FieldType, r.Type).end().
			doc("1").doc(event.FieldType).bool("$exists", false).end().end().
			end().end()
	} else {
		d.doc("0").str(event.FieldType, r.Type).end()
	}
	due := r.Now.Add(r.Early)
	d.doc("1").array("$or").
		doc("0").doc(event.FieldState).array("$in").int32("0", stateValue(event.StateNew)).null("1").end().end().
		array("$or").
		doc("0").doc(event.FieldNextAttemptAt).time("$lte", due).end().end().
		doc("1").doc(event.FieldNextAttemptAt).doc("$not").str("$type", "date").end().end().end().
		doc("2").doc(event.FieldVersion).int64("$gt", 0).end().end().
		end().end().
		doc("1").int32(event.FieldState, stateValue(event.StateFailed)).array("$or").
		doc("0").doc(event.FieldNextAttemptAt).time("$lte", due).end().end().
		doc("1").doc(event.FieldNextAttemptAt).doc("$not").str("$type", "date").end().end().end().
		end().end().
		end().end()
	d.doc("2").array("$or").
		doc("0").doc(event.FieldRetrigger).bool("$exists", false).end().end().
		doc("1").doc(event.FieldRetrigger).str("$type", "object").end().
		doc(event.FieldLease).doc("$not").str("$type", "object").end().end().end().
		doc("2").int64(event.FieldLeaseToken, r.Token).end()
	return d.done()
}

// claimUpdate takes the lease: {$set: {retrigger.lease: lease}}.
func claimUpdate(l event.Lease) bson.Raw {
	return newRawDoc(128).doc("$set").doc(event.FieldLease).
		str("owner", l.Owner).int64("token", l.Token).time("until", l.Until).done()
}

// completeFilter pins the claimed event at its version, state and lease:
// current(ev) and the lease token.
func completeFilter(c *Claim) bson.Raw {
	ev := &c.Event
	d := newRawDoc(128).value(event.FieldID, ev.ID)
	if ev.Version == 0 {
		d.doc(event.FieldVersion).array("$in").int64("0", 0).null("1").end().end()
	} else {
		d.int64(event.FieldVersion, ev.Version)
	}
	if ev.State == event.StateNew {
		d.doc(event.FieldState).array("$in").int32("0", stateValue(event.StateNew)).null("1").end().end()
	} else {
		d.int32(event.FieldState, stateValue(ev.State))
	}
	return d.int64(event.FieldLeaseToken, c.Lease.Token).done()
}

// completeUpdate writes transition t of ev: the state, the next version,
// the time; for a failure the attempts, the last error and the due time
// or the reason; the history; and it removes the lease.
func (s *Store) completeUpdate(ev *event.Event, t Transition) bson.Raw {
	d := newRawDoc(512 + 160*min(len(ev.History)+1, max(s.opts.History, 0)))
	d.doc("$set").int32(event.FieldState, stateValue(t.To)).int64(event.FieldVersion, ev.Version+1).time(event.FieldUpdatedAt, t.At)
	if t.To != event.StateSuccess {
		d.int64(s.opts.Schema.Attempts(), t.Attempts).doc(event.FieldLastError).
			str("message", t.LastError.Message).bool("retryable", t.LastError.Retryable).time("at", t.LastError.At).end()
	}
	switch t.To {
	case event.StateFailed:
		d.time(event.FieldNextAttemptAt, ceilMillisecond(t.NextAt))
	case event.StateError:
		d.str(event.FieldReason, string(t.Reason))
	}
	if s.opts.History >= 0 {
		d.array(event.FieldHistory)
		for i, a := range s.kept(ev.History, t.Run) {
			appendAttempt(d, index(i), a)
		}
		d.end()
	}
	if t.Key != "" {
		d.str(event.FieldKey, t.Key).int64(event.FieldSeq, KeySeq(ev, t.Seq))
	}
	d.end().doc("$unset").str(event.FieldLease, "").str(event.FieldCrashes, "")
	if t.To != event.StateFailed {
		d.str(event.FieldNextAttemptAt, "")
	}
	if !ev.ParkedAt.IsZero() {
		d.str(event.FieldParkedAt, "")
	}
	return d.done()
}

// appendAttempt writes a history entry, as attemptDoc.
func appendAttempt(d *rawDoc, key string, a event.Attempt) {
	d.doc(key).time(event.HistoryAt, a.At).str(event.HistoryOutcome, a.Outcome)
	if a.Took > 0 {
		d.int64(event.HistoryTookMs, a.Took.Milliseconds())
	}
	if a.Number > 0 {
		d.int64(event.HistoryNumber, a.Number)
	}
	if a.Error != "" {
		d.str(event.HistoryError, truncate(a.Error, maxHistoryError))
	}
	if a.Replica != "" {
		d.str(event.HistoryReplica, a.Replica)
	}
	if a.TraceID != "" {
		d.str(event.HistoryTraceID, a.TraceID).str(event.HistorySpanID, a.SpanID)
	}
	d.end()
}
