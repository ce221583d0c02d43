package flow

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// KeyOf returns the value at path in an event document, and its
// normalised hash; ok is false when the document has no value there (the
// field is missing or null), and the event is then a key of its own.
//
// Keys are normalised the way MongoDB compares values, so that two events
// a query would call equal share a key: numbers by value (the int32 7, the
// int64 7 and the double 7.0 are one key; NaN is one key), strings by
// their bytes, and any other value (a document, an array, a binary, an
// ObjectID) by its BSON type and bytes. The hash is the first 16 bytes of
// a SHA-256, hex: 32 characters whatever the value's size, so a key of a
// megabyte costs its hash once, and two keys share a slot only if SHA-256
// collides.
func KeyOf(doc bson.Raw, path string) (bson.RawValue, string, bool) {
	v, err := doc.LookupErr(strings.Split(path, ".")...)
	if err != nil || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined {
		return bson.RawValue{}, "", false
	}
	return v, hashKey(v), true
}

func hashKey(v bson.RawValue) string {
	h := sha256.New()
	var buf [9]byte
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		f, _ := v.AsFloat64OK()
		if v.Type == bson.TypeInt64 {
			if n := v.Int64(); float64(n) != f || n > 1<<53 || n < -(1<<53) {
				// Beyond 2^53 a double cannot hold it: keep the integer.
				buf[0] = 'i'
				binary.BigEndian.PutUint64(buf[1:], uint64(n))
				h.Write(buf[:])
				break
			}
		}
		switch {
		case math.IsNaN(f):
			h.Write([]byte{'n'})
		case f == 0:
			h.Write([]byte{'z'}) // 0 and -0
		default:
			buf[0] = 'f'
			binary.BigEndian.PutUint64(buf[1:], math.Float64bits(f))
			h.Write(buf[:])
		}
	case bson.TypeString, bson.TypeSymbol:
		h.Write([]byte{'s'})
		s, _ := v.StringValueOK()
		if v.Type == bson.TypeSymbol {
			s, _ = v.SymbolOK()
		}
		h.Write([]byte(s))
	default:
		h.Write([]byte{'t', byte(v.Type)})
		h.Write(v.Value)
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}
