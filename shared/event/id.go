package event

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// maxIDDisplay bounds how much of an id IDString shows.
const maxIDDisplay = 64

// IDString renders an event id for people (logs, errors, tables): the hex
// of an ObjectID, a string as it is, a number in decimal, anything else as
// extended JSON. Long ids are cut, with their length said. Two ids of
// different BSON types may look alike here; Key tells them apart.
func IDString(id bson.RawValue) string {
	var s string
	switch id.Type {
	case bson.TypeObjectID:
		return id.ObjectID().Hex()
	case bson.TypeString:
		s = strconv.Quote(id.StringValue())
		if v := id.StringValue(); isPlain(v) {
			s = v
		}
	case bson.TypeInt32:
		return strconv.FormatInt(int64(id.Int32()), 10)
	case bson.TypeInt64:
		return strconv.FormatInt(id.Int64(), 10)
	case 0:
		return "(no id)"
	default:
		s = id.String()
	}
	if len(s) > maxIDDisplay {
		return s[:maxIDDisplay] + fmt.Sprintf("…(%d bytes)", len(id.Value))
	}
	return s
}

// IDText renders an id in full, for a system that needs it exactly, such
// as a webhook's receiver: the hex of an ObjectID, a string as it is, an
// integer in decimal, anything else as canonical extended JSON.
func IDText(id bson.RawValue) string {
	switch id.Type {
	case bson.TypeObjectID:
		return id.ObjectID().Hex()
	case bson.TypeString:
		return id.StringValue()
	case bson.TypeInt32:
		return strconv.FormatInt(int64(id.Int32()), 10)
	case bson.TypeInt64:
		return strconv.FormatInt(id.Int64(), 10)
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: id}}, true, false)
	if err != nil {
		return id.String()
	}
	// {"v":<value>}
	return string(b[5 : len(b)-1])
}

// isPlain reports whether s can be shown and used in a key as it is.
func isPlain(s string) bool {
	if s == "" || len(s) > maxIDDisplay {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

// Key renders an id as a short string that no other id, of any BSON type,
// shares: "o:<hex>" for an ObjectID, "s:<string>" for a short plain string,
// "i:<n>" for an int32, "l:<n>" for an int64, and "h:" and a SHA-256 of the
// BSON type and value for anything else. It is at most 66 bytes of
// printable ASCII without spaces or '@', so it fits a Nats-Msg-Id.
func Key(id bson.RawValue) string { return string(AppendKey(nil, id)) }

// AppendKey appends Key(id) to dst.
func AppendKey(dst []byte, id bson.RawValue) []byte {
	switch id.Type {
	case bson.TypeObjectID:
		if oid, ok := id.ObjectIDOK(); ok {
			dst = append(dst, "o:"...)
			return hex.AppendEncode(dst, oid[:])
		}
	case bson.TypeString:
		if s, ok := id.StringValueOK(); ok && isPlain(s) {
			return append(append(dst, "s:"...), s...)
		}
	case bson.TypeInt32:
		if n, ok := id.Int32OK(); ok {
			return strconv.AppendInt(append(dst, "i:"...), int64(n), 10)
		}
	case bson.TypeInt64:
		if n, ok := id.Int64OK(); ok {
			return strconv.AppendInt(append(dst, "l:"...), n, 10)
		}
	}
	h := sha256.New()
	h.Write([]byte{byte(id.Type)})
	h.Write(id.Value)
	return base64.RawURLEncoding.AppendEncode(append(dst, "h:"...), h.Sum(nil)[:16])
}

// EncodeID renders an id losslessly for a message header: base64 (URL
// alphabet, no padding) of its BSON type byte and value bytes.
func EncodeID(id bson.RawValue) string { return string(AppendEncodedID(nil, id)) }

// AppendEncodedID appends EncodeID(id) to dst.
func AppendEncodedID(dst []byte, id bson.RawValue) []byte {
	// base64 of the type byte and the value: the type byte with the
	// value's first two bytes makes the first 4 characters.
	head := [3]byte{byte(id.Type)}
	n := copy(head[1:], id.Value)
	if n < 2 {
		return base64.RawURLEncoding.AppendEncode(dst, head[:1+n])
	}
	dst = base64.RawURLEncoding.AppendEncode(dst, head[:])
	return base64.RawURLEncoding.AppendEncode(dst, id.Value[2:])
}

// DecodeID reverses EncodeID, checking that the value is well-formed BSON.
func DecodeID(s string) (bson.RawValue, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bson.RawValue{}, fmt.Errorf("decoding event id: %w", err)
	}
	if len(b) < 1 {
		return bson.RawValue{}, errors.New("decoding event id: empty")
	}
	t := bsoncore.Type(b[0])
	v, rest, ok := bsoncore.ReadValue(b[1:], t)
	if !ok || len(rest) != 0 {
		return bson.RawValue{}, errors.New("decoding event id: not one well-formed BSON value")
	}
	if err := v.Validate(); err != nil {
		return bson.RawValue{}, fmt.Errorf("decoding event id: %w", err)
	}
	return bson.RawValue{Type: bson.Type(t), Value: v.Data}, nil
}
