package event

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MaxTypeLength bounds the type name, which is also a NATS subject token.
const MaxTypeLength = 128

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

// Parse decodes and validates an event document. maxSize bounds the encoded
// size in bytes (0: no bound). A missing field takes its default; a field of
// the wrong BSON type, a missing or invalid type, or an oversized document is
// an *InvalidError naming the field. Parse returns the fields it could read
// even when it fails, so the caller can still route the event (by ID).
func Parse(doc bson.Raw, maxSize int) (Event, error) {
	var ev Event
	if maxSize > 0 && len(doc) > maxSize {
		// Still read the id, so the event can be routed to errors.
		ev.ID, _ = doc.LookupErr(FieldID)
		return ev, invalid("", "document is %d bytes, more than the maximum of %d bytes", len(doc), maxSize)
	}
	elems, err := doc.Elements()
	if err != nil {
		return ev, invalid("", "malformed BSON: %v", err)
	}
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	hasType := false
	for _, el := range elems {
		key := el.Key()
		v := el.Value()
		if v.Type == bson.TypeNull && key != FieldID && key != FieldType {
			continue // null reads as the default
		}
		switch key {
		case FieldID:
			ev.ID = v
		case FieldType:
			hasType = true
			s, ok := v.StringValueOK()
			if !ok {
				fail(invalid(key, "must be a string, not %s", v.Type))
				continue
			}
			if err := ValidateType(s); err != nil {
				fail(err)
				continue
			}
			ev.Type = s
		case FieldPayload:
			d, ok := v.DocumentOK()
			if !ok {
				fail(invalid(key, "must be a document, not %s", v.Type))
				continue
			}
			ev.Payload = bson.Raw(d)
		case FieldState:
			n, err := integer(key, v)
			if err != nil {
				fail(err)
				continue
			}
			if n < int64(StateNew) || n > int64(StateError) {
				fail(invalid(key, "must be 0 (new), 1 (success), 2 (failed) or 3 (error), not %d", n))
				continue
			}
			ev.State = State(n)
		case FieldAttempts:
			n, err := nonNegative(key, v)
			if err != nil {
				fail(err)
				continue
			}
			ev.Attempts = int(n)
		case FieldMaxAttempts:
			n, err := nonNegative(key, v)
			if err != nil {
				fail(err)
				continue
			}
			ev.MaxAttempts = int(n)
		case FieldVersion:
			n, err := nonNegative(key, v)
			if err != nil {
				fail(err)
				continue
			}
			ev.Version = n
		case FieldNextAttemptAt:
			ev.NextAttemptAt, err = date(key, v)
			fail(err)
		case FieldCreatedAt:
			ev.CreatedAt, err = date(key, v)
			fail(err)
		case FieldUpdatedAt:
			ev.UpdatedAt, err = date(key, v)
			fail(err)
		case FieldLastError:
			d, ok := v.DocumentOK()
			if !ok {
				fail(invalid(key, "must be a document, not %s", v.Type))
				continue
			}
			var le LastError
			if err := bson.Unmarshal(d, &le); err != nil {
				fail(invalid(key, "%v", err))
				continue
			}
			ev.LastError = &le
		}
	}
	if firstErr != nil {
		return ev, firstErr
	}
	if !hasType {
		return ev, invalid(FieldType, "is missing: every event needs the name of its handler")
	}
	return ev, nil
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
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return 0, invalid(field, "must be a whole number, not %v", f)
	}
	return 0, invalid(field, "must be a number, not %s", v.Type)
}

func nonNegative(field string, v bson.RawValue) (int64, error) {
	n, err := integer(field, v)
	if err == nil && n < 0 {
		err = invalid(field, "must not be negative, got %d", n)
	}
	return n, err
}

func date(field string, v bson.RawValue) (time.Time, error) {
	ms, ok := v.DateTimeOK()
	if !ok {
		return time.Time{}, invalid(field, "must be a date, not %s", v.Type)
	}
	return time.UnixMilli(ms).UTC(), nil
}
