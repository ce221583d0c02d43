// Command deploycheck checks, on your own MongoDB replica set and NATS,
// the behaviours retrigger relies on that the embedded engine cannot show
// (docs/DESIGN.md): it runs a producer, a consumer replica and the archiver
// in this process against a scratch database and scratch streams, then
//
//   - runs events through (one succeeds, one fails until it is archived);
//   - says whether the deployment has transactions (the archive's move is
//     then atomic) and which write concern it defaults to;
//   - seeds events and checks, with explain("executionStats"), that each of
//     the sweeper's queries reads its page from an index, examining about
//     as many documents as it returns;
//   - drops the scratch events collection under the live relay, then sees
//     new events run (the relay restarts after the invalidate);
//   - deletes the events stream, then sees new events run (the producer
//     creates it again);
//   - and cleans up: it drops the scratch database and deletes the scratch
//     streams.
//
// It refuses a database whose name does not contain "scratch", and uses
// its own stream and subject prefixes, so it never touches a real
// deployment's data.
//
//	go run ./scripts/deploycheck -mongodb-uri 'mongodb://h1,h2,h3/?replicaSet=rs0' -nats-url nats://n1:4222 -mongodb-database retrigger_scratch
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store/mongostore"
)

type settings struct {
	uri, natsURL, database string
	seed                   int
	timeout                time.Duration
	disableChangeStreams   bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o settings
	fs := flag.NewFlagSet("deploycheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.uri, "mongodb-uri", "", "MongoDB replica set to check (required)")
	fs.StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server with JetStream")
	fs.StringVar(&o.database, "mongodb-database", "retrigger_scratch", `scratch database to use and drop; its name must contain "scratch"`)
	fs.IntVar(&o.seed, "seed", 20000, "events seeded for the explain plans")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound on each check")
	fs.BoolVar(&o.disableChangeStreams, "disable-change-streams", false, "the server has no change streams: skip the checks that need them")
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "deploycheck: %v\n", err)
		return 2
	}
	switch {
	case o.uri == "":
		fmt.Fprintln(stderr, "deploycheck: "+config.Invalid("mongodb-uri", "is required: the replica set to check").Error())
		return 2
	case !strings.Contains(o.database, "scratch"):
		fmt.Fprintln(stderr, "deploycheck: "+config.Invalid("mongodb-database", "%q does not contain \"scratch\": deploycheck drops the database it uses, so it refuses one that may hold data", o.database).Error())
		return 2
	case o.seed < 1:
		fmt.Fprintln(stderr, "deploycheck: "+config.Invalid("seed", "must be at least 1, got %d", o.seed).Error())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &checker{o: o, out: stdout}
	err := c.run(ctx)
	if c.failed > 0 || err != nil {
		if err != nil {
			fmt.Fprintf(stdout, "FAIL  %v\n", err)
		}
		fmt.Fprintf(stdout, "deploycheck: %d check(s) failed\n", c.failed+boolInt(err != nil))
		return 1
	}
	if c.skipped > 0 {
		fmt.Fprintf(stdout, "deploycheck: every check that ran passed; %d skipped (above)\n", c.skipped)
		return 0
	}
	fmt.Fprintln(stdout, "deploycheck: every check passed")
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checker runs the checks and reports each.
type checker struct {
	o       settings
	out     io.Writer
	failed  int
	skipped int

	db      *mongostore.DB
	client  *mongo.Client
	nc      *nats.Conn
	js      jetstream.JetStream
	names   messaging.Names
	store   *eventstore.Store
	cancels []func()
}

func (c *checker) report(name string, err error, detail string) {
	if err != nil {
		c.failed++
		fmt.Fprintf(c.out, "FAIL  %s: %v\n", name, err)
		return
	}
	fmt.Fprintf(c.out, "ok    %s%s\n", name, detail)
}

func (c *checker) skip(what string) {
	c.skipped++
	fmt.Fprintf(c.out, "skip  %s\n", what)
}

func (c *checker) run(ctx context.Context) (err error) {
	if c.db, err = mongostore.Open(ctx, c.o.uri, c.o.database, mongostore.WithAppName("retrigger-deploycheck")); err != nil {
		return err
	}
	defer c.db.Close(context.WithoutCancel(ctx))
	if c.client, err = mongo.Connect(options.Client().ApplyURI(c.o.uri)); err != nil {
		return fmt.Errorf("connecting to MongoDB: %w", err)
	}
	defer c.client.Disconnect(context.WithoutCancel(ctx))
	if c.nc, err = nats.Connect(c.o.natsURL, nats.Name("retrigger-deploycheck")); err != nil {
		return fmt.Errorf("connecting to NATS: %w", err)
	}
	defer c.nc.Close()
	if c.js, err = jetstream.New(c.nc); err != nil {
		return err
	}
	suffix := bson.NewObjectID().Hex()[18:]
	c.names = messaging.Names{StreamPrefix: "RTCHECK_" + strings.ToUpper(suffix), SubjectPrefix: "rtcheck" + suffix}
	c.store = eventstore.New(c.db, eventstore.Options{})
	defer c.cleanup(context.WithoutCancel(ctx))

	c.deployment(ctx)
	if err := c.start(ctx); err != nil {
		return err
	}
	c.roundTrip(ctx)
	c.explain(ctx)
	if c.o.disableChangeStreams {
		c.skip("drop under a live relay: -disable-change-streams")
	} else {
		c.dropUnderRelay(ctx)
	}
	c.streamDeleted(ctx)
	return nil
}

// deployment reports what the deployment offers.
func (c *checker) deployment(ctx context.Context) {
	err := c.db.Transact(ctx, func(context.Context) error { return nil })
	switch {
	case errors.Is(err, nil):
		c.report("transactions", nil, ": yes: the archive's move between events and errors is one majority-write transaction")
	default:
		c.report("transactions", nil, fmt.Sprintf(": no (%v): the archive's move is an ordered pair of idempotent writes", err))
	}
	c.writeConcern(ctx)
	c.uriWriteConcern()
}

// writeConcern reports the write concern the deployment's writes get by
// default: every write but the archive's move uses it (README,
// Production).
func (c *checker) writeConcern(ctx context.Context) {
	var res bson.Raw
	err := c.client.Database("admin").RunCommand(ctx, bson.D{{Key: "getDefaultRWConcern", Value: 1}}).Decode(&res)
	if err != nil {
		c.skip(fmt.Sprintf("default write concern: the server does not say (getDefaultRWConcern: %v); MongoDB 4.4+ does", err))
		return
	}
	wc, ok := res.Lookup("defaultWriteConcern").DocumentOK()
	source, _ := res.Lookup("defaultWriteConcernSource").StringValueOK()
	if !ok {
		c.report("default write concern", nil, ": none set: the server's implicit default (w: majority on a replica set of data-bearing members, MongoDB 5.0+)")
		return
	}
	detail := ": " + wc.String()
	if source != "" {
		detail += " (" + source + ")"
	}
	if w := wc.Lookup("w"); w.Type != bson.TypeString || w.StringValue() != "majority" {
		c.warn("default write concern", detail+": not w: majority, so a failover can roll back a claim, a completion or a checkpoint, and that work runs again (README, Production)")
		return
	}
	c.report("default write concern", nil, detail)
}

// uriWriteConcern reports a write concern the connection string sets,
// which overrides the deployment's default for every write but the
// archive's move.
func (c *checker) uriWriteConcern() {
	cs, err := connstring.Parse(c.o.uri)
	if err != nil {
		return
	}
	switch {
	case cs.WString == "majority":
		c.report("the connection string's write concern", nil, ": w=majority")
	case cs.WString != "":
		c.warn("the connection string's write concern", fmt.Sprintf(": w=%s overrides the deployment's default; w=majority keeps every write through a failover", cs.WString))
	case cs.WNumberSet:
		c.warn("the connection string's write concern", fmt.Sprintf(": w=%d overrides the deployment's default; w=majority keeps every write through a failover (README, Production: do not put w=1 in it)", cs.WNumber))
	}
}

// warn reports what works but is not what retrigger recommends.
func (c *checker) warn(name, detail string) {
	fmt.Fprintf(c.out, "warn  %s%s\n", name, detail)
}

// start runs a producer, a worker and an archiver on the scratch names.
func (c *checker) start(ctx context.Context) error {
	pcfg := producer.Config{Names: c.names, DisableChangeStreams: c.o.disableChangeStreams,
		Sweeper: producer.SweeperConfig{Interval: time.Second}, Leader: producer.LeaderConfig{TTL: 5 * time.Second}}
	p, err := producer.New(pcfg, c.db, c.nc)
	if err != nil {
		return err
	}
	w, err := consumer.NewWorker(consumer.Config{Names: c.names,
		Handlers: map[string]consumer.Handler{
			"ok":   func(context.Context, *consumer.Event) error { return nil },
			"fail": func(context.Context, *consumer.Event) error { return errors.New("deploycheck: failing on purpose") },
		},
		Policies: retry.Policies{Default: retry.Policy{InitialInterval: 100 * time.Millisecond, MaxInterval: 200 * time.Millisecond, MaxAttempts: 2}},
	}, c.db, c.nc)
	if err != nil {
		return err
	}
	a, err := consumer.NewArchiver(consumer.ArchiverConfig{Names: c.names}, c.db, c.nc)
	if err != nil {
		return err
	}
	stopped := make(chan error, 1) // the producer's, when it stops by itself
	for i, r := range []interface{ Run(context.Context) error }{p, w, a} {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := r.Run(rctx); i == 0 && rctx.Err() == nil {
				stopped <- err
			}
		}()
		c.cancels = append(c.cancels, func() { cancel(); <-done })
	}
	select {
	case <-p.Ready():
		return nil
	case err := <-stopped:
		if errors.Is(err, producer.ErrNoChangeStreams) {
			// as the producer command says it: the flag to run with
			return fmt.Errorf("the server has no change streams: run deploycheck with -disable-change-streams, "+
				"and the producer with -disable-change-streams (its sweeper then publishes new events); the producer said: %w", err)
		}
		return fmt.Errorf("the producer stopped: %w", err)
	case <-time.After(c.o.timeout):
		return fmt.Errorf("the producer did not start within -timeout %s: is the replica set primary reachable, and does NATS have JetStream?", c.o.timeout)
	}
}

// insert inserts an event of typ and returns its id.
func (c *checker) insert(ctx context.Context, typ string) (bson.RawValue, error) {
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: typ}, {Key: "createdAt", Value: time.Now()}})
	if err != nil {
		return bson.RawValue{}, err
	}
	return bson.Raw(raw).Lookup("_id"), c.db.Collection(eventstore.DefaultEvents).InsertOne(ctx, bson.Raw(raw))
}

// waitDone waits until the event succeeded, or is archived.
func (c *checker) waitDone(ctx context.Context, id bson.RawValue, archived bool) error {
	deadline := time.Now().Add(c.o.timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		doc, err := c.store.Find(ctx, id)
		switch {
		case archived && errors.Is(err, eventstore.ErrNotFound):
			if _, err := c.db.Collection(eventstore.DefaultErrors).FindOne(ctx, bson.D{{Key: "_id", Value: id}}); err == nil {
				return nil
			}
		case err == nil && !archived:
			if ev, err := event.Parse(doc); err == nil && ev.State == event.StateSuccess {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return fmt.Errorf("event %s not done after %s", event.IDString(id), c.o.timeout)
}

func (c *checker) roundTrip(ctx context.Context) {
	ok, err := c.insert(ctx, "ok")
	if err == nil {
		err = c.waitDone(ctx, ok, false)
	}
	c.report("an event runs and succeeds", err, "")
	bad, err := c.insert(ctx, "fail")
	if err == nil {
		err = c.waitDone(ctx, bad, true)
	}
	c.report("a failing event is retried, then archived into errors", err, "")
}

// explain seeds events and checks the sweeper's query plans.
func (c *checker) explain(ctx context.Context) {
	events := c.db.Collection(eventstore.DefaultEvents)
	old := time.Now().Add(-time.Hour)
	var batch []any
	for i := range c.o.seed {
		batch = append(batch, bson.D{{Key: "_id", Value: fmt.Sprintf("seed-%07d", i)}, {Key: "type", Value: "none"},
			{Key: "state", Value: int32(1)}, {Key: "version", Value: int64(1)}, {Key: "updatedAt", Value: old}})
		if len(batch) == 5000 || i == c.o.seed-1 {
			if err := events.InsertMany(ctx, batch); err != nil {
				c.report("seeding events for the explain plans", err, "")
				return
			}
			batch = batch[:0]
		}
	}
	for _, q := range (eventstore.SweepOptions{Now: time.Now(), Stall: time.Minute, LeaseGrace: time.Second}).Queries() {
		find := bson.D{{Key: "find", Value: eventstore.DefaultEvents}, {Key: "filter", Value: q.Filter}, {Key: "limit", Value: 500}}
		if q.Sort != nil {
			find = append(find, bson.E{Key: "sort", Value: q.Sort})
		}
		var res bson.Raw
		err := c.client.Database(c.o.database).RunCommand(ctx, bson.D{{Key: "explain", Value: find}, {Key: "verbosity", Value: "executionStats"}}).Decode(&res)
		if isCommandNotFound(err) {
			c.skip(fmt.Sprintf("the sweep queries' plans: the server has no explain command (%v); MongoDB has", err))
			break
		}
		if err != nil {
			c.report("explain of the sweep query "+q.Name, err, "")
			continue
		}
		stats, _ := res.Lookup("executionStats").DocumentOK()
		returned, _ := stats.Lookup("nReturned").AsInt64OK()
		examined, _ := stats.Lookup("totalDocsExamined").AsInt64OK()
		keys, _ := stats.Lookup("totalKeysExamined").AsInt64OK()
		var perr error
		if examined > returned+10 {
			perr = fmt.Errorf("examined %d documents to return %d, of %d events: it does not read from an index", examined, returned, c.o.seed)
		}
		c.report("sweep query "+q.Name+" reads an index", perr, fmt.Sprintf(": %d returned, %d documents and %d keys examined", returned, examined, keys))
	}
	_, err := events.DeleteMany(ctx, bson.D{{Key: "type", Value: "none"}})
	if err != nil {
		c.report("removing the seeded events", err, "")
	}
}

func (c *checker) dropUnderRelay(ctx context.Context) {
	err := c.client.Database(c.o.database).Collection(eventstore.DefaultEvents).Drop(ctx)
	if err == nil {
		var id bson.RawValue
		if id, err = c.insert(ctx, "ok"); err == nil {
			err = c.waitDone(ctx, id, false)
		}
	}
	c.report("the events collection dropped under the live relay: new events run", err, "")
}

func (c *checker) streamDeleted(ctx context.Context) {
	err := c.js.DeleteStream(ctx, c.names.EventsStream())
	if err == nil {
		var id bson.RawValue
		if id, err = c.insert(ctx, "ok"); err == nil {
			err = c.waitDone(ctx, id, false)
		}
	}
	c.report("the events stream deleted: created again, new events run", err, "")
}

func (c *checker) cleanup(ctx context.Context) {
	for i := len(c.cancels) - 1; i >= 0; i-- {
		c.cancels[i]()
	}
	for _, s := range []string{c.names.EventsStream(), c.names.DLQStream()} {
		if err := c.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			fmt.Fprintf(c.out, "warn  deleting stream %s: %v\n", s, err)
		}
	}
	db := c.client.Database(c.o.database)
	err := db.Drop(ctx)
	if isCommandNotFound(err) { // a server without dropDatabase: remove what deploycheck wrote
		err = nil
		for _, name := range []string{eventstore.DefaultEvents, eventstore.DefaultErrors, eventstore.DefaultCheckpoints, eventstore.DefaultFlow} {
			coll := db.Collection(name)
			if derr := coll.Drop(ctx); isCommandNotFound(derr) {
				_, derr = coll.DeleteMany(ctx, bson.D{})
				err = errors.Join(err, derr)
			} else {
				err = errors.Join(err, derr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(c.out, "warn  dropping database %s: %v\n", c.o.database, err)
	}
}

// isCommandNotFound: the server does not know the command (code 59).
func isCommandNotFound(err error) bool {
	var cmd mongo.CommandError
	return errors.As(err, &cmd) && cmd.Code == 59
}
