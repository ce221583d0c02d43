// Command jobflood checks a deployment of the stock commands whose consumer
// replicas run the built-in demo handler (scripts/wire/pipeline.sh). The
// load generator cannot: its invariant check counts the runs of its own
// handler, so its worker replicas must be the only ones on their streams.
//
// It inserts -count events of -type, each tagged with a run id in its
// payload, waits (bounded by -timeout) until each is terminal, and checks
// what the storage can show without the handler's counts:
//
//   - none lost: each event is either succeeded in events or archived in
//     errors, exactly once, and in no other place;
//   - none left behind: no event of the run is new, failed or error in
//     events;
//   - attempts within the policy: a succeeded event has fewer than
//     -max-attempts failed runs, an archived one exactly -max-attempts (the
//     demo handler's failures are retryable, so only exhaustion archives).
//
// It prints one summary line and exits 1 when a check fails or the events
// did not all finish in time, 2 on a bad flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
)

type options struct {
	uri, database, typ string
	count, maxAttempts int
	timeout, poll      time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("jobflood", flag.ContinueOnError)
	fs.StringVar(&o.uri, "mongodb-uri", "", "MongoDB (or wire-compatible server) of the deployment (required)")
	fs.StringVar(&o.database, "mongodb-database", "retrigger", "database of the events and errors collections")
	fs.StringVar(&o.typ, "type", "job", "event type, handled by the consumers' demo handler")
	fs.IntVar(&o.count, "count", 200, "events to insert")
	fs.IntVar(&o.maxAttempts, "max-attempts", 3, "the consumers' -retry-max-attempts")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound on inserting and waiting for every event to be terminal")
	fs.DurationVar(&o.poll, "poll", 500*time.Millisecond, "time between two looks at the storage")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if o.uri == "" || o.count < 1 || o.maxAttempts < 1 {
		fmt.Fprintln(os.Stderr, "jobflood: -mongodb-uri is required; -count and -max-attempts must be positive")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "jobflood:", err)
		os.Exit(1)
	}
}

// outcome is where one event of the run is.
type outcome struct {
	inEvents, inErrors int
	state              int64 // in events
	attempts           int64 // in events or errors
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	db, err := mongostore.Open(ctx, o.uri, o.database)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close(context.Background()) }()
	events, errs := db.Collection("events"), db.Collection("errors")

	runID := bson.NewObjectID().Hex()
	began := time.Now()
	for i := range o.count {
		if err := events.InsertOne(ctx, bson.D{
			{Key: "type", Value: o.typ},
			{Key: "payload", Value: bson.D{{Key: "run", Value: runID}, {Key: "n", Value: int32(i)}}},
		}); err != nil {
			return fmt.Errorf("inserting event %d: %w", i, err)
		}
	}
	inserted := time.Since(began)

	filter := bson.D{{Key: "payload.run", Value: runID}}
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	var seen map[string]*outcome
	for {
		seen, err = scan(ctx, events, errs, filter)
		if err != nil && ctx.Err() == nil {
			return err
		}
		terminal := 0
		for _, oc := range seen {
			// archived: in errors and deleted from events (the archiver
			// writes errors first, so for a moment it is in both)
			if (oc.inErrors > 0 && oc.inEvents == 0) || (oc.inErrors == 0 && oc.inEvents > 0 && oc.state == 1) {
				terminal++
			}
		}
		if terminal >= o.count || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	took := time.Since(began)
	if ctx.Err() != nil { // timed out: look once more, with a context of its own
		last, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if seen, err = scan(last, events, errs, filter); err != nil {
			return err
		}
	}

	var (
		succeeded, firstTime, archived int
		problems                       []string
	)
	bad := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	if len(seen) != o.count {
		bad("%d events of the run found in events and errors, %d inserted", len(seen), o.count)
	}
	for id, oc := range seen {
		switch {
		case oc.inEvents+oc.inErrors > 1:
			bad("%s: %d copies in events, %d in errors", id, oc.inEvents, oc.inErrors)
		case oc.inErrors == 1:
			archived++
			if oc.attempts != int64(o.maxAttempts) {
				bad("%s: archived with %d attempts, the policy allows %d", id, oc.attempts, o.maxAttempts)
			}
		case oc.state != 1:
			bad("%s: left in events in state %d with %d attempts", id, oc.state, oc.attempts)
		default:
			succeeded++
			if oc.attempts == 0 {
				firstTime++
			}
			if oc.attempts >= int64(o.maxAttempts) {
				bad("%s: succeeded after %d failed attempts, the policy allows %d", id, oc.attempts, o.maxAttempts-1)
			}
		}
	}
	fmt.Printf("jobflood: %d inserted in %s, %d succeeded (%d first time), %d archived after %s; %d problems\n",
		o.count, inserted.Round(time.Millisecond), succeeded, firstTime, archived, took.Round(time.Millisecond), len(problems))
	for _, p := range problems {
		fmt.Println("  ", p)
	}
	if len(problems) > 0 {
		return errors.New("the deployment broke an invariant, or did not finish in time")
	}
	return nil
}

// scan reads where every event of the run is.
func scan(ctx context.Context, events, errs store.Collection, filter bson.D) (map[string]*outcome, error) {
	out := map[string]*outcome{}
	get := func(doc bson.Raw) *outcome {
		id := doc.Lookup("_id").String()
		if out[id] == nil {
			out[id] = &outcome{}
		}
		return out[id]
	}
	docs, err := events.Find(ctx, filter, store.FindOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	for _, doc := range docs {
		oc := get(doc)
		oc.inEvents++
		oc.state, _ = doc.Lookup("state").AsInt64OK()
		oc.attempts, _ = doc.Lookup("attempts").AsInt64OK()
	}
	docs, err = errs.Find(ctx, filter, store.FindOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading errors: %w", err)
	}
	for _, doc := range docs {
		oc := get(doc)
		oc.inErrors++
		oc.attempts, _ = doc.Lookup("attempts").AsInt64OK()
	}
	return out, nil
}
