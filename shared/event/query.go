package event

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Current selects the event only if it is still at the given version and
// state: the condition of every transition (optimistic concurrency). A
// document inserted without version or state holds the defaults 0 and new,
// which in MongoDB means the field is missing, so 0 also matches null.
func Current(id bson.RawValue, version int64, state State) bson.D {
	return bson.D{
		{Key: FieldID, Value: id},
		{Key: FieldVersion, Value: orMissing(version, 0)},
		{Key: FieldState, Value: orMissing(int64(state), int64(StateNew))},
	}
}

func orMissing(v, def int64) any {
	if v == def {
		return bson.D{{Key: "$in", Value: bson.A{v, nil}}}
	}
	return v
}

// ByID selects one event.
func ByID(id bson.RawValue) bson.D { return bson.D{{Key: FieldID, Value: id}} }

// Succeed is the update of new or failed -> success, for an event read at
// version (the transition's condition pins it, see Current).
//
// Counters are set rather than incremented: the condition fixes their
// current values, and $inc fails on a field that holds an explicit null,
// which the defaults allow.
func Succeed(now time.Time, version int64) bson.D {
	return bson.D{
		{Key: "$set", Value: bson.D{
			{Key: FieldState, Value: StateSuccess},
			{Key: FieldVersion, Value: version + 1},
			{Key: FieldUpdatedAt, Value: now},
		}},
		{Key: "$unset", Value: bson.D{{Key: FieldNextAttemptAt, Value: ""}}},
	}
}

// Fail is the update of a failed execution of an event read at version with
// attempts earlier failures: attempts+1 and lastError, then failed with the
// time of the next attempt, or error when nothing remains to try (next is
// zero).
func Fail(now, next time.Time, le LastError, attempts int, version int64) bson.D {
	set := bson.D{
		{Key: FieldAttempts, Value: int64(attempts) + 1},
		{Key: FieldVersion, Value: version + 1},
		{Key: FieldLastError, Value: le},
		{Key: FieldUpdatedAt, Value: now},
	}
	if next.IsZero() {
		return bson.D{
			{Key: "$set", Value: append(set, bson.E{Key: FieldState, Value: StateError})},
			{Key: "$unset", Value: bson.D{{Key: FieldNextAttemptAt, Value: ""}}},
		}
	}
	return bson.D{{Key: "$set", Value: append(set,
		bson.E{Key: FieldState, Value: StateFailed},
		bson.E{Key: FieldNextAttemptAt, Value: ceilMillisecond(next)})}}
}

// ceilMillisecond rounds t up to BSON's millisecond precision, so that the
// stored time is never before the one the policy asked for: a stored
// truncation would let a retry start up to a millisecond early.
func ceilMillisecond(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}
