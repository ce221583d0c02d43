package event

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// MaxTypeLength bounds the type name, which is also a NATS subject token.
const MaxTypeLength = 128

// MaxCounter bounds version, attempts and maxAttempts: 2^53, the largest
// integer every client (JavaScript included) represents exactly. A version
// at the bound could not be incremented.
const MaxCounter = 1 << 53

// InvalidError says which field of an event document is wrong and why. The
// event still ends in the errors collection, with this as its reason.
type InvalidError struct {
	Field  string // the document field at fault; "" for the document as a whole
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "invalid event document: " + e.Reason
	}
	return fmt.Sprintf("invalid event field %q: %s", e.Field, e.Reason)
}

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err says an event document is malformed.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// Schema says how to read the documents of an events collection whose
// shape differs from retrigger's defaults, such as one written by a
// hand-built trigger. The zero value is retrigger's own shape.
type Schema struct {
	// AttemptsField names the counter of failed executions. Default
	// "attempts".
	AttemptsField string
	// DefaultType is the handler of documents that have no type. Empty:
	// such documents are invalid.
	DefaultType string
	// MaxSize bounds a document's encoded size in bytes. 0: no bound.
	MaxSize int
}

// Attempts returns the name of the attempts counter.
func (s Schema) Attempts() string {
	if s.AttemptsField == "" {
		return FieldAttempts
	}
	return s.AttemptsField
}

// reserved are the names an attempts field must not take.
var reserved = []string{FieldID, FieldType, FieldPayload, FieldState, FieldMaxAttempts, FieldNextAttemptAt,
	FieldLastError, FieldVersion, FieldCreatedAt, FieldUpdatedAt, FieldRetrigger, FieldTraceParent, FieldTraceState}

// Validate reports the first setting of s to fix.
func (s Schema) Validate() error {
	if a := s.AttemptsField; a != "" {
		if !plainFieldName(a) {
			return &InvalidError{Field: "", Reason: fmt.Sprintf("attempts field %q must be a plain field name: letters, digits and '_', not starting with a digit", a)}
		}
		for _, r := range reserved {
			if a == r {
				return &InvalidError{Reason: fmt.Sprintf("attempts field %q is one of retrigger's own fields", a)}
			}
		}
	}
	if s.DefaultType != "" {
		if err := ValidateType(s.DefaultType); err != nil {
			return err
		}
	}
	if s.MaxSize < 0 {
		return &InvalidError{Reason: fmt.Sprintf("the maximum size must not be negative, got %d", s.MaxSize)}
	}
	return nil
}

func plainFieldName(s string) bool {
	if s == "" || len(s) > 64 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Parse reads an event document with the default schema.
func Parse(doc bson.Raw) (Event, error) { return Schema{}.Parse(doc) }

// Parse decodes and validates an event document. It is the one decoder of
// event documents: every component reads events through it.
//
// Fields that decide what runs are checked strictly, and a wrong one is an
// *InvalidError naming it: _id, type (required unless DefaultType is set;
// a NATS subject token), payload (a document), state (0 to 3), the
// counters (whole numbers in [0, 2^53)) and FieldRetrigger (a document).
// Fields that only inform are read leniently: a nextAttemptAt that is not a
// date reads as none (the event is due), and a createdAt, updatedAt or
// lastError of the wrong type reads as missing, and a traceparent or
// tracestate that is not a string reads as missing with
// Event.TraceContextError saying so. A missing or null field
// takes its default. Parse returns the fields it could read even when it
// fails, so the caller can still route the event by its id.
func (s Schema) Parse(doc bson.Raw) (Event, error) {
	var ev Event
	if s.MaxSize > 0 && len(doc) > s.MaxSize {
		ev.ID, _ = doc.LookupErr(FieldID)
		return ev, invalid("", "document is %d bytes, more than the maximum of %d bytes", len(doc), s.MaxSize)
	}
	attempts := s.Attempts()
	var err, firstErr error
	fail := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	hasType := false
	// The elements, read in place as bson.Raw.Elements reads and validates
	// them, without its slice and a string per key: this runs for every
	// change the relay reads and every claim.
	length, rem, ok := bsoncore.ReadLength(doc)
	if !ok && len(doc) > 0 { // an empty document has no elements, as for Elements
		return ev, invalid("", "malformed BSON: %v", bsoncore.NewInsufficientBytesError(doc, rem))
	}
	for length -= 4; length > 1; {
		var el bsoncore.Element
		el, rem, ok = bsoncore.ReadElement(rem)
		length -= int32(len(el))
		if !ok {
			return ev, invalid("", "malformed BSON: %v", bsoncore.NewInsufficientBytesError(doc, rem))
		}
		if err := el.Validate(); err != nil {
			return ev, invalid("", "malformed BSON: %v", err)
		}
		k, cv := el.KeyBytes(), el.Value()
		v := bson.RawValue{Type: bson.Type(cv.Type), Value: cv.Data}
		if string(k) == FieldID {
			ev.ID = v
			continue
		}
		if v.Type == bson.TypeNull && string(k) != FieldType && string(k) != FieldRetrigger {
			continue // null reads as the default
		}
		switch string(k) {
		case FieldType:
			hasType = true
			t, ok := v.StringValueOK()
			if !ok {
				fail(invalid(FieldType, "must be a string, not %s", typeName(v.Type)))
				continue
			}
			if err := ValidateType(t); err != nil {
				fail(err)
				continue
			}
			ev.Type = t
		case FieldPayload:
			d, ok := v.DocumentOK()
			if !ok {
				fail(invalid(FieldPayload, "must be a document, not %s", typeName(v.Type)))
				continue
			}
			ev.Payload = d
		case FieldState:
			n, err := integer(FieldState, v)
			if err != nil {
				fail(err)
				continue
			}
			if n < int64(StateNew) || n > int64(StateError) {
				fail(invalid(FieldState, "must be 0 (new), 1 (success), 2 (failed) or 3 (error), not %d", n))
				continue
			}
			ev.State = State(n)
		case attempts:
			ev.Attempts, err = counter(attempts, v)
			fail(err)
		case FieldMaxAttempts:
			ev.MaxAttempts, err = counter(FieldMaxAttempts, v)
			fail(err)
		case FieldVersion:
			ev.Version, err = counter(FieldVersion, v)
			fail(err)
			if err == nil && ev.Version >= MaxCounter-1 {
				fail(invalid(FieldVersion, "is %d: retrigger cannot count past 2^53", ev.Version))
			}
		case FieldNextAttemptAt:
			ev.NextAttemptAt = date(v) // not a date: due now
		case FieldCreatedAt:
			ev.CreatedAt = date(v)
		case FieldUpdatedAt:
			ev.UpdatedAt = date(v)
		case FieldLastError:
			ev.LastError = lastError(v)
		case FieldTraceParent, FieldTraceState:
			traceContext(&ev, string(k), v)
		case FieldRetrigger:
			d, ok := v.DocumentOK()
			if !ok {
				fail(invalid(FieldRetrigger, "is reserved for retrigger's own bookkeeping and must be a document, not %s", typeName(v.Type)))
				continue
			}
			readBookkeeping(&ev, d)
		}
	}
	if ev.ID.Type == 0 {
		return ev, invalid(FieldID, "is missing")
	}
	if firstErr != nil {
		return ev, firstErr
	}
	if !hasType {
		if s.DefaultType == "" {
			return ev, invalid(FieldType, "is missing: every event needs the name of its handler")
		}
		ev.Type = s.DefaultType
	}
	return ev, nil
}

// typeName names a BSON type the way MongoDB's $type does.
func typeName(t bson.Type) string {
	switch t {
	case bson.TypeEmbeddedDocument:
		return "object"
	case bson.TypeInt32:
		return "int"
	case bson.TypeInt64:
		return "long"
	case bson.TypeDateTime:
		return "date"
	case bson.TypeBoolean:
		return "bool"
	}
	return t.String()
}

// readBookkeeping reads FieldRetrigger leniently: a part of the wrong type
// reads as missing, so bad bookkeeping never stops an event.
func readBookkeeping(ev *Event, d bson.Raw) {
	if l, ok := d.Lookup("lease").DocumentOK(); ok {
		lease := &Lease{}
		lease.Owner, _ = l.Lookup(fieldLeaseOwner).StringValueOK()
		lease.Token, _ = l.Lookup(fieldLeaseTokenK).AsInt64OK()
		lease.Until = date(l.Lookup(fieldLeaseUntilK))
		ev.Lease = lease
	}
	if n, ok := d.Lookup("crashes").AsInt64OK(); ok && n > 0 {
		ev.Crashes = n
	}
	if r, ok := d.Lookup("reason").StringValueOK(); ok {
		ev.Reason = Reason(r)
	}
	ev.ArchivedAt = date(d.Lookup("archivedAt"))
	ev.RedrivenAt = date(d.Lookup("redrivenAt"))
	if n, ok := d.Lookup("redrives").AsInt64OK(); ok && n > 0 {
		ev.Redrives = n
	}
	ev.ParkedAt = date(d.Lookup("parkedAt"))
	ev.WokenAt = date(d.Lookup("wokenAt"))
	ev.Key, _ = d.Lookup("key").StringValueOK()
	ev.Seq, _ = d.Lookup("seq").AsInt64OK()
	if a, ok := d.Lookup("history").ArrayOK(); ok {
		vals, _ := a.Values()
		for _, v := range vals {
			h, ok := v.DocumentOK()
			if !ok {
				continue
			}
			var at Attempt
			at.At = date(h.Lookup(HistoryAt))
			if ms, ok := h.Lookup(HistoryTookMs).AsInt64OK(); ok {
				at.Took = time.Duration(ms) * time.Millisecond
			}
			at.Outcome, _ = h.Lookup(HistoryOutcome).StringValueOK()
			at.Error, _ = h.Lookup(HistoryError).StringValueOK()
			at.Replica, _ = h.Lookup(HistoryReplica).StringValueOK()
			at.Number, _ = h.Lookup(HistoryNumber).AsInt64OK()
			at.TraceID, _ = h.Lookup(HistoryTraceID).StringValueOK()
			at.SpanID, _ = h.Lookup(HistorySpanID).StringValueOK()
			ev.History = append(ev.History, at)
		}
	}
}

// traceContext reads the application's trace context leniently: a field of
// the wrong type is recorded, never fatal.
func traceContext(ev *Event, field string, v bson.RawValue) {
	s, ok := v.StringValueOK()
	if !ok {
		if ev.TraceContextError == "" {
			ev.TraceContextError = fmt.Sprintf("%s must be a string, not %s", field, typeName(v.Type))
		}
		return
	}
	if field == FieldTraceParent {
		ev.TraceParent = s
	} else {
		ev.TraceState = s
	}
}

func lastError(v bson.RawValue) *LastError {
	d, ok := v.DocumentOK()
	if !ok {
		return nil
	}
	le := &LastError{}
	le.Message, _ = d.Lookup("message").StringValueOK()
	le.Retryable, _ = d.Lookup("retryable").BooleanOK()
	le.At = date(d.Lookup("at"))
	return le
}

// ValidateType checks that t can name a handler and be the last token of a
// NATS subject: non-empty, printable ASCII, no '.', '*', '>' or white space.
func ValidateType(t string) error {
	if t == "" {
		return invalid(FieldType, "is empty: every event needs the name of its handler")
	}
	if len(t) > MaxTypeLength {
		return invalid(FieldType, "is %d bytes long, more than %d", len(t), MaxTypeLength)
	}
	if !utf8.ValidString(t) {
		return invalid(FieldType, "%q is not valid UTF-8", t)
	}
	for _, r := range t {
		switch {
		case r == '.' || r == '*' || r == '>':
			return invalid(FieldType, "%q contains %q, which NATS subjects reserve", t, r)
		case r <= ' ' || r >= 0x7f:
			return invalid(FieldType, "%q contains %q: use printable ASCII without spaces", t, r)
		}
	}
	return nil
}

func integer(field string, v bson.RawValue) (int64, error) {
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), nil
	case bson.TypeInt64:
		return v.Int64(), nil
	case bson.TypeDouble:
		f := v.Double()
		if f == math.Trunc(f) && math.Abs(f) < MaxCounter {
			return int64(f), nil
		}
		return 0, invalid(field, "must be a whole number below 2^53, not %v", f)
	case bson.TypeDecimal128:
		d := v.Decimal128()
		if n, ok := wholeDecimal(d); ok {
			return n, nil
		}
		return 0, invalid(field, "must be a whole number below 2^53, not %s", d)
	}
	return 0, invalid(field, "must be a number, not %s", typeName(v.Type))
}

// wholeDecimal returns d as an integer when it is a whole number below
// 2^53 in magnitude.
func wholeDecimal(d bson.Decimal128) (int64, bool) {
	bi, exp, err := d.BigInt()
	if err != nil {
		return 0, false
	}
	ten := big.NewInt(10)
	for exp < 0 {
		q, r := new(big.Int).QuoRem(bi, ten, new(big.Int))
		if r.Sign() != 0 {
			return 0, false
		}
		bi, exp = q, exp+1
	}
	if exp > 16 && bi.Sign() != 0 {
		return 0, false
	}
	bi = new(big.Int).Mul(bi, new(big.Int).Exp(ten, big.NewInt(int64(exp)), nil))
	if !bi.IsInt64() || bi.Int64() <= -MaxCounter || bi.Int64() >= MaxCounter {
		return 0, false
	}
	return bi.Int64(), true
}

// counter reads a non-negative whole number below 2^53.
func counter(field string, v bson.RawValue) (int64, error) {
	n, err := integer(field, v)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, invalid(field, "must not be negative, got %d", n)
	}
	if n >= MaxCounter {
		return 0, invalid(field, "is %d, more than retrigger counts (2^53)", n)
	}
	return n, nil
}

// date reads a BSON date; anything else is the zero time.
func date(v bson.RawValue) time.Time {
	ms, ok := v.DateTimeOK()
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
