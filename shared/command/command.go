// Package command runs retrigger's stock commands (producer, consumer,
// archiver): the flags that say where MongoDB and NATS are, which
// collections to use and how to log, their validation, the connections,
// and a run under a signal context that drains on SIGTERM before the
// connections close, ending in the process's exit code.
package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/logging"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
	"github.com/retrigger/retrigger/shared/tracing"
	"github.com/retrigger/retrigger/shared/version"
)

// DefaultConnectTimeout bounds the wait for MongoDB and NATS at start.
const DefaultConnectTimeout = 30 * time.Second

// DefaultNATSPingInterval is how often a command pings its NATS server;
// after two unanswered pings the connection counts as lost and reconnects,
// so a half-open connection is noticed within about 30 s (the client's
// default, 2 minutes, took 4 to 6).
const DefaultNATSPingInterval = 15 * time.Second

// Flags are the connection and logging settings every command shares.
type Flags struct {
	MongoURI      string
	Database      string
	NATSURL       string
	StreamPrefix  string
	SubjectPrefix string
	LogLevel      string
	LogFormat     string
	HTTPAddr      string // /metrics, /healthz, /readyz; "" serves none (observe.go)
	// NATS connection options: how often to ping the server (a half-open
	// connection is noticed after two unanswered pings), and credentials.
	NATSPingInterval time.Duration
	NATSCreds        string // a .creds file (user JWT and nkey seed)
	NATSNKey         string // an nkey seed file
	NATSTLSCA        string // CA certificates to trust
	NATSTLSCert      string // client certificate, with NATSTLSKey
	NATSTLSKey       string
	// Version asks for the version only.
	Version bool
	// ConnectTimeout bounds the wait for MongoDB and NATS at start.
	ConnectTimeout time.Duration
	// Store names the collections and how events are read; every command
	// takes the same flags for them.
	Store eventstore.Options
}

// Register binds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.MongoURI, "mongodb-uri", "", "MongoDB connection string of a replica set or sharded cluster (required): mongodb:// or mongodb+srv://, e.g. mongodb://host1,host2/?replicaSet=rs0; logs show it with its credentials masked")
	fs.StringVar(&f.Database, "mongodb-database", "retrigger", "database holding the events and errors collections (a MongoDB database name: no '/', '\\', '.', '\"', '$', spaces)")
	fs.StringVar(&f.NATSURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated, each nats://, tls://, ws:// or wss:// with a host")
	fs.StringVar(&f.StreamPrefix, "stream-prefix", messaging.DefaultStreamPrefix, "prefix of the JetStream stream and consumer names (no '.', '*', '>', '/', '\\' or spaces)")
	fs.StringVar(&f.SubjectPrefix, "subject-prefix", messaging.DefaultSubjectPrefix, "prefix of the NATS subjects: '.'-separated tokens, none empty, without '*', '>' or spaces")
	fs.DurationVar(&f.ConnectTimeout, "connect-timeout", DefaultConnectTimeout, "how long to wait for MongoDB and NATS at start, saying so every few seconds, before exiting with the cause (positive)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", logging.FormatAuto, "log format: auto (console on a terminal), json, console")
	fs.StringVar(&f.HTTPAddr, "http-addr", "", "address serving /metrics, /healthz and /readyz, e.g. :8080 (empty: none)")
	fs.DurationVar(&f.NATSPingInterval, "nats-ping-interval", DefaultNATSPingInterval, "how often to ping the NATS server: a half-open connection is noticed after two unanswered pings (1s to 5m)")
	fs.StringVar(&f.NATSCreds, "nats-creds", "", "NATS credentials file (.creds: a user JWT and its nkey seed)")
	fs.StringVar(&f.NATSNKey, "nats-nkey", "", "NATS nkey seed file (not with -nats-creds)")
	fs.StringVar(&f.NATSTLSCA, "nats-tls-ca", "", "CA certificates (PEM) to trust for NATS TLS")
	fs.StringVar(&f.NATSTLSCert, "nats-tls-cert", "", "client certificate (PEM) for NATS TLS, with -nats-tls-key")
	fs.StringVar(&f.NATSTLSKey, "nats-tls-key", "", "client key (PEM) for NATS TLS, with -nats-tls-cert")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	f.Store.RegisterFlags(fs)
}

// Validate names the first flag to fix. Its errors never show a
// credential of the connection strings.
func (f *Flags) Validate() error {
	switch {
	case f.MongoURI == "":
		return config.Invalid("mongodb-uri", "is required: the MongoDB replica set holding the events collection")
	case !strings.HasPrefix(f.MongoURI, "mongodb://") && !strings.HasPrefix(f.MongoURI, "mongodb+srv://"):
		return config.Invalid("mongodb-uri", "%q must start with mongodb:// or mongodb+srv://", redact.URL(f.MongoURI))
	case config.DatabaseName(f.Database) != nil:
		return config.Invalid("mongodb-database", "%v", config.DatabaseName(f.Database))
	case f.NATSURL == "":
		return config.Invalid("nats-url", "must not be empty")
	case f.ConnectTimeout <= 0:
		return config.Invalid("connect-timeout", "must be positive, got %s", f.ConnectTimeout)
	case f.NATSPingInterval < time.Second || f.NATSPingInterval > 5*time.Minute:
		return config.Invalid("nats-ping-interval", "must be 1s to 5m, got %s", f.NATSPingInterval)
	case f.NATSCreds != "" && f.NATSNKey != "":
		return config.Invalid("nats-nkey", "cannot be used with -nats-creds: choose one")
	case (f.NATSTLSCert == "") != (f.NATSTLSKey == ""):
		return config.Invalid("nats-tls-cert", "needs -nats-tls-key, and the other way round")
	}
	for _, file := range []struct{ flag, path string }{
		{"nats-creds", f.NATSCreds}, {"nats-nkey", f.NATSNKey}, {"nats-tls-ca", f.NATSTLSCA}, {"nats-tls-cert", f.NATSTLSCert}, {"nats-tls-key", f.NATSTLSKey},
	} {
		if file.path == "" {
			continue
		}
		fh, err := os.Open(file.path)
		if err != nil {
			return config.Invalid(file.flag, "cannot read %q: %v", file.path, errors.Unwrap(err))
		}
		_ = fh.Close()
	}
	if strings.HasPrefix(f.MongoURI, "mongodb://") {
		// A mongodb+srv:// string is only parsed when connecting: that
		// looks its hosts up in DNS.
		if _, err := connstring.ParseAndValidate(f.MongoURI); err != nil {
			return config.Invalid("mongodb-uri", "%q is not a valid connection string: %v (percent-escape '@', ':', '/', '?', '#' and '%%' in the user name and password)",
				redact.URL(f.MongoURI), redact.Error(err, f.MongoURI))
		}
	}
	for _, u := range strings.Split(f.NATSURL, ",") {
		if err := natsURL(strings.TrimSpace(u)); err != nil {
			return config.Invalid("nats-url", "%q %v", redact.URL(strings.TrimSpace(u)), err)
		}
	}
	if err := f.Names().Validate(); err != nil {
		return config.ForFlags(err)
	}
	for _, c := range []struct{ flag, name string }{
		{"events-collection", f.Store.Events}, {"errors-collection", f.Store.Errors}, {"checkpoints-collection", f.Store.Checkpoints},
	} {
		if c.name == "" {
			// The library takes "" for its default; a command line that
			// says "" means something else, or nothing.
			return config.Invalid(c.flag, "must not be empty")
		}
	}
	if _, err := logging.New(io.Discard, f.LogLevel, logging.FormatJSON); err != nil {
		return config.Invalid("log-level", "%v", err)
	}
	if _, err := logging.New(io.Discard, "info", f.LogFormat); err != nil {
		return config.Invalid("log-format", "%v", err)
	}
	return config.ForFlags(f.Store.Validate())
}

// natsURL checks one URL of -nats-url, without quoting it (url's errors
// quote the whole input, credentials included).
func natsURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("is not a URL like nats://127.0.0.1:4222")
	case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
		return errors.New("is not a URL like nats://127.0.0.1:4222: the scheme must be nats, tls, ws or wss")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("is not a URL like nats://127.0.0.1:4222: it has no host")
	}
	return nil
}

// Names are the stream and subject names the prefixes give.
func (f *Flags) Names() messaging.Names {
	return messaging.Names{StreamPrefix: f.StreamPrefix, SubjectPrefix: f.SubjectPrefix}
}

// Env is what a command runs with.
type Env struct {
	DB   store.Database
	NATS *nats.Conn
	// Log is the command's logger, without a component field: the
	// component adds its own.
	Log zerolog.Logger
	// Metrics and Health go into the component's config; never nil.
	Metrics *metrics.Metrics
	Health  *health.Health
	// Tracing goes into the component's config: nil (off) unless the
	// OTEL_* variables configure an exporter (package tracing).
	Tracing *tracing.Tracer
}

// Command is one stock command.
type Command struct {
	// Name names the command in its messages and logs.
	Name string
	// Summary is the first line of -help: what the command is for and which
	// other components it needs.
	Summary string
	// Bind registers the command's own flags; f holds the shared ones.
	Bind func(fs *flag.FlagSet, f *Flags)
	// Validate checks the command's own settings, after the shared ones.
	// Its errors may name Go fields (config.Field): they are shown as flags.
	Validate func() error
	// Start runs the component; it returns once ctx ended and the
	// component drained.
	Start func(ctx context.Context, env Env) error
	// Part is the component whose metrics the command exports, besides
	// those of every process (metrics.New).
	Part metrics.Part
	// DrainTimeout is how long Start may drain once ctx ended (the
	// command's -drain-timeout). Run waits StopGrace longer at most, then
	// closes the connections and exits without it: whatever is down, a
	// command exits within its drain timeout and a few seconds.
	DrainTimeout func() time.Duration

	// For tests: openStore replaces mongostore.Open; waitEvery is how often
	// a start that waits says so (default 5s).
	openStore func(ctx context.Context, uri, database string) (store.Database, error)
	waitEvery time.Duration
}

// Main runs c with the process's arguments and environment, under a
// context that ends on SIGINT or SIGTERM, and returns the exit code: 0
// after a drain, 1 when it could not start or stopped with an error, 2 for
// a bad flag.
func Main(c Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return c.Run(ctx, os.Args[1:], nil, os.Stderr)
}

// Run parses args (flags, then RETRIGGER_* variables read with getenv; nil
// reads the process's environment), validates them, connects, and calls
// Start until ctx ends. Messages and logs go to stderr. It returns the exit
// code, as Main.
func (c Command) Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	f, err := c.parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return 2
	}
	// The component names itself in its own lines (as producer.New and
	// consumer.NewWorker do): it gets the logger without the field, which
	// a JSON line must not carry twice.
	base, _ := logging.New(stderr, f.LogLevel, f.LogFormat)
	log := base.With().Str("component", c.Name).Logger()
	tr, shutdown, err := tracing.Setup(ctx, tracing.Config{ServiceName: "retrigger-" + c.Name, Getenv: getenv, Global: true,
		OnError: func(err error) { log.Warn().Err(err).Msg("tracing") }})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return 2
	}
	defer func() {
		// after the connections closed: the last spans, within a bound of
		// their own (an exporter that does not answer)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CloseTimeout)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("flushing the last spans")
		}
	}()

	env, closeAll, err := c.open(ctx, f, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info().Msg("stopped before it started")
			return 0
		}
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	defer closeAll()
	env.Log = base
	env.Tracing = tr
	log.Info().Str("mongodb", redact.URL(f.MongoURI)).Str("nats", redact.URL(f.NATSURL)).Stringer("traces", tr).Msg("started")
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx, env) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		drain := time.Duration(0)
		if c.DrainTimeout != nil {
			drain = c.DrainTimeout()
		}
		bound := time.NewTimer(drain + StopGrace)
		defer bound.Stop()
		select {
		case err = <-done:
		case <-bound.C:
			// What it still waits for (a handler that ignores its
			// context, a call to a server that is gone) ends with the
			// process.
			log.Error().Str("drain_timeout", drain.String()).Msg("did not stop within its drain timeout; exiting without it")
			return 1
		}
	}
	if err != nil {
		log.Error().Err(err).Msg("stopped with an error")
		return 1
	}
	log.Info().Msg("drained and stopped")
	return 0
}

// StopGrace is how long past its drain timeout a stopping command waits for
// its component; closing the connections then takes at most CloseTimeout,
// and flushing the last spans at most CloseTimeout more: a command exits
// within its drain timeout and ExitGrace.
const StopGrace = 2 * time.Second

// CloseTimeout bounds the closing of the connections at exit: the flush
// of acknowledgements still buffered (only while NATS is connected), and
// the end of the MongoDB sessions, which waits for a server to be selected
// (30 s by default) when none answers. The flush of the last spans to a
// trace exporter has the same bound.
const CloseTimeout = 3 * time.Second

// ExitGrace is the most a stopping command takes past its drain timeout.
const ExitGrace = StopGrace + 2*CloseTimeout

// errVersion: -version was asked for, and printed.
var errVersion = errors.New("the version was asked for")

// Check parses and validates args as Run does, without connecting, and
// returns the error Run would print (flag.ErrHelp for -help).
func (c Command) Check(args []string, getenv func(string) string) error {
	_, err := c.parse(args, getenv, io.Discard)
	return err
}

func (c Command) parse(args []string, getenv func(string) string, out io.Writer) (*Flags, error) {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(out)
	f := &Flags{}
	f.Register(fs)
	if c.Bind != nil {
		c.Bind(fs, f)
	}
	if err := config.ParseCommand(fs, c.Summary, args, getenv); err != nil {
		return nil, err
	}
	if f.Version {
		fmt.Fprintf(out, "%s %s\n", c.Name, version.Version)
		return nil, errVersion
	}
	err := f.Validate()
	if err == nil && c.Validate != nil {
		err = config.ForFlags(c.Validate())
	}
	return f, err
}

// open connects to NATS and MongoDB at once, each waiting until
// f.ConnectTimeout and saying every few seconds what it waits for.
func (c Command) open(ctx context.Context, f *Flags, log zerolog.Logger) (Env, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, f.ConnectTimeout)
	defer cancel()
	every := c.waitEvery
	if every <= 0 {
		every = waitEvery
	}
	openStore := c.openStore
	if openStore == nil {
		openStore = func(ctx context.Context, uri, database string) (store.Database, error) {
			db, err := mongostore.Open(ctx, uri, database, mongostore.WithAppName("retrigger-"+c.Name))
			if err != nil {
				return nil, err // not a nil *DB in an interface
			}
			return db, nil
		}
	}
	var (
		db store.Database
		nc *nats.Conn
	)
	dbErr := make(chan error, 1)
	go func() {
		dbErr <- wait(ctx, log, every, "MongoDB", "mongodb", redact.URL(f.MongoURI), f.ConnectTimeout, func(ctx context.Context) error {
			var err error
			db, err = openStore(ctx, f.MongoURI, f.Database)
			return err
		})
	}()
	natsErr := wait(ctx, log, every, "NATS", "nats", redact.URL(f.NATSURL), f.ConnectTimeout, func(ctx context.Context) error {
		var err error
		opts, err := f.NATSOptions(ctx, c.Name, log)
		if err != nil {
			return err
		}
		nc, err = nats.Connect(f.NATSURL, opts...)
		if errors.Is(err, nats.ErrNoServers) {
			err = fmt.Errorf("%w: %w", err, dialError(f.NATSURL))
		}
		return redact.Error(err, f.NATSURL)
	})
	if err := errors.Join(<-dbErr, natsErr); err != nil {
		if db != nil {
			_ = db.Close(context.Background())
		}
		if nc != nil {
			nc.Close()
		}
		return Env{}, nil, err
	}
	closeAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
		defer cancel()
		if nc.IsConnected() {
			_ = nc.FlushWithContext(ctx) // acks still buffered
		}
		nc.Close()
		_ = db.Close(ctx)
	}
	return f.observe(Env{DB: db, NATS: nc, Log: log}, c.Part, closeAll)
}

// dialError says why no server of a -nats-url list could be reached,
// which nats.ErrNoServers does not: the first server's TCP error.
func dialError(urls string) error {
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			continue
		}
		host := u.Host
		if u.Port() == "" {
			port := "4222"
			switch u.Scheme {
			case "ws":
				port = "80"
			case "wss":
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		c, err := net.DialTimeout("tcp", host, 2*time.Second)
		if err != nil {
			return err
		}
		_ = c.Close()
	}
	return errors.New("the servers accept TCP connections but not as NATS servers")
}

// waitEvery is how often a command says what it still waits for at start.
const waitEvery = 5 * time.Second

// wait calls connect until it succeeds or ctx ends, retrying with a short
// backoff (connect may also block until ctx ends, as a MongoDB ping
// does), and logs every `every` what it waits for, at its redacted address
// at, with the last error. Its error names what and at, and wraps the
// cause.
func wait(ctx context.Context, log zerolog.Logger, every time.Duration, what, field, at string, timeout time.Duration, connect func(context.Context) error) error {
	var (
		mu      sync.Mutex
		lastErr error // of the newest attempt that failed by itself
	)
	done := make(chan error, 1)
	go func() {
		delay := 100 * time.Millisecond
		for {
			err := connect(ctx)
			if err == nil || ctx.Err() != nil {
				done <- err
				return
			}
			mu.Lock()
			lastErr = err
			mu.Unlock()
			select {
			case <-ctx.Done():
				done <- err
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 2*time.Second)
		}
	}()
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			return fmt.Errorf("connecting to %s at %s (gave up after %s, -connect-timeout %s): %w", what, at, time.Since(start).Round(time.Millisecond), timeout, err)
		case <-tick.C:
			ev := log.Warn().Str(field, at).Str("waited", time.Since(start).Round(time.Second).String()).Str("connect_timeout", timeout.String())
			mu.Lock()
			if lastErr != nil {
				ev = ev.AnErr("last_error", lastErr)
			}
			mu.Unlock()
			ev.Msg("waiting for " + what)
		}
	}
}

// NATSOptions are the connection's options: its name, endless reconnects,
// pings, credentials and TLS, and logs of disconnections that a reconnect
// follows; a connection that closes (a clean shutdown) is not one.
func (f *Flags) NATSOptions(ctx context.Context, name string, log zerolog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("retrigger-" + name),
		nats.MaxReconnects(-1),
		nats.PingInterval(f.NATSPingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // closed by us: nothing reconnects
			}
			log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("reconnected to NATS") }),
	}
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 && left < nats.DefaultTimeout {
			opts = append(opts, nats.Timeout(left))
		}
	}
	if f.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(f.NATSCreds))
	}
	if f.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(f.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("reading -nats-nkey %s: %w", f.NATSNKey, err)
		}
		opts = append(opts, o)
	}
	if f.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(f.NATSTLSCA))
	}
	if f.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(f.NATSTLSCert, f.NATSTLSKey))
	}
	return opts, nil
}
