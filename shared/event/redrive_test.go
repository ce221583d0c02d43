package event

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The archive and redrive bookkeeping is read leniently: a part of the
// wrong type reads as missing.
func TestParseRedriveBookkeeping(t *testing.T) {
	at := time.UnixMilli(1700000000000).UTC()
	tests := []struct {
		name     string
		book     bson.D
		redrives int64
		when     time.Time
	}{
		{"set", bson.D{{Key: "archivedAt", Value: at}, {Key: "redrivenAt", Value: at}, {Key: "redrives", Value: int64(2)}}, 2, at},
		{"wrong types", bson.D{{Key: "archivedAt", Value: "x"}, {Key: "redrivenAt", Value: 1}, {Key: "redrives", Value: "two"}}, 0, time.Time{}},
		{"missing", bson.D{}, 0, time.Time{}},
	}
	for _, tt := range tests {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "t"}, {Key: FieldRetrigger, Value: tt.book}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if ev.Redrives != tt.redrives || !ev.RedrivenAt.Equal(tt.when) || !ev.ArchivedAt.Equal(tt.when) {
			t.Errorf("%s: redrives %d, redrivenAt %s, archivedAt %s", tt.name, ev.Redrives, ev.RedrivenAt, ev.ArchivedAt)
		}
	}
}
