package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// flood inserts count events of type typ at rate per second (0: as fast
// as the server takes them), each with an _id chosen here so that an
// insert whose answer was lost can be told from one that was never
// applied, and the run's id in its payload.
type flood struct {
	events    *mongo.Collection
	runID     string
	typ       string
	count     int
	rate      float64
	inserters int // inserts at once

	inserted  []bson.ObjectID
	latencies []time.Duration
	began     time.Time
	took      time.Duration
}

func (f *flood) run(ctx context.Context) error {
	f.began = time.Now()
	defer func() { f.took = time.Since(f.began) }()
	f.inserted = make([]bson.ObjectID, f.count)
	f.latencies = make([]time.Duration, f.count)
	next := make(chan int)
	errs := make(chan error, max(f.inserters, 1))
	var wg sync.WaitGroup
	for range max(f.inserters, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := bson.NewObjectID()
				doc := bson.D{
					{Key: "_id", Value: id}, {Key: "type", Value: f.typ},
					{Key: "payload", Value: bson.D{{Key: "run", Value: f.runID}, {Key: "n", Value: int32(i)}}},
				}
				start := time.Now()
				if err := f.insert(ctx, doc); err != nil {
					errs <- fmt.Errorf("inserting event %d: %w", i, err)
					return
				}
				f.latencies[i], f.inserted[i] = time.Since(start), id
			}
		}()
	}
	var err error
schedule:
	for i := range f.count {
		if f.rate > 0 {
			if err = sleepUntil(ctx, f.began.Add(time.Duration(float64(i)/f.rate*float64(time.Second)))); err != nil {
				break
			}
		}
		select {
		case next <- i:
		case err = <-errs:
			break schedule
		case <-ctx.Done():
			err = ctx.Err()
			break schedule
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// insert inserts doc, trying again after an error: the server is never
// killed, so an error is a timeout or a dropped connection, and a
// duplicate key on a later try means an earlier one was applied.
func (f *flood) insert(ctx context.Context, doc bson.D) error {
	var err error
	for try := range 5 {
		if try > 0 {
			if err := sleepUntil(ctx, time.Now().Add(time.Second)); err != nil {
				return err
			}
		}
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = f.events.InsertOne(ictx, doc)
		cancel()
		if err == nil || (try > 0 && mongo.IsDuplicateKeyError(err)) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// percentiles of ds: p50, p99, max.
func percentiles(ds []time.Duration) (p50, p99, top time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}
