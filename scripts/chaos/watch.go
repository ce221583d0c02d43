package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// watcher reads the run's events from MongoDB with the driver, every
// scan: how many are terminal, which leases a killed consumer left
// behind, and, with pruning, which successes it can verify and delete to
// keep the collection small (jongodb's writes slow down as it grows).
type watcher struct {
	events, errs *mongo.Collection
	runID        string
	policy       policy
	pruneAfter   time.Duration // 0: never prune
	// killed says when the check killed the consumer replica owner, if it
	// did.
	killed func(owner string) (time.Time, bool)

	mu      sync.Mutex
	orphans map[bson.ObjectID][]orphan
	pruned  map[bson.ObjectID]record
	// successes seen, by version, since when: a success is pruned once it
	// stayed the same for pruneAfter.
	settled map[bson.ObjectID]settled
	// leases of replicas the check did not kill, seen past their end (by
	// token): a run that never recorded its outcome with no kill behind it.
	expired map[int64]expiredLease
	scans   int
	scanDur time.Duration // the longest scan
}

type settled struct {
	version int64
	since   time.Time
}

type expiredLease struct {
	id    bson.ObjectID
	owner string
	until time.Time
}

func newWatcher(db *mongo.Database, runID string, p policy, pruneAfter time.Duration, killed func(string) (time.Time, bool)) *watcher {
	return &watcher{
		events: db.Collection("events"), errs: db.Collection("errors"), runID: runID, policy: p, pruneAfter: pruneAfter, killed: killed,
		orphans: map[bson.ObjectID][]orphan{}, pruned: map[bson.ObjectID]record{}, settled: map[bson.ObjectID]settled{},
		expired: map[int64]expiredLease{},
	}
}

// snapshot is what one scan read.
type snapshot struct {
	events, errors map[bson.ObjectID]record
	terminal       int // succeeded (pruned included) or archived and gone from events
}

// scan reads the run's events and errors once, records the leases of
// killed replicas, and prunes settled successes when asked to.
func (w *watcher) scan(ctx context.Context, prune bool) (snapshot, error) {
	began := time.Now()
	filter := bson.D{{Key: "payload.run", Value: w.runID}}
	s := snapshot{}
	var err error
	if s.events, err = readAll(ctx, w.events, filter); err != nil {
		return s, fmt.Errorf("reading events: %w", err)
	}
	if s.errors, err = readAll(ctx, w.errs, filter); err != nil {
		return s, fmt.Errorf("reading errors: %w", err)
	}
	now := time.Now()

	w.mu.Lock()
	w.scans++
	for id, r := range s.events {
		if l := r.Retrigger.Lease; l != nil {
			w.sawLease(id, r, now)
		}
	}
	var candidates []record
	for id, r := range s.events {
		_, archived := s.errors[id]
		if r.State != 1 || archived {
			delete(w.settled, id)
			continue
		}
		if r.Retrigger.Lease == nil && w.pruneAfter > 0 {
			st, ok := w.settled[id]
			switch {
			case !ok || st.version != r.Version:
				w.settled[id] = settled{version: r.Version, since: now}
			case prune && now.Sub(st.since) >= w.pruneAfter:
				candidates = append(candidates, r)
			}
		}
	}
	w.mu.Unlock()

	for _, r := range candidates {
		var out outcomes
		if vs := checkSucceeded(r, w.policy, &out); len(vs) > 0 {
			continue // left in place: the final check reports it
		}
		// pinned on the version and state it verified: a change since
		// keeps it
		res, err := w.events.DeleteOne(ctx, bson.D{
			{Key: "_id", Value: r.ID}, {Key: "version", Value: r.Version},
			{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{int32(1), int64(1)}}}},
		})
		if err != nil {
			return s, fmt.Errorf("pruning a verified success: %w", err)
		}
		if res.DeletedCount == 1 {
			w.mu.Lock()
			w.pruned[r.ID] = r
			delete(w.settled, r.ID)
			w.mu.Unlock()
			delete(s.events, r.ID)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for id, r := range s.events {
		if _, archived := s.errors[id]; r.State == 1 && !archived {
			s.terminal++
		}
	}
	for id := range s.errors {
		if _, live := s.events[id]; !live {
			s.terminal++
		}
	}
	s.terminal += len(w.pruned)
	w.scanDur = max(w.scanDur, time.Since(began))
	return s, nil
}

// sawLease records a lease of a killed replica that was live when it was
// killed (a run the kill interrupted), or a lease of a replica not killed
// that is past its end. Called with w.mu held.
func (w *watcher) sawLease(id bson.ObjectID, r record, now time.Time) {
	l := r.Retrigger.Lease
	killedAt, killed := w.killed(l.Owner)
	switch {
	case killed && l.Until.After(killedAt):
		for _, o := range w.orphans[id] {
			if o.Token == l.Token {
				return
			}
		}
		w.orphans[id] = append(w.orphans[id], orphan{Owner: l.Owner, Token: l.Token, KilledAt: killedAt, Seen: now})
	case !killed && now.Sub(l.Until) > time.Second:
		if _, ok := w.expired[l.Token]; !ok {
			w.expired[l.Token] = expiredLease{id: id, owner: l.Owner, until: l.Until}
		}
	}
}

func readAll(ctx context.Context, c *mongo.Collection, filter bson.D) (map[bson.ObjectID]record, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cur, err := c.Find(ctx, filter)
	if err != nil {
		return nil, err
	}
	var rs []record
	if err := cur.All(ctx, &rs); err != nil {
		return nil, err
	}
	out := make(map[bson.ObjectID]record, len(rs))
	for _, r := range rs {
		out[r.ID] = r
	}
	return out, nil
}

// results returns what the watcher collected, for the final check.
func (w *watcher) results() (map[bson.ObjectID][]orphan, map[bson.ObjectID]record, map[int64]expiredLease) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.orphans, w.pruned, w.expired
}
