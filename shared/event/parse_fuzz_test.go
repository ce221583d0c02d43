package event

import (
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// FuzzParse: whatever bytes arrive as an event document, Parse returns an
// event or an *InvalidError, never panics, and an event it accepts holds
// only values retrigger can act on; a trace context it could not read is
// said to be so (the event runs all the same).
func FuzzParse(f *testing.F) {
	now := time.UnixMilli(1_700_000_000_000).UTC()
	dec, _ := bson.ParseDecimal128("1E+6144")
	frac, _ := bson.ParseDecimal128("2.50")
	for _, d := range []bson.D{
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.D{{Key: "to", Value: "a@b"}}}},
		{{Key: "_id", Value: "order-1"}, {Key: "type", Value: "partner-api"}, {Key: "state", Value: int32(2)}, {Key: "attempts", Value: int64(2)},
			{Key: "maxAttempts", Value: 7.0}, {Key: "version", Value: int32(4)}, {Key: "nextAttemptAt", Value: now},
			{Key: "lastError", Value: bson.D{{Key: "message", Value: "boom"}, {Key: "retryable", Value: true}, {Key: "at", Value: now}}},
			{Key: "retrigger", Value: bson.D{
				{Key: "lease", Value: bson.D{{Key: "owner", Value: "r1"}, {Key: "token", Value: int64(9)}, {Key: "until", Value: now}}},
				{Key: "crashes", Value: int64(2)}, {Key: "reason", Value: "exhausted"},
				{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: now}, {Key: "tookMs", Value: int64(12)}}, "junk"}},
			}}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "a.b"}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: 3}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "attempts", Value: dec}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "attempts", Value: frac}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "version", Value: float64(1 << 60)}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "state", Value: int64(-1)}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: nil}, {Key: "retrigger", Value: nil}},
		{{Key: "_id", Value: bson.D{{Key: "a", Value: bson.A{1, "x"}}}}, {Key: "type", Value: "t"}, {Key: "retrigger", Value: "x"}},
		{{Key: "type", Value: "t"}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, {Key: "tracestate", Value: "a=b"}},
		{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: "traceparent", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "tracestate", Value: 3}},
	} {
		b, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(b), "", "", 0)
		f.Add([]byte(b), "tries", "email", 64)
	}
	f.Add([]byte{5, 0, 0, 0, 0}, "", "", 0)
	f.Add([]byte{0x20, 0, 0, 0, 3, 'r', 'e', 't', 'r', 'i', 'g', 'g', 'e', 'r', 0, 0x0c, 0, 0, 0, 3, 'l', 'e', 'a', 's', 'e', 0, 0xff, 0, 0, 0, 0, 0}, "", "", 0)
	f.Fuzz(func(t *testing.T, doc []byte, attempts, defaultType string, maxSize int) {
		s := Schema{AttemptsField: attempts, DefaultType: defaultType, MaxSize: maxSize}
		if s.Validate() != nil {
			s = Schema{}
		}
		ev, err := s.Parse(bson.Raw(doc))
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Parse returned %T %v, not an *InvalidError", err, err)
			}
			return
		}
		if ev.ID.Type == 0 {
			t.Fatal("an event without an _id was accepted")
		}
		if ValidateType(ev.Type) != nil {
			t.Fatalf("the type %q was accepted", ev.Type)
		}
		if ev.State < StateNew || ev.State > StateError {
			t.Fatalf("the state %d was accepted", ev.State)
		}
		for _, n := range []int64{ev.Attempts, ev.MaxAttempts, ev.Version} {
			if n < 0 || n >= MaxCounter {
				t.Fatalf("the counter %d was accepted", n)
			}
		}
		if v, err := bson.Raw(doc).LookupErr(FieldTraceParent); err == nil && v.Type != bson.TypeString && v.Type != bson.TypeNull && ev.TraceContextError == "" {
			t.Fatalf("a traceparent of type %s was read without saying so", v.Type)
		}
		if s.MaxSize > 0 && len(doc) > s.MaxSize {
			t.Fatalf("a document of %d bytes passed the maximum of %d", len(doc), s.MaxSize)
		}
	})
}
