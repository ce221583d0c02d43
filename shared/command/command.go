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
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/logging"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/mongostore"
)

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
	// Store names the collections and how events are read; every command
	// takes the same flags for them.
	Store eventstore.Options
}

// Register binds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.MongoURI, "mongodb-uri", "", "MongoDB connection string of a replica set or sharded cluster (required), e.g. mongodb://host1,host2/?replicaSet=rs0")
	fs.StringVar(&f.Database, "mongodb-database", "retrigger", "database holding the events and errors collections")
	fs.StringVar(&f.NATSURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&f.StreamPrefix, "stream-prefix", "RETRIGGER", "prefix of the JetStream stream and consumer names")
	fs.StringVar(&f.SubjectPrefix, "subject-prefix", "retrigger", "prefix of the NATS subjects")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", logging.FormatAuto, "log format: auto (console on a terminal), json, console")
	fs.StringVar(&f.HTTPAddr, "http-addr", "", "address serving /metrics, /healthz and /readyz, e.g. :8080 (empty: none)")
	f.Store.RegisterFlags(fs)
}

// Validate names the first flag to fix.
func (f *Flags) Validate() error {
	switch {
	case f.MongoURI == "":
		return config.Invalid("mongodb-uri", "is required: the MongoDB replica set holding the events collection")
	case !strings.HasPrefix(f.MongoURI, "mongodb://") && !strings.HasPrefix(f.MongoURI, "mongodb+srv://"):
		return config.Invalid("mongodb-uri", "%q must start with mongodb:// or mongodb+srv://", redact.URL(f.MongoURI))
	case f.Database == "":
		return config.Invalid("mongodb-database", "must not be empty")
	case f.NATSURL == "":
		return config.Invalid("nats-url", "must not be empty")
	case f.StreamPrefix == "" || strings.ContainsAny(f.StreamPrefix, ". *>"):
		return config.Invalid("stream-prefix", "%q must be non-empty without '.', '*', '>' or spaces", f.StreamPrefix)
	case f.SubjectPrefix == "" || strings.ContainsAny(f.SubjectPrefix, " *>"):
		return config.Invalid("subject-prefix", "%q must be non-empty without '*', '>' or spaces", f.SubjectPrefix)
	}
	for _, u := range strings.Split(f.NATSURL, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err != nil || p.Host == "" {
			return config.Invalid("nats-url", "%q is not a URL like nats://127.0.0.1:4222", redact.URL(u))
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

// Names are the stream and subject names the prefixes give.
func (f *Flags) Names() messaging.Names {
	return messaging.Names{StreamPrefix: f.StreamPrefix, SubjectPrefix: f.SubjectPrefix}
}

// Env is what a command runs with.
type Env struct {
	DB   store.Database
	NATS *nats.Conn
	Log  zerolog.Logger
	// Metrics and Health go into the component's config; never nil.
	Metrics *metrics.Metrics
	Health  *health.Health
}

// Main parses args (flags, then RETRIGGER_* variables), validates them with
// the command's own validate, connects, and calls start under a context that
// ends on SIGINT or SIGTERM. start must return once its component drained.
// Main returns the process exit code.
func Main(name string, args []string, bind func(*flag.FlagSet, *Flags), validate func() error, start func(context.Context, Env) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f Flags
	f.Register(fs)
	bind(fs, &f)
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	err := f.Validate()
	if err == nil && validate != nil {
		err = config.ForFlags(validate())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	log, _ := logging.New(os.Stderr, f.LogLevel, f.LogFormat)
	log = log.With().Str("component", name).Logger()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env, closeAll, err := f.open(ctx, name, log)
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	defer closeAll()
	log.Info().Str("mongodb", redact.URL(f.MongoURI)).Str("nats", redact.URL(f.NATSURL)).Msg("started")
	if err := start(ctx, env); err != nil {
		log.Error().Err(err).Msg("stopped with an error")
		return 1
	}
	log.Info().Msg("drained and stopped")
	return 0
}

func (f *Flags) open(ctx context.Context, name string, log zerolog.Logger) (Env, func(), error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := mongostore.Open(octx, f.MongoURI, f.Database)
	if err != nil {
		return Env{}, nil, fmt.Errorf("connecting to MongoDB %s: %w", redact.URL(f.MongoURI), err)
	}
	nc, err := nats.Connect(f.NATSURL,
		nats.Name("retrigger-"+name),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("reconnected to NATS") }),
	)
	if err != nil {
		_ = db.Close(context.Background())
		return Env{}, nil, fmt.Errorf("connecting to NATS %s: %w", redact.URL(f.NATSURL), redact.Error(err, f.NATSURL))
	}
	closeAll := func() {
		_ = nc.FlushTimeout(5 * time.Second) // acks still buffered
		nc.Close()
		_ = db.Close(context.Background())
	}
	return f.observe(Env{DB: db, NATS: nc, Log: log}, closeAll)
}
