package messaging

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Body renders an event document for people, as it shows in `nats stream
// view`: relaxed extended JSON, byte for byte what bson.MarshalExtJSON(doc,
// false, false) writes. Nothing decodes it.
//
// It is on the relay's path for every message, so the common types
// (documents, arrays, strings, numbers, booleans, null, ObjectIDs, dates)
// are appended straight from the BSON bytes into one buffer; a document
// holding any other type (binary, regular expression, timestamp,
// decimal, ...) goes through the driver's encoder, as does one that does
// not parse, for the driver's error.
func Body(doc bson.Raw) ([]byte, error) {
	out, ok := appendDocument(make([]byte, 0, len(doc)+len(doc)/4+16), doc, false)
	if ok {
		return out, nil
	}
	b, err := bson.MarshalExtJSON(doc, false, false)
	if err != nil {
		return nil, errRender(err)
	}
	return b, nil
}

// appendDocument appends doc as a JSON object (or, for array, a JSON array
// of its values); ok is false for a type it leaves to the driver or bytes
// that do not parse.
func appendDocument(dst, doc []byte, array bool) (_ []byte, ok bool) {
	length, rest, ok := bsoncore.ReadLength(doc)
	if !ok || length < 5 || int(length) > len(doc) || doc[length-1] != 0 {
		return dst, false
	}
	open, end := byte('{'), byte('}')
	if array {
		open, end = '[', ']'
	}
	dst = append(dst, open)
	rest = rest[:length-5]
	for first := true; len(rest) > 0; first = false {
		var el bsoncore.Element
		if el, rest, ok = bsoncore.ReadElement(rest); !ok {
			return dst, false
		}
		if !first {
			dst = append(dst, ',')
		}
		if !array {
			dst = appendString(dst, el.Key())
			dst = append(dst, ':')
		}
		if dst, ok = appendValue(dst, el.Value()); !ok {
			return dst, false
		}
	}
	return append(dst, end), true
}

func appendValue(dst []byte, v bsoncore.Value) ([]byte, bool) {
	switch v.Type {
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		return appendDouble(dst, f), ok
	case bsoncore.TypeString:
		s, ok := stringBytes(v.Data)
		ok = ok && v.Data[len(v.Data)-1] == 0 // the driver checks the terminator
		return appendString(dst, s), ok
	case bsoncore.TypeEmbeddedDocument:
		return appendDocument(dst, v.Data, false)
	case bsoncore.TypeArray:
		return appendDocument(dst, v.Data, true)
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		dst = append(dst, `{"$oid":"`...)
		dst = appendHex(dst, oid[:])
		return append(dst, `"}`...), ok
	case bsoncore.TypeBoolean:
		b, ok := v.BooleanOK()
		ok = ok && v.Data[0] <= 1 // the driver refuses other bytes
		return strconv.AppendBool(dst, b), ok
	case bsoncore.TypeDateTime:
		ms, ok := v.DateTimeOK()
		return appendDate(dst, ms), ok
	case bsoncore.TypeNull:
		return append(dst, "null"...), true
	case bsoncore.TypeInt32:
		i, ok := v.Int32OK()
		return strconv.AppendInt(dst, int64(i), 10), ok
	case bsoncore.TypeInt64:
		i, ok := v.Int64OK()
		return strconv.AppendInt(dst, i, 10), ok
	}
	return dst, false
}

// appendDouble writes a double as the driver does: the shortest form that
// reads back exactly, with ".0" on whole numbers, and $numberDouble for
// the values JSON has no number for.
func appendDouble(dst []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, `{"$numberDouble":"Infinity"}`...)
	case math.IsInf(f, -1):
		return append(dst, `{"$numberDouble":"-Infinity"}`...)
	case math.IsNaN(f):
		return append(dst, `{"$numberDouble":"NaN"}`...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'G', -1, 64)
	for _, c := range dst[start:] {
		if c == 'E' || c == '.' {
			return dst
		}
	}
	return append(dst, ".0"...)
}

// appendDate writes a date as the driver's relaxed form does: an ISO time
// to the millisecond for the years 1970 to 9999, milliseconds otherwise.
func appendDate(dst []byte, ms int64) []byte {
	t := time.Unix(ms/1e3, ms%1e3*1e6).UTC()
	if t.Year() < 1970 || t.Year() > 9999 {
		dst = append(dst, `{"$date":{"$numberLong":"`...)
		dst = strconv.AppendInt(dst, ms, 10)
		return append(dst, `"}}`...)
	}
	dst = append(dst, `{"$date":"`...)
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05.999Z07:00")
	return append(dst, `"}`...)
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return dst
}

// stringBytes are the bytes of a BSON string value, as the driver's
// StringValueOK reads them but without copying them into a string.
func stringBytes(data []byte) ([]byte, bool) {
	if len(data) < 4 {
		return nil, false
	}
	n := int64(int32(binary.LittleEndian.Uint32(data)))
	src := data[4:]
	if n < 1 || n > int64(len(src)) || src[n-1] != 0 {
		return nil, false
	}
	return src[:n-1], true
}

// appendString writes s as a JSON string with the driver's escapes: '"',
// '\\' and control characters escaped, HTML characters kept, invalid UTF-8
// replaced by U+FFFD, and U+2028 and U+2029 escaped.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))])) // no copy: short, and it does not escape
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
