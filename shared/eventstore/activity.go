package eventstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// activityParallelism bounds the counts an activity query runs at once.
const activityParallelism = 4

// Activity counts, for each of n intervals of step from from, the events
// that succeeded, failed and were archived (see Bucket). Each figure is a
// count on an index: events by state and last transition
// (retrigger_state_updated), events and archived events by their last
// failure (retrigger_last_error_at), archived events by archive time
// (retrigger_archived); on MongoDB a count reads index keys only.
// Succeeded events the producer's retention deleted are not counted.
func (s *Store) Activity(ctx context.Context, from time.Time, step time.Duration, n int) ([]Bucket, error) {
	if step <= 0 || n <= 0 || n > maxBuckets {
		return nil, errors.New("activity: a positive step and 1 to 240 intervals")
	}
	out := make([]Bucket, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, activityParallelism)
	)
	count := func(what string, dst *int64, c interface {
		Count(context.Context, any) (int64, error)
	}, filter bson.D) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			n, err := c.Count(ctx, filter)
			if err != nil {
				mu.Lock()
				errs = append(errs, wrap("counting "+what, err))
				mu.Unlock()
				return
			}
			atomic.AddInt64(dst, n) // two counts add up to Failed
		}()
	}
	for i := range out {
		start := from.Add(time.Duration(i) * step)
		out[i].Start = start
		for _, q := range activityCounts(start, step) {
			dst := map[string]*int64{"succeeded": &out[i].Succeeded, "failed": &out[i].Failed, "archived": &out[i].Archived}[q.figure]
			count(q.figure, dst, s.coll(q.w), q.filter)
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// activityCount is one count of an interval: the figure it adds to, where
// and what it counts.
type activityCount struct {
	figure string
	w      Where
	filter bson.D
}

// activityCounts are the counts of the interval from start: each filter
// leads with an index's fields (TestEveryActivityCountHasAnIndex).
func activityCounts(start time.Time, step time.Duration) []activityCount {
	rng := bson.D{{Key: "$gte", Value: start}, {Key: "$lt", Value: start.Add(step)}}
	return []activityCount{
		{"succeeded", InEvents, bson.D{{Key: event.FieldState, Value: stateValue(event.StateSuccess)}, {Key: event.FieldUpdatedAt, Value: rng}}},
		{"failed", InEvents, bson.D{{Key: fieldLastErrorAt, Value: rng}}},
		{"failed", InErrors, bson.D{{Key: fieldLastErrorAt, Value: rng}}},
		{"archived", InErrors, bson.D{{Key: event.FieldArchivedAt, Value: rng}}},
	}
}
