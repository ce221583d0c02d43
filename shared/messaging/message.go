package messaging

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// Headers of retrigger's messages besides Nats-Msg-Id. A message is a
// reference to an event document: consumers read the event from MongoDB,
// which decides, and never decode the body.
const (
	// HeaderID is the event's _id, lossless whatever its BSON type
	// (event.EncodeID).
	HeaderID = "Retrigger-Id"
	// HeaderVersion is the event's version when the message was derived.
	HeaderVersion = "Retrigger-Version"
	// HeaderReason carries why the producer sent an event straight to the
	// dead-letter stream (a malformed document).
	HeaderReason = "Retrigger-Reason"
)

// Ref is what a consumer needs from a message to find its event.
type Ref struct {
	ID      bson.RawValue
	Version int64  // as derived; the event may have moved on since
	Reason  string // on a dead letter: why the producer rejected the event
}

// ErrNotARef: a message without retrigger's reference headers.
var ErrNotARef = errors.New("not a retrigger message: no " + HeaderID + " header")

// ReadRef reads the event reference from a message's headers.
func ReadRef(h nats.Header) (Ref, error) {
	enc := h.Get(HeaderID)
	if enc == "" {
		return Ref{}, ErrNotARef
	}
	id, err := event.DecodeID(enc)
	if err != nil {
		return Ref{}, err
	}
	r := Ref{ID: id, Reason: h.Get(HeaderReason)}
	if v := h.Get(HeaderVersion); v != "" {
		if r.Version, err = strconv.ParseInt(v, 10, 64); err != nil {
			return Ref{}, fmt.Errorf("reading %s: %w", HeaderVersion, err)
		}
	}
	return r, nil
}

// NewMsg builds a message referring to an event: its subject, its
// deduplication id, the reference headers, and body, a rendering of the
// event for people (Body, or StubBody when the document is too large).
func NewMsg(subject, msgID string, id bson.RawValue, version int64, body []byte) *nats.Msg {
	return newMsg(subject, append(make([]byte, 0, len(msgID)+64), msgID...), id, version, body)
}

// NewStampedMsg is NewMsg(subject, MsgID(id, st.String()), id, version,
// body), the producer's, with its header values in one allocation.
func NewStampedMsg(subject string, id bson.RawValue, st Stamp, version int64, body []byte) *nats.Msg {
	var buf [192]byte // most ids, stamps and versions fit: no allocation but the string's
	return newMsg(subject, st.append(append(event.AppendKey(buf[:0], id), '@')), id, version, body)
}

// newMsg completes the message whose Nats-Msg-Id is in b.
func newMsg(subject string, b []byte, id bson.RawValue, version int64, body []byte) *nats.Msg {
	i := len(b)
	b = event.AppendEncodedID(b, id)
	j := len(b)
	all := string(strconv.AppendInt(b, version, 10)) // one allocation for the three values
	v := [...]string{all[:i], all[i:j], all[j:]}     // and one for their slices
	return &nats.Msg{Subject: subject, Data: body, Header: nats.Header{
		nats.MsgIdHdr: v[0:1:1],
		HeaderID:      v[1:2:2],
		HeaderVersion: v[2:3:3],
	}}
}

// MsgID is the Nats-Msg-Id of a message: the event's key and a stamp that
// names what the message was derived from (a change, a due time). The same
// derivation gives the same id, so JetStream drops a republish of it inside
// its duplicate window.
func MsgID(id bson.RawValue, stamp string) string { return event.Key(id) + "@" + stamp }

// Stamp names what a message was derived from, for its MsgID: Text when
// set, else the change at cluster time Change (ChangeStamp); Prefix comes
// first.
type Stamp struct {
	Prefix string
	Text   string
	Change bson.Timestamp
}

// String is the stamp as MsgID takes it.
func (s Stamp) String() string { return string(s.append(nil)) }

func (s Stamp) append(b []byte) []byte {
	b = append(b, s.Prefix...)
	if s.Text != "" {
		return append(b, s.Text...)
	}
	return appendChangeStamp(b, s.Change)
}

func errRender(err error) error { return fmt.Errorf("rendering event as JSON: %w", err) }

// StubBody stands in for an event too large to show in a message: what it
// is and where to read it.
func StubBody(ev *event.Event, size int) []byte {
	b, _ := bson.MarshalExtJSON(bson.D{
		{Key: "_id", Value: event.IDString(ev.ID)},
		{Key: "type", Value: ev.Type},
		{Key: "version", Value: ev.Version},
		{Key: "note", Value: fmt.Sprintf("the event document (%d bytes) is too large to show here: read it from MongoDB", size)},
	}, false, false)
	return b
}

// ChangeStamp names a change by its cluster time, for MsgID: the same
// change read again (after a restart) gives the same message id, and every
// other change, a re-insert of an archived event included, a new one.
func ChangeStamp(ts bson.Timestamp) string { return string(appendChangeStamp(nil, ts)) }

func appendChangeStamp(b []byte, ts bson.Timestamp) []byte {
	b = strconv.AppendUint(append(b, 'c'), uint64(ts.T), 10)
	return strconv.AppendUint(append(b, '.'), uint64(ts.I), 10)
}

// CreationStamp names a new event the sweeper publishes (the relay did not,
// or not yet: inserted before its stream opened, a message lost, no change
// streams) by its createdAt, for MsgID, in ChangeOrder's terms: second
// T-1 and millisecond I, so that it orders by its creation among its
// kind, and before every change of the same second or later (what the
// stream delivered after it). "" for a time outside a cluster time's
// range.
func CreationStamp(createdAt time.Time) string {
	sec := createdAt.Unix() - 1
	if sec < 0 || sec > math.MaxUint32 {
		return ""
	}
	return "o" + strconv.FormatInt(sec, 10) + "." + strconv.Itoa(createdAt.Nanosecond()/int(time.Millisecond))
}

// ChangeOrder is the place in commit order of the change a message was
// derived from, read from its Nats-Msg-Id: the change's cluster time as
// T<<32 | I, which grows with every change, or a sweeper's CreationStamp.
// 0: neither (the scheduler's messages, the sweeper's of events without a
// creation time). Flow control orders the events of a key by it.
func ChangeOrder(h nats.Header) int64 {
	id := h.Get(nats.MsgIdHdr)
	at := -1
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '@' {
			at = i
			break
		}
	}
	if at < 0 || at+1 >= len(id) || (id[at+1] != 'c' && id[at+1] != 'o') {
		return 0
	}
	t, i, ok := cutByte(id[at+2:], '.')
	if !ok {
		return 0
	}
	tv, err1 := strconv.ParseUint(t, 10, 32)
	iv, err2 := strconv.ParseUint(i, 10, 32)
	if err1 != nil || err2 != nil {
		return 0
	}
	return int64(tv<<32 | iv)
}

func cutByte(s string, b byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
