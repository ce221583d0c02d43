package eventstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// Bucket is what happened in one interval of time, each event counted by
// its last transition: Succeeded events whose last transition (success)
// falls in it, Failed events whose last transition was a failed run that
// waits for a retry, Archived events moved into errors in it.
type Bucket struct {
	Start     time.Time `json:"start"`
	Succeeded int64     `json:"succeeded"`
	Failed    int64     `json:"failed"`
	Archived  int64     `json:"archived"`
}

// maxBuckets bounds an activity query.
const maxBuckets = 240

// activityParallelism bounds the counts an activity query runs at once.
const activityParallelism = 4

// Activity counts, for each of n intervals of step from from, the events
// that succeeded, failed (and wait for a retry) and were archived (see
// Bucket). Each figure is one count on an index: events by state and last
// transition (retrigger_state_updated), archived events by archive time
// (retrigger_archived); on MongoDB a count reads index keys only. An
// event that failed and then succeeded counts once, as a success, and
// succeeded events retired by the producer's retention are not counted.
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
			*dst = n
		}()
	}
	for i := range out {
		start := from.Add(time.Duration(i) * step)
		out[i].Start = start
		rng := bson.D{{Key: "$gte", Value: start}, {Key: "$lt", Value: start.Add(step)}}
		count("successes", &out[i].Succeeded, s.events, bson.D{{Key: event.FieldState, Value: stateValue(event.StateSuccess)}, {Key: event.FieldUpdatedAt, Value: rng}})
		count("failures", &out[i].Failed, s.events, bson.D{{Key: event.FieldState, Value: stateValue(event.StateFailed)}, {Key: event.FieldUpdatedAt, Value: rng}})
		count("archives", &out[i].Archived, s.errs, bson.D{{Key: event.FieldArchivedAt, Value: rng}})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
