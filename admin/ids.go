package admin

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// ParseID reads an event id as a person gives it, and returns the ids it
// may stand for, most likely first. Extended JSON ({"$oid": "..."},
// {"$numberLong": "7"}, "a string", {"$binary": ...}, {"$uuid": "..."})
// is one exact id. Plain text may be several: 24 hex digits an ObjectID or
// a string; an integer an int32, an int64, a double or a string; a UUID a
// binary of subtype 4 or a string; anything else a string.
func ParseID(text string) ([]bson.RawValue, error) {
	if text == "" {
		return nil, fmt.Errorf("an empty id")
	}
	if t := strings.TrimSpace(text); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "\"") || strings.HasPrefix(t, "[") {
		var doc bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(`{"v":`+t+`}`), false, &doc); err != nil {
			return nil, fmt.Errorf("reading id %s as extended JSON: %w", t, err)
		}
		return []bson.RawValue{doc.Lookup("v")}, nil
	}
	var out []bson.RawValue
	add := func(v any) {
		typ, data, err := bson.MarshalValue(v)
		if err == nil {
			out = append(out, bson.RawValue{Type: typ, Value: data})
		}
	}
	if oid, err := bson.ObjectIDFromHex(text); err == nil {
		add(oid)
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		if n >= math.MinInt32 && n <= math.MaxInt32 {
			add(int32(n))
		}
		add(n)
		if math.Abs(float64(n)) < 1<<53 { // a double holds it exactly
			add(float64(n))
		}
	}
	if u, ok := parseUUID(text); ok {
		add(bson.Binary{Subtype: bson.TypeBinaryUUID, Data: u})
	}
	add(text)
	return out, nil
}

// parseUUID reads the 8-4-4-4-12 hex form of a UUID.
func parseUUID(s string) ([]byte, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, false
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	return b, err == nil && len(b) == 16
}

// FormatID renders an id on one line so that ParseID finds it again: the
// hex of an ObjectID, a plain string or an integer as it is, a UUID in
// its usual form, anything else as canonical extended JSON.
func FormatID(id bson.RawValue) string {
	switch id.Type {
	case bson.TypeObjectID, bson.TypeInt32, bson.TypeInt64:
		return event.IDText(id)
	case bson.TypeString:
		if s := id.StringValue(); plainID(s) {
			return s
		}
	case bson.TypeBinary:
		if st, data := id.Binary(); st == bson.TypeBinaryUUID && len(data) == 16 {
			h := hex.EncodeToString(data)
			return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		}
	}
	return string(idJSON(id))
}

// plainID: a string that reads back as itself, not as another type.
func plainID(s string) bool {
	if s == "" || len(s) > 128 || strings.ContainsAny(s, " \t\r\n\"{[") {
		return false
	}
	if _, err := bson.ObjectIDFromHex(s); err == nil {
		return false
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return false
	}
	if _, ok := parseUUID(s); ok {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// idJSON is an id as canonical extended JSON: exact, whatever its type.
func idJSON(id bson.RawValue) json.RawMessage {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: id}}, true, false)
	if err != nil {
		return json.RawMessage(strconv.Quote(id.String()))
	}
	return json.RawMessage(b[5 : len(b)-1])
}
