// Command chaos checks the stock commands under kill -9. It builds the
// producer, the consumer, the archiver and a nats-server once, runs them as
// separate processes on 127.0.0.1 (the producer without change streams, two
// consumers with the demo handler, the archiver, and a nats-server on its
// own store) against jongodb, floods them with events, and kill -9s a
// random component every few seconds, nats-server included, starting each
// again. Then it reads MongoDB itself, with the driver, and checks every
// event it inserted:
//
//   - terminal: succeeded in events, or one document in errors and none in
//     events; none lost, none left new, failed or error;
//   - none left leased;
//   - none double-counted: attempts equal the failed runs in its history,
//     runs numbered 1, 2, 3..., one success for a success, none for an
//     archive, within the retry policy;
//   - no crashed archive without a crash: an event archived as crashed
//     must have had each of its unfinished runs interrupted by a kill of
//     the consumer running it (a lease the check saw held by a consumer
//     replica after it killed that replica).
//
// It prints a report and exits 1 when a check fails or the run could not
// be done, 2 on a bad flag. Every process it starts runs in a process
// group of its own and is killed, with its group, on every exit path. See
// scripts/chaos/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

type settings struct {
	events       int
	rate         float64
	inserters    int
	killEvery    time.Duration
	restartDelay time.Duration
	failureRate  float64
	latency      time.Duration
	maxAttempts  int64
	maxCrashes   int64
	ackWait      time.Duration
	storeTimeout time.Duration
	leaderTTL    time.Duration
	sweep        time.Duration
	pruneAfter   time.Duration
	timeout      time.Duration
	seed         uint64
	jongodb      string
	bin          string
	keep         bool
	syncAlways   bool
	killNATS     bool
}

func (s *settings) register(fs *flag.FlagSet) {
	fs.IntVar(&s.events, "events", 300, "events to insert (at least 1)")
	fs.Float64Var(&s.rate, "rate", 20, "events inserted per second (0: as fast as jongodb takes them)")
	fs.IntVar(&s.inserters, "inserters", 1, "inserts at once (at least 1): more than one loads the server as concurrent clients would")
	fs.DurationVar(&s.killEvery, "kill-every", 3*time.Second, "mean time between two kills, each 0.5 to 1.5 times it (0: no kills)")
	fs.DurationVar(&s.restartDelay, "restart-delay", 500*time.Millisecond, "time between a component's exit and its new start")
	fs.BoolVar(&s.killNATS, "kill-nats", true, "kill the nats-server too")
	fs.Float64Var(&s.failureRate, "failure-rate", 0.3, "share of the demo handler's runs that fail (retryable)")
	fs.DurationVar(&s.latency, "handler-latency", 20*time.Millisecond, "how long the demo handler works")
	fs.Int64Var(&s.maxAttempts, "max-attempts", 3, "the consumers' -retry-max-attempts")
	fs.Int64Var(&s.maxCrashes, "max-crashes", 5, "the consumers' -max-crashes")
	fs.DurationVar(&s.ackWait, "ack-wait", 10*time.Second, "the consumers' and the archiver's -ack-wait: how long a killed consumer's run holds its lease")
	fs.DurationVar(&s.storeTimeout, "store-timeout", 3*time.Second, "the consumers' and the archiver's -store-timeout")
	fs.DurationVar(&s.leaderTTL, "leader-ttl", 5*time.Second, "the producer's -leader-ttl: how long a restarted producer waits for its killed predecessor's leadership")
	fs.DurationVar(&s.sweep, "sweep-interval", 500*time.Millisecond, "the producer's -sweep-interval (it alone publishes: no change streams)")
	fs.DurationVar(&s.pruneAfter, "prune-after", 0, "delete each success this long after the check verified it, to keep jongodb's collection small (0: keep them all)")
	fs.DurationVar(&s.timeout, "timeout", 5*time.Minute, "bound on the whole run, build excluded")
	fs.Uint64Var(&s.seed, "seed", 0, "seed of the kill schedule (0: from the clock; the report prints it)")
	fs.StringVar(&s.jongodb, "jongodb", os.Getenv("RETRIGGER_TEST_JONGODB"), "jongodb binary (default $RETRIGGER_TEST_JONGODB, else scripts/wire/install.sh jongodb installs it)")
	fs.StringVar(&s.bin, "bin", "", "directory holding producer, consumer, archiver and nats-server already built (default: build them)")
	fs.BoolVar(&s.keep, "keep", false, "keep the logs (they are kept anyway when a check fails)")
	fs.BoolVar(&s.syncAlways, "nats-sync-always", true, "run nats-server with sync_interval: always, as the README asks of production")
}

func (s *settings) validate() error {
	switch {
	case s.events < 1:
		return errors.New("-events must be at least 1")
	case s.rate < 0:
		return errors.New("-rate must not be negative")
	case s.inserters < 1:
		return errors.New("-inserters must be at least 1")
	case s.killEvery < 0 || s.restartDelay < 0 || s.pruneAfter < 0:
		return errors.New("-kill-every, -restart-delay and -prune-after must not be negative")
	case s.failureRate < 0 || s.failureRate > 1:
		return errors.New("-failure-rate must be 0 to 1")
	case s.maxAttempts < 1 || s.maxCrashes < 1:
		return errors.New("-max-attempts and -max-crashes must be at least 1")
	case s.timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	return nil
}

func main() { os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr)) }

// cli runs the command with args and returns its exit code.
func cli(args []string, stdout, stderr io.Writer) int {
	var s settings
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintln(stdout, "chaos: kill -9s the stock commands under a flood of events on jongodb, then checks every event in MongoDB (scripts/chaos/README.md). Flags:")
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "chaos: %v (chaos -help lists the flags)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected argument %q (chaos -help lists the flags)\n", fs.Arg(0))
		return 2
	}
	if err := s.validate(); err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 2
	}
	if s.seed == 0 {
		s.seed = uint64(time.Now().UnixNano())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ok, err := run(ctx, s, args, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// logf prints a progress line on stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chaos: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// run does one chaos run and reports whether every check passed.
func run(ctx context.Context, s settings, args []string, out io.Writer) (ok bool, err error) {
	work, err := os.MkdirTemp("", "retrigger-chaos-")
	if err != nil {
		return false, err
	}
	ps := newProcs()
	defer func() {
		ps.killAll() // whatever still runs, on every path
		_ = os.RemoveAll(filepath.Join(work, "nats"))
		_ = os.RemoveAll(filepath.Join(work, "bin"))
		if s.keep || !ok {
			logf("logs kept in %s", work)
			return
		}
		_ = os.RemoveAll(work)
	}()
	logs := filepath.Join(work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return false, err
	}

	bin := s.bin
	if bin == "" {
		root, err := workspaceRoot()
		if err != nil {
			return false, err
		}
		bin = filepath.Join(work, "bin")
		logf("building the producer, the consumer, the archiver and nats-server")
		if err := build(ctx, root, bin); err != nil {
			return false, err
		}
		if s.jongodb == "" {
			if s.jongodb, err = installJongodb(ctx, root); err != nil {
				return false, err
			}
		}
	}
	if s.jongodb == "" {
		return false, errors.New("no jongodb: give -jongodb or set RETRIGGER_TEST_JONGODB (scripts/wire/install.sh jongodb installs it)")
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	mongoURI, err := startJongodb(ctx, ps, s.jongodb, filepath.Join(logs, "jongodb.log"))
	if err != nil {
		return false, err
	}
	r := &runner{s: s, args: args, ps: ps, bin: bin, work: work, mongoURI: mongoURI, rnd: rand.New(rand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15))}
	return r.run(ctx, out)
}

func installJongodb(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "wire", "install.sh"), "jongodb")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("installing jongodb: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// runner is one run's deployment and schedule.
type runner struct {
	s        settings
	args     []string // the command line, for the report
	ps       *procs
	bin      string
	work     string
	mongoURI string
	natsURL  string
	rnd      *rand.Rand
	sup      *supervisor
	comps    []*component
}

const (
	database = "retrigger_chaos"
	typ      = "job"
)

// components builds the command lines of the deployment.
func (r *runner) components() error {
	logs := filepath.Join(r.work, "logs")
	natsPort, err := freePort()
	if err != nil {
		return err
	}
	monitor, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(r.work, "nats.conf")
	if err := natsConfig(conf, natsPort, monitor, filepath.Join(r.work, "nats"), r.s.syncAlways); err != nil {
		return err
	}
	r.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	common := func(httpPort int) []string {
		return []string{
			"-mongodb-uri", r.mongoURI, "-mongodb-database", database, "-nats-url", r.natsURL,
			"-log-format", "json", "-log-level", "info", "-http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"-connect-timeout", "2m",
		}
	}
	add := func(name, bin string, port int, args func(int) []string, replicaOf func(int) string) error {
		f, err := os.OpenFile(filepath.Join(logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
		if name == "nats-server" {
			ready = fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
		}
		r.comps = append(r.comps, &component{name: name, bin: filepath.Join(r.bin, bin), args: args, ready: ready, replicaOf: replicaOf, log: f, up: make(chan struct{})})
		return nil
	}
	if err := add("nats-server", "nats-server", monitor, func(int) []string { return []string{"-c", conf} }, nil); err != nil {
		return err
	}
	producerPort, err := freePort()
	if err != nil {
		return err
	}
	if err := add("producer", "producer", producerPort, func(int) []string {
		return append(common(producerPort), "-disable-change-streams", "-sweep-interval", r.s.sweep.String(), "-leader-ttl", r.s.leaderTTL.String())
	}, nil); err != nil {
		return err
	}
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("consumer-%d", i)
		port, err := freePort()
		if err != nil {
			return err
		}
		replica := func(inc int) string { return fmt.Sprintf("%s.%d", name, inc) }
		if err := add(name, "consumer", port, func(inc int) []string {
			return append(common(port), "-replica", replica(inc), "-handlers", typ+"=demo",
				"-demo-failure-rate", fmt.Sprint(r.s.failureRate), "-demo-latency", r.s.latency.String(),
				"-ack-wait", r.s.ackWait.String(), "-store-timeout", r.s.storeTimeout.String(),
				"-max-crashes", fmt.Sprint(r.s.maxCrashes), "-retry-max-attempts", fmt.Sprint(r.s.maxAttempts),
				"-retry-initial", "200ms", "-retry-max-interval", "2s")
		}, replica); err != nil {
			return err
		}
	}
	archiverPort, err := freePort()
	if err != nil {
		return err
	}
	return add("archiver", "archiver", archiverPort, func(int) []string {
		return append(common(archiverPort), "-ack-wait", r.s.ackWait.String(), "-store-timeout", r.s.storeTimeout.String())
	}, nil)
}

func (r *runner) run(ctx context.Context, out io.Writer) (bool, error) {
	if err := r.components(); err != nil {
		return false, err
	}
	killLog, err := os.Create(filepath.Join(r.work, "logs", "kills.log"))
	if err != nil {
		return false, err
	}
	defer killLog.Close()
	r.sup = &supervisor{ps: r.ps, restartDelay: r.s.restartDelay, readyTimeout: time.Minute,
		deadOwners: map[string]time.Time{}, toReady: map[string][]time.Duration{}, killLog: killLog}
	defer func() {
		for _, c := range r.comps {
			_ = c.log.Close()
		}
	}()
	// Stopped on every path; the second stop of a normal end is a no-op.
	defer r.sup.stopAll(r.comps, 5*time.Second)

	// nats-server first, then the producer (it creates the streams), then
	// the rest; each must be ready once before the chaos starts.
	for _, c := range r.comps {
		r.sup.supervise(ctx, c)
		if c.name == "nats-server" || c.name == "producer" {
			if err := waitUp(ctx, c); err != nil {
				return false, err
			}
		}
	}
	for _, c := range r.comps {
		if err := waitUp(ctx, c); err != nil {
			return false, err
		}
	}
	logf("deployment ready: jongodb %s, nats-server %s; logs in %s", r.mongoURI, r.natsURL, filepath.Join(r.work, "logs"))

	client, err := mongo.Connect(options.Client().ApplyURI(r.mongoURI).SetTimeout(time.Minute))
	if err != nil {
		return false, err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	db := client.Database(database)
	runID := bson.NewObjectID().Hex()
	p := policy{maxAttempts: r.s.maxAttempts, maxCrashes: r.s.maxCrashes, history: 20}
	w := newWatcher(db, runID, p, r.s.pruneAfter, r.sup.killedOwner)
	f := &flood{events: db.Collection("events"), runID: runID, typ: typ, count: r.s.events, rate: r.s.rate, inserters: r.s.inserters}

	began := time.Now()
	floodDone := make(chan error, 1)
	go func() { floodDone <- f.run(ctx) }()
	chaos := r.chaos(ctx, w, floodDone)
	if errors.Is(chaos.floodErr, context.Canceled) {
		return false, errors.New("interrupted during the flood")
	}
	if chaos.floodErr != nil {
		return false, fmt.Errorf("the flood stopped: %w", chaos.floodErr)
	}
	lastKill := time.Now()
	if ks := r.sup.killed(); len(ks) > 0 {
		lastKill = ks[len(ks)-1].At
	}
	logf("flood done: %d events in %s; %d kills; waiting for every event to be terminal", len(f.inserted), f.took.Round(time.Millisecond), len(r.sup.killed()))

	// Every component runs again; wait until every event is terminal.
	var drained time.Duration
	var snap snapshot
	progress := time.Now()
	for {
		snap, err = w.scan(ctx, true)
		if err == nil && snap.terminal >= len(f.inserted) {
			drained = time.Since(lastKill)
			break
		}
		if err == nil && time.Since(progress) >= 10*time.Second {
			progress = time.Now()
			logf("%d terminal, %d in events, %d in errors", snap.terminal, len(snap.events), len(snap.errors))
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return false, fmt.Errorf("interrupted with %d of %d events terminal", snap.terminal, len(f.inserted))
		}
		if ctx.Err() != nil {
			logf("timed out (-timeout %s) with %d of %d events terminal", r.s.timeout, snap.terminal, len(f.inserted))
			break
		}
		_ = sleepUntil(ctx, time.Now().Add(time.Second))
	}
	stopped := time.Now()
	r.sup.stopAll(r.comps, 15*time.Second)

	// The final look, with a context of its own (the run's may be over).
	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer fcancel()
	if snap, err = w.scan(fctx, false); err != nil {
		return false, fmt.Errorf("the final read: %w", err)
	}
	orphans, pruned, expired := w.results()
	res, vs := check(input{inserted: f.inserted, events: snap.events, errors: snap.errors, pruned: pruned, orphans: orphans, policy: p})
	rep := report{
		s: r.s, args: r.args, runID: runID, f: f, began: began, stopped: stopped, drained: drained, timedOut: drained == 0,
		lastKill: lastKill, sup: r.sup, comps: r.comps, res: res, vs: vs, orphans: orphans, expired: expired,
		scans: w.scans, scanMax: w.scanDur, logs: filepath.Join(r.work, "logs"), pruned: len(pruned),
	}
	rep.print(out)
	return rep.passed(), nil
}

// chaosResult is what the kill phase returns.
type chaosResult struct{ floodErr error }

// chaos kills a random running component every few seconds until the
// flood is done, scanning the events every second meanwhile. The kills go
// in rounds: each component once per round, in a random order, never the
// same one twice in a row.
func (r *runner) chaos(ctx context.Context, w *watcher, floodDone chan error) chaosResult {
	var victims []*component
	for _, c := range r.comps {
		if c.name != "nats-server" || r.s.killNATS {
			victims = append(victims, c)
		}
	}
	var round []*component
	var last *component
	nextKill := time.Now().Add(r.interval())
	scan := time.NewTicker(time.Second)
	defer scan.Stop()
	progress := time.Now()
	for {
		wait := time.Until(nextKill)
		if r.s.killEvery == 0 {
			wait = time.Hour
		}
		timer := time.NewTimer(wait)
		select {
		case err := <-floodDone:
			timer.Stop()
			return chaosResult{floodErr: err}
		case <-ctx.Done():
			timer.Stop()
			return chaosResult{floodErr: ctx.Err()}
		case <-scan.C:
			timer.Stop()
			snap, err := w.scan(ctx, true)
			if err != nil {
				logf("scan: %v", err)
			} else if time.Since(progress) >= 10*time.Second {
				progress = time.Now()
				logf("%d terminal, %d in events, %d in errors, %d kills", snap.terminal, len(snap.events), len(snap.errors), len(r.sup.killed()))
			}
		case <-timer.C:
			if len(round) == 0 {
				round = append(round, victims...)
				r.rnd.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
				if len(round) > 1 && round[0] == last {
					round[0], round[len(round)-1] = round[len(round)-1], round[0]
				}
			}
			// the first of the round that runs now
			for i, c := range round {
				if c.running() && r.sup.kill(c) {
					last = c
					round = append(round[:i], round[i+1:]...)
					break
				}
			}
			nextKill = time.Now().Add(r.interval())
		}
	}
}

// interval is the time to the next kill: 0.5 to 1.5 times -kill-every.
func (r *runner) interval() time.Duration {
	return r.s.killEvery/2 + time.Duration(r.rnd.Int64N(int64(r.s.killEvery)+1))
}

// waitUp waits until c's first incarnation is ready.
func waitUp(ctx context.Context, c *component) error {
	select {
	case <-c.up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s was not ready in time: %w", c.name, ctx.Err())
	case <-time.After(time.Minute):
		return fmt.Errorf("%s not ready a minute after its start: see its log", c.name)
	}
}
