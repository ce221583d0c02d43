package event

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func raw(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	return b
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	id := bson.NewObjectID()
	ev, err := Parse(raw(t, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.D{{Key: "to", Value: "a@b"}}}}))
	require.NoError(t, err)
	require.Equal(t, id, ev.ID.ObjectID())
	require.Equal(t, "email", ev.Type)
	require.Equal(t, StateNew, ev.State)
	require.Zero(t, ev.Attempts)
	require.Zero(t, ev.Version)
	require.Zero(t, ev.MaxAttempts)
	require.Nil(t, ev.Lease)
	require.Equal(t, "a@b", ev.Payload.Lookup("to").StringValue())
	require.True(t, ev.Due(time.Now()))
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
		{Key: "retrigger", Value: bson.D{
			{Key: "lease", Value: bson.D{{Key: "owner", Value: "r1"}, {Key: "token", Value: int64(9)}, {Key: "until", Value: now}}},
			{Key: "crashes", Value: int64(2)}, {Key: "reason", Value: "exhausted"},
			{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: now}, {Key: "tookMs", Value: int64(12)}, {Key: "outcome", Value: "failed"}, {Key: "error", Value: "boom"}, {Key: "replica", Value: "r1"}, {Key: "attempt", Value: int64(1)}}, "junk"}},
		}},
	}))
	require.NoError(t, err)
	require.Equal(t, StateFailed, ev.State)
	require.EqualValues(t, 2, ev.Attempts)
	require.EqualValues(t, 7, ev.MaxAttempts)
	require.EqualValues(t, 4, ev.Version)
	require.True(t, now.Equal(ev.NextAttemptAt))
	require.Equal(t, "boom", ev.LastError.Message)
	require.Equal(t, &Lease{Owner: "r1", Token: 9, Until: now}, ev.Lease)
	require.EqualValues(t, 2, ev.Crashes)
	require.Equal(t, ReasonExhausted, ev.Reason)
	require.Equal(t, []Attempt{{At: now, Took: 12 * time.Millisecond, Outcome: "failed", Error: "boom", Replica: "r1", Number: 1}}, ev.History)
	require.False(t, ev.Leased(now), "a lease is void at its until")
	require.True(t, ev.Leased(now.Add(-time.Millisecond)))
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 2000)
	tests := []struct {
		name      string
		doc       bson.D
		schema    Schema
		wantField string
		wantIn    string
	}{
		{"no type", bson.D{{Key: "payload", Value: bson.D{}}}, Schema{}, "type", "missing"},
		{"empty type", bson.D{{Key: "type", Value: ""}}, Schema{}, "type", "empty"},
		{"type with dot", bson.D{{Key: "type", Value: "a.b"}}, Schema{}, "type", "'.'"},
		{"type with wildcard", bson.D{{Key: "type", Value: "a*"}}, Schema{}, "type", "'*'"},
		{"type with space", bson.D{{Key: "type", Value: "send email"}}, Schema{}, "type", "printable"},
		{"type not a string", bson.D{{Key: "type", Value: int32(3)}}, Schema{}, "type", "must be a string"},
		{"null type", bson.D{{Key: "type", Value: nil}}, Schema{}, "type", "must be a string"},
		{"state a string", bson.D{{Key: "type", Value: "t"}, {Key: "state", Value: "new"}}, Schema{}, "state", "must be a number"},
		{"state out of range", bson.D{{Key: "type", Value: "t"}, {Key: "state", Value: int32(7)}}, Schema{}, "state", "not 7"},
		{"state NaN", bson.D{{Key: "type", Value: "t"}, {Key: "state", Value: math.NaN()}}, Schema{}, "state", "whole number"},
		{"attempts negative", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: int32(-1)}}, Schema{}, "attempts", "negative"},
		{"attempts fractional", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: 1.5}}, Schema{}, "attempts", "whole"},
		{"attempts infinite", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: math.Inf(1)}}, Schema{}, "attempts", "whole"},
		{"attempts past 2^53", bson.D{{Key: "type", Value: "t"}, {Key: "attempts", Value: int64(math.MaxInt64)}}, Schema{}, "attempts", "2^53"},
		{"version at the end", bson.D{{Key: "type", Value: "t"}, {Key: "version", Value: int64(MaxCounter - 1)}}, Schema{}, "version", "cannot count"},
		{"custom counter", bson.D{{Key: "type", Value: "t"}, {Key: "count", Value: "x"}}, Schema{AttemptsField: "count"}, "count", "must be a number"},
		{"payload an array", bson.D{{Key: "type", Value: "t"}, {Key: "payload", Value: bson.A{1}}}, Schema{}, "payload", "must be a document"},
		{"bookkeeping not a document", bson.D{{Key: "type", Value: "t"}, {Key: "retrigger", Value: "mine"}}, Schema{}, "retrigger", "reserved"},
		{"bookkeeping null", bson.D{{Key: "type", Value: "t"}, {Key: "retrigger", Value: nil}}, Schema{}, "retrigger", "reserved"},
		{"too large", bson.D{{Key: "type", Value: "t"}, {Key: "payload", Value: bson.D{{Key: "x", Value: big}}}}, Schema{MaxSize: 1000}, "", "more than the maximum of 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, tt.doc...)
			ev, err := tt.schema.Parse(raw(t, doc))
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

// Fields that only inform never stop an event: a hand-built document with
// odd values still runs.
func TestParseLenient(t *testing.T) {
	t.Parallel()
	ev, err := Parse(raw(t, bson.D{
		{Key: "_id", Value: int64(7)}, {Key: "type", Value: "t"}, {Key: "state", Value: 2.0},
		{Key: "nextAttemptAt", Value: "tomorrow"}, {Key: "createdAt", Value: 12}, {Key: "updatedAt", Value: true},
		{Key: "lastError", Value: "boom"}, {Key: "attempts", Value: mustDecimal(t, "3.0E1")},
		{Key: "maxAttempts", Value: int64(1e11)},
		{Key: "retrigger", Value: bson.D{{Key: "lease", Value: "x"}, {Key: "crashes", Value: "y"}, {Key: "history", Value: 3}}},
	}))
	require.NoError(t, err)
	require.Equal(t, StateFailed, ev.State)
	require.True(t, ev.NextAttemptAt.IsZero())
	require.True(t, ev.Due(time.Now()), "a failed event without a due date is due")
	require.True(t, ev.CreatedAt.IsZero())
	require.Nil(t, ev.LastError)
	require.Nil(t, ev.Lease)
	require.EqualValues(t, 30, ev.Attempts)
	require.EqualValues(t, 1e11, ev.MaxAttempts)
}

func TestParseDefaultType(t *testing.T) {
	t.Parallel()
	s := Schema{AttemptsField: "count", DefaultType: "seed"}
	ev, err := s.Parse(raw(t, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "state", Value: 0}, {Key: "count", Value: int32(2)}, {Key: "attempts", Value: "ignored"}}))
	require.NoError(t, err)
	require.Equal(t, "seed", ev.Type)
	require.EqualValues(t, 2, ev.Attempts)
}

func TestSchemaValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Schema{}.Validate())
	require.NoError(t, Schema{AttemptsField: "count", DefaultType: "seed"}.Validate())
	for _, bad := range []Schema{{AttemptsField: "a.b"}, {AttemptsField: "$x"}, {AttemptsField: "state"}, {AttemptsField: "retrigger"}, {AttemptsField: "1a"}, {DefaultType: "a b"}, {MaxSize: -1}} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
}

func TestStateNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"new", "success", "failed", "error", "state(9)"},
		[]string{StateNew.String(), StateSuccess.String(), StateFailed.String(), StateError.String(), State(9).String()})
}

func mustDecimal(t testing.TB, s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	require.NoError(t, err)
	return d
}
