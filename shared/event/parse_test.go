package event

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func raw(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	return b
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	id := bson.NewObjectID()
	ev, err := Parse(raw(t, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.D{{Key: "to", Value: "a@b"}}}}), 0)
	require.NoError(t, err)
	require.Equal(t, id, ev.ID.ObjectID())
	require.Equal(t, "email", ev.Type)
	require.Equal(t, StateNew, ev.State)
	require.Zero(t, ev.Attempts)
	require.Zero(t, ev.Version)
	require.Zero(t, ev.MaxAttempts)
	require.Equal(t, "a@b", ev.Payload.Lookup("to").StringValue())
	require.Equal(t, id.Hex()+":0", ev.MsgID())
}

func TestParseFull(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	ev, err := Parse(raw(t, bson.D{
		{Key: "_id", Value: "order-1"}, {Key: "type", Value: "partner-api"},
		{Key: "state", Value: int32(2)}, {Key: "attempts", Value: int64(2)},
		{Key: "maxAttempts", Value: 7.0}, {Key: "version", Value: int32(4)},
		{Key: "nextAttemptAt", Value: now},
		{Key: "lastError", Value: bson.D{{Key: "message", Value: "boom"}, {Key: "retryable", Value: true}, {Key: "at", Value: now}}},
	}), 0)
	require.NoError(t, err)
	require.Equal(t, StateFailed, ev.State)
	require.Equal(t, 2, ev.Attempts)
	require.Equal(t, 7, ev.MaxAttempts)
	require.EqualValues(t, 4, ev.Version)
	require.True(t, now.Equal(ev.NextAttemptAt))
	require.Equal(t, "boom", ev.LastError.Message)
	require.Equal(t, "order-1:4", ev.MsgID())
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 2000)
	tests := []struct {
		name      string
		doc       bson.D
		maxSize   int
		wantField string
		wantIn    string
	}{
		{"no type", bson.D{{Key: "payload", Value: bson.D{}}}, 0, "type", "missing"},
		{"empty type", bson.D{{Key: "type", Value: ""}}, 0, "type", "empty"},
		{"type with dot", bson.D{{Key: "type", Value: "a.b"}}, 0, "type", "'.'"},
		{"type with wildcard", bson.D{{Key: "type", Value: "a*"}}, 0, "type", "'*'"},
		{"type with space", bson.D{{Key: "type", Value: "send email"}}, 0, "type", "printable"},
		{"type not a string", bson.D{{Key: "type", Value: int32(3)}}, 0, "type", "must be a string"},
		{"state a string", bson.D{{Key: "type", Value: "t"}, {Key: "state", Value: "new"}}, 0, "state", "must be a number"},
		{"state out of range", bson.D{{Key: "type", Value: "t"}, {Key: "state", Value: int32(7)}}, 0, "state", "not 7"},
		{"attempts negative", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: int32(-1)}}, 0, "attempts", "negative"},
		{"attempts fractional", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: 1.5}}, 0, "attempts", "whole"},
		{"payload an array", bson.D{{Key: "type", Value: "t"}, {Key: "payload", Value: bson.A{1}}}, 0, "payload", "must be a document"},
		{"nextAttemptAt a string", bson.D{{Key: "type", Value: "t"}, {Key: "nextAttemptAt", Value: "tomorrow"}}, 0, "nextAttemptAt", "must be a date"},
		{"too large", bson.D{{Key: "type", Value: "t"}, {Key: "payload", Value: bson.D{{Key: "x", Value: big}}}}, 1000, "", "more than the maximum of 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, tt.doc...)
			ev, err := Parse(raw(t, doc), tt.maxSize)
			require.Error(t, err)
			require.True(t, IsInvalid(err))
			var ie *InvalidError
			require.True(t, errors.As(err, &ie))
			require.Equal(t, tt.wantField, ie.Field)
			require.Contains(t, err.Error(), tt.wantIn)
			require.Equal(t, bson.TypeObjectID, ev.ID.Type, "the id is read even from an invalid document")
		})
	}
}

func TestStateNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"new", "success", "failed", "error", "state(9)"},
		[]string{StateNew.String(), StateSuccess.String(), StateFailed.String(), StateError.String(), State(9).String()})
}
