// Package cli is the retrigger admin command: it parses the subcommand,
// its filter and the connection flags (each with its RETRIGGER_*
// variable), runs the operation on the deployment directly (MongoDB and
// NATS) or through a server's admin API (-server, the local run), and
// prints a table or JSON.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/command"
	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/logging"
	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/store/mongostore"
	"github.com/retrigger/retrigger/shared/tracing"
	"github.com/retrigger/retrigger/shared/version"
)

const usage = `retrigger inspects, retries and redrives the events of a retrigger deployment.

Usage: retrigger [flags] COMMAND [flags] [args]

Commands:
  stats                       counts by state and type, the oldest due event,
                              the streams' depth and lag, recent archives
  ls events|errors            list events or archived events (newest first)
  show ID                     an event's timeline; ID as plain text or extended JSON
  retry ID...|FILTER          make failed events due now
  cancel ID...|FILTER         move new or failed events into errors (reason cancelled)
  redrive ID...|FILTER        move archived events back into events as new
  purge errors FILTER -older-than D
                              delete archived events archived more than D ago
  pause TYPE [-until T] [-reason TEXT]
                              hold a type: none of its events runs, none spends
                              an attempt (T: a time, or a duration from now)
  resume TYPE                 lift a type's pause and close its open breaker
  flow                        each type's breaker, pause, limits and waiting events
  ui                          serve the web view on -http-addr (default
                              127.0.0.1:8090): read-only unless -allow-writes

FILTER is made of -type, -state, -reason, -error (a regular expression on
the last error), -since and -until (a time like 2025-06-01T08:00:00Z or
2025-06-01, or a duration ago like 36h or 2d) and -limit; -all selects
everything. Commands that change data show what they select and ask first
on a terminal (-yes skips that; elsewhere -yes is required); -dry-run only
shows. With -server URL the command asks that server (the local run:
http://127.0.0.1:8080); otherwise it connects to MongoDB and NATS.

`

// options are the command's flags.
type options struct {
	conn    command.Flags
	server  string
	output  string
	yes     bool
	dryRun  bool
	all     bool
	oldest  bool
	types   list
	states  list
	reasons list
	// reasonText are the -reason values as given: a pause's reason.
	reasonText []string
	force      bool
	errorRE    string
	since      string
	until      string
	limit      int
	rate       string
	olderThan  string
	by         string
	ui         uiOptions
}

// list is a flag given several times or comma-separated.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (o *options) register(fs *flag.FlagSet) {
	o.conn.Register(fs)
	fs.StringVar(&o.server, "server", "", "admin API of a running server to ask instead of connecting to MongoDB and NATS, e.g. http://127.0.0.1:8080 (the local run)")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	fs.BoolVar(&o.yes, "yes", false, "change data without asking")
	fs.BoolVar(&o.dryRun, "dry-run", false, "show what a command would change, and change nothing")
	fs.BoolVar(&o.all, "all", false, "let a command that changes data select everything (no filter)")
	fs.BoolVar(&o.oldest, "oldest", false, "ls: oldest first")
	fs.Var(&o.types, "type", "filter: event type (repeat or comma-separate for several)")
	fs.Var(&o.states, "state", "filter: state new, failed, success or error (events)")
	fs.Func("reason", "filter: archive reason exhausted, permanent, rejected, crashed, cancelled or application (errors); pause: why, as text", func(v string) error {
		o.reasonText = append(o.reasonText, v)
		return o.reasons.Set(v)
	})
	fs.StringVar(&o.errorRE, "error", "", "filter: regular expression the last error matches")
	fs.StringVar(&o.since, "since", "", "filter: from this time (events: last transition; errors: archive time), or this long ago (36h, 2d)")
	fs.StringVar(&o.until, "until", "", "filter: before this time, or this long ago")
	fs.IntVar(&o.limit, "limit", 0, "at most this many events (ls default 50; 0 elsewhere: all)")
	fs.StringVar(&o.rate, "rate", "", "redrive: at most this many events per second, e.g. 100/s (default: no bound)")
	fs.StringVar(&o.olderThan, "older-than", "", "purge: archived longer ago than this, e.g. 720h or 30d")
	fs.StringVar(&o.by, "by", "", "who acts, recorded in each changed event's history and on a pause (default user@host)")
	fs.BoolVar(&o.force, "force", false, "pause: a type retrigger has never seen (no event, archive or flow state of it)")
	o.ui.register(fs)
}

// IO is where the command reads and writes; terminals are detected on
// the files.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Terminal says whether In and Err are terminals (prompt and
	// progress bar); default: detected on *os.File.
	InTerminal, ErrTerminal bool
	// Ops, when set, replaces the connection (tests).
	Ops admin.Operations
	Now func() time.Time
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Main runs the command with args and returns its exit code: 0 done, 1
// failed, 2 a usage error.
func Main(args []string) int {
	return Run(context.Background(), args, IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		InTerminal: isTerminal(os.Stdin), ErrTerminal: isTerminal(os.Stderr)})
}

// errUsage is an error in how the command was called.
var errUsage = errors.New("usage")

// Run runs the command.
func Run(ctx context.Context, args []string, stdio IO) int {
	if stdio.Now == nil {
		stdio.Now = time.Now
	}
	var o options
	fs := flag.NewFlagSet("retrigger", flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		config.Usage(fs.Output(), fs)
	}
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stdio.Err, "retrigger: %v\n", err)
		return 2
	}
	if o.conn.Version {
		fmt.Fprintln(stdio.Out, "retrigger", version.Version)
		return 0
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	if pos[0] == "version" {
		fmt.Fprintln(stdio.Out, version.Version)
		return 0
	}
	log, err := logging.New(stdio.Err, o.conn.LogLevel, o.conn.LogFormat)
	if err != nil {
		fmt.Fprintf(stdio.Err, "retrigger: %v\n", config.Invalid("log-level", "%v", err))
		return 2
	}
	log = log.With().Str("component", "retrigger").Logger()
	ctx, stop := signalContext(ctx)
	defer stop()
	r := &runner{o: &o, io: stdio, log: log}
	err = r.run(ctx, pos)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, admin.ErrInvalid):
		fmt.Fprintf(stdio.Err, "retrigger: %v\n", err)
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stdio.Err, "retrigger: interrupted; what was done stays done, and running the command again finishes it")
		return 1
	}
	fmt.Fprintf(stdio.Err, "retrigger: %v\n", err)
	return 1
}

// parse reads flags anywhere among the arguments, then the RETRIGGER_*
// variables of the flags not given, and returns the other arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	// The flag package prints the whole help after any error; only -help
	// asks for it. A bad flag gets its error and a hint.
	out, help := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			help()
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("%w (retrigger -help lists every flag)", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(config.EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, config.EnvName(f.Name), err))
			}
		}
	})
	return pos, errors.Join(errs...)
}

// connect returns the operations: a client of -server, or an Admin on
// MongoDB and (when it answers) NATS.
func (r *runner) connect(ctx context.Context) (admin.Operations, func(), error) {
	if r.io.Ops != nil {
		return r.io.Ops, func() {}, nil
	}
	if r.o.server != "" {
		return &admin.Client{BaseURL: r.o.server}, func() {}, nil
	}
	if err := r.o.conn.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v (or ask a server with -server)", errUsage, err)
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.conn.ConnectTimeout)
	defer cancel()
	db, err := mongostore.Open(cctx, r.o.conn.MongoURI, r.o.conn.Database, mongostore.WithAppName("retrigger-admin"))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to MongoDB %s: %w", redact.URL(r.o.conn.MongoURI), err)
	}
	st := eventstore.New(db, r.o.conn.Store)
	var js jetstream.JetStream
	opts, err := r.o.conn.NATSOptions(cctx, "admin", r.log)
	if err != nil {
		_ = db.Close(context.Background())
		return nil, nil, err
	}
	nc, err := nats.Connect(r.o.conn.NATSURL, append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	if err != nil {
		r.log.Warn().Err(redact.Error(err, r.o.conn.NATSURL)).Str("nats", redact.URL(r.o.conn.NATSURL)).Msg("NATS does not answer: stats will lack the streams")
	} else if js, err = jetstream.New(nc); err != nil {
		return nil, nil, err
	}
	// The actions' spans, when the OTEL_* variables configure an exporter.
	tr, shutdown, err := tracing.Setup(ctx, tracing.Config{ServiceName: "retrigger-admin", Global: true,
		OnError: func(err error) { r.log.Warn().Err(err).Msg("tracing") }})
	if err != nil {
		_ = db.Close(context.Background())
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return admin.New(st, js, r.o.conn.Names()).WithTracing(tr), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = shutdown(sctx)
		cancel()
		if nc != nil {
			nc.Close()
		}
		_ = db.Close(context.Background())
	}, nil
}

// actor names who acts: -by, or user@host.
func (o *options) actor() string {
	if o.by != "" {
		return o.by
	}
	name := "someone"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host + " (retrigger)"
}

// parseTime and parseDuration are the admin package's, which the web
// view's filters share.
var (
	parseTime     = admin.ParseTime
	parseDuration = admin.ParseDuration
)

// parseRate reads "100/s", "100" or "6000/m".
func parseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	per := 1.0
	if n, unit, ok := strings.Cut(s, "/"); ok {
		switch unit {
		case "s":
		case "m":
			per = 60
		case "h":
			per = 3600
		default:
			return 0, fmt.Errorf("rate %q: the unit is /s, /m or /h", s)
		}
		s = n
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("rate %q is not a positive number per second like 100/s", s)
	}
	return n / per, nil
}

// query is the filter of the flags.
func (o *options) query(now time.Time) (admin.Query, error) {
	q := admin.Query{Types: o.types, States: o.states, Reasons: o.reasons, Error: o.errorRE, Limit: o.limit}
	var err error
	if q.Since, err = parseTime(o.since, now); err != nil {
		return q, fmt.Errorf("%w: -since: %v", errUsage, err)
	}
	if q.Until, err = parseTime(o.until, now); err != nil {
		return q, fmt.Errorf("%w: -until: %v", errUsage, err)
	}
	return q, nil
}

// logger is zerolog's, for the changes a command made.
type logger = zerolog.Logger
