package eventstore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/store"
)

// Bucket is what happened in one interval of time, each event counted
// once per figure, by the time of its latest such moment: Succeeded the
// events whose success (their last transition) falls in it, Failed the
// events, in events or archived, whose last failed run does (lastError.at:
// an event that failed twice in it, then succeeded, counts once here and
// once as a success), Archived the events moved into errors in it.
type Bucket struct {
	Start     time.Time `json:"start"`
	Succeeded int64     `json:"succeeded"`
	Failed    int64     `json:"failed"`
	Archived  int64     `json:"archived"`
}

// fieldLastErrorAt is when the last failed run of an event ended.
const fieldLastErrorAt = event.FieldLastError + ".at"

// activityIndex serves the count of failures per interval, in both
// collections. It is sparse: only events that failed have a lastError, so
// a success that never failed costs it nothing.
var activityIndex = store.Index{Name: "retrigger_last_error_at", Keys: bson.D{{Key: fieldLastErrorAt, Value: 1}}, Sparse: true}

// viewIndexes are the indexes of the web view's queries on w: its pages'
// and its activity's.
func viewIndexes(w Where) []store.Index {
	return append(append([]store.Index{}, PageIndexes(w)...), activityIndex)
}

// maxBuckets bounds an activity query.
const maxBuckets = 240

// Activity counts, for each of n intervals of step from from, the events
// that succeeded, failed and were archived (see Bucket): four counts per
// interval in all, two grouped counts in each collection (CountByTime),
// each on an index: events by state and last transition
// (retrigger_state_updated), events and archived events by their last
// failure (retrigger_last_error_at), archived events by archive time
// (retrigger_archived). On MongoDB each is one aggregation that reads the
// index keys of the window only. Succeeded events the producer's
// retention deleted are not counted.
func (s *Store) Activity(ctx context.Context, from time.Time, step time.Duration, n int) ([]Bucket, error) {
	if step < time.Millisecond || n <= 0 || n > maxBuckets {
		return nil, errors.New("activity: a step of at least 1ms and 1 to 240 intervals")
	}
	iv := store.Intervals{From: from, Step: step, N: n}
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = from.Add(time.Duration(i) * step)
	}
	for _, q := range activityCounts() {
		counts, err := s.coll(q.w).CountByTime(ctx, q.filter, q.path, iv)
		if err != nil {
			return nil, wrap("counting "+q.figure, err)
		}
		for i, c := range counts {
			switch q.figure {
			case "succeeded":
				out[i].Succeeded += c
			case "failed":
				out[i].Failed += c // in events, then in errors
			case "archived":
				out[i].Archived += c
			}
		}
	}
	return out, nil
}

// activityCount is one grouped count of the activity: the figure it adds
// to, where, what it counts and by which date.
type activityCount struct {
	figure string
	w      Where
	filter bson.D
	path   string
}

// activityCounts are the counts of the activity: each filter's fields and
// then the path lead an index (TestEveryActivityCountHasAnIndex).
func activityCounts() []activityCount {
	return []activityCount{ // ArchivedRecently takes the last
		{"succeeded", InEvents, bson.D{{Key: event.FieldState, Value: stateValue(event.StateSuccess)}}, event.FieldUpdatedAt},
		{"failed", InEvents, bson.D{}, fieldLastErrorAt},
		{"failed", InErrors, bson.D{}, fieldLastErrorAt},
		{"archived", InErrors, bson.D{}, event.FieldArchivedAt},
	}
}

// ArchivedRecently counts the events archived in the hour and in the day
// before now (and any a skewed clock dated up to an hour after it): one
// grouped count of the errors collection by archive time, on
// retrigger_archived.
func (s *Store) ArchivedRecently(ctx context.Context, now time.Time) (hour, day int64, err error) {
	q := activityCounts()[3]
	counts, err := s.coll(q.w).CountByTime(ctx, q.filter, q.path, store.Intervals{From: now.Add(-24 * time.Hour), Step: time.Hour, N: 25})
	if err != nil {
		return 0, 0, wrap("counting recent archives", err)
	}
	for _, n := range counts {
		day += n
	}
	return counts[23] + counts[24], day, nil
}
