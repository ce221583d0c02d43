package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// secrets appear in the test inputs; no output may show them.
var secrets = []string{"S3cret", "NatsS3cret", "T0ken", "%zz", "zzw", "alice"}

func requireNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range secrets {
		require.NotContains(t, s, secret, "credentials never reach a message")
	}
}

func testCommand() Command {
	return Command{Name: "test", Summary: "a command for the tests; needs nothing."}
}

func TestFlagsValidate(t *testing.T) {
	t.Parallel()
	const mongo = "mongodb://h"
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"ok from env", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://alice:S3cret@h1,h2/?replicaSet=rs0"}, nil, ""},
		{"ok from flag", nil, []string{"-mongodb-uri", "mongodb+srv://cluster.example.net"}, ""},
		{"ok, nats list", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_NATS_URL": "nats://alice:S3cret@h1:4222, tls://T0ken@h2:4222,ws://h3"}, nil, ""},
		{"ok, subject tokens", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_SUBJECT_PREFIX": "acme.retrigger"}, nil, ""},
		{"uri missing", nil, nil, "invalid -mongodb-uri (RETRIGGER_MONGODB_URI): is required"},
		{"uri scheme, password redacted", map[string]string{"RETRIGGER_MONGODB_URI": "http://alice:S3cret@h"}, nil, `invalid -mongodb-uri (RETRIGGER_MONGODB_URI): "http://xxxxx@h" must start with mongodb://`},
		{"uri with a bad escape", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://alice:p%zzword@h/"}, nil, `invalid -mongodb-uri (RETRIGGER_MONGODB_URI): "mongodb://xxxxx@h/" is not a valid connection string`},
		{"uri with a bad secret option", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h/?tlsCertificateKeyFilePassword=S3cret%zz"}, nil, "invalid -mongodb-uri"},
		{"uri with an unescaped @", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://alice:p@S3cret@h/"}, nil, "invalid -mongodb-uri"},
		{"uri option", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h/?w=-3"}, nil, "invalid -mongodb-uri"},
		{"database", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_MONGODB_DATABASE": "a.b"}, nil, "invalid -mongodb-database (RETRIGGER_MONGODB_DATABASE)"},
		{"database empty", nil, []string{"-mongodb-uri", mongo, "-mongodb-database", ""}, "invalid -mongodb-database"},
		{"nats url", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_NATS_URL": "::"}, nil, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"nats url unparsable, password redacted", nil, []string{"-mongodb-uri", mongo, "-nats-url", "nats://user:NatsS3cret@[bad"}, `invalid -nats-url (RETRIGGER_NATS_URL): "nats://xxxxx@[bad" is not a URL`},
		{"nats url without @, password redacted", nil, []string{"-mongodb-uri", mongo, "-nats-url", "nats://user:NatsS3cret"}, `invalid -nats-url (RETRIGGER_NATS_URL): "nats://user:xxxxx" is not a URL`},
		{"nats token redacted", nil, []string{"-mongodb-uri", mongo, "-nats-url", "http://T0ken@h:4222"}, `"http://xxxxx@h:4222" is not a URL like nats://127.0.0.1:4222: the scheme must be`},
		{"nats list, second bad", nil, []string{"-mongodb-uri", mongo, "-nats-url", "nats://h1:4222,nats://alice:S3cret@[x"}, `"nats://xxxxx@[x"`},
		{"nats list, empty entry", nil, []string{"-mongodb-uri", mongo, "-nats-url", "nats://h1:4222,"}, "invalid -nats-url"},
		{"log level", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_LOG_LEVEL": "loud"}, nil, "invalid -log-level"},
		{"stream prefix", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_STREAM_PREFIX": "A.B"}, nil, "invalid -stream-prefix (RETRIGGER_STREAM_PREFIX)"},
		{"subject prefix a..b", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_SUBJECT_PREFIX": "a..b"}, nil, `invalid -subject-prefix (RETRIGGER_SUBJECT_PREFIX): "a..b" has an empty token`},
		{"subject prefix trailing dot", nil, []string{"-mongodb-uri", mongo, "-subject-prefix", "a."}, "invalid -subject-prefix (RETRIGGER_SUBJECT_PREFIX)"},
		{"subject prefix empty", nil, []string{"-mongodb-uri", mongo, "-subject-prefix", ""}, "invalid -subject-prefix"},
		{"events collection empty", nil, []string{"-mongodb-uri", mongo, "-events-collection", ""}, "invalid -events-collection (RETRIGGER_EVENTS_COLLECTION): must not be empty"},
		{"errors collection empty", nil, []string{"-mongodb-uri", mongo, "-errors-collection", ""}, "invalid -errors-collection (RETRIGGER_ERRORS_COLLECTION)"},
		{"checkpoints collection empty", nil, []string{"-mongodb-uri", mongo, "-checkpoints-collection", ""}, "invalid -checkpoints-collection"},
		{"collections equal", nil, []string{"-mongodb-uri", mongo, "-errors-collection", "events"}, "invalid -errors-collection"},
		{"connect timeout", nil, []string{"-mongodb-uri", mongo, "-connect-timeout", "0s"}, "invalid -connect-timeout (RETRIGGER_CONNECT_TIMEOUT): must be positive"},
		{"ping interval too short", nil, []string{"-mongodb-uri", mongo, "-nats-ping-interval", "100ms"}, "invalid -nats-ping-interval (RETRIGGER_NATS_PING_INTERVAL): must be 1s to 5m, got 100ms"},
		{"ping interval too long", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_NATS_PING_INTERVAL": "1h"}, nil, "invalid -nats-ping-interval"},
		{"creds and nkey", nil, []string{"-mongodb-uri", mongo, "-nats-creds", "a", "-nats-nkey", "b"}, "invalid -nats-nkey (RETRIGGER_NATS_NKEY): cannot be used with -nats-creds"},
		{"cert without key", nil, []string{"-mongodb-uri", mongo, "-nats-tls-cert", "c.pem"}, "invalid -nats-tls-cert (RETRIGGER_NATS_TLS_CERT): needs -nats-tls-key"},
		{"creds missing", nil, []string{"-mongodb-uri", mongo, "-nats-creds", "/nonexistent/user.creds"}, `invalid -nats-creds (RETRIGGER_NATS_CREDS): cannot read "/nonexistent/user.creds": no such file or directory`},
		{"ca missing", map[string]string{"RETRIGGER_MONGODB_URI": mongo, "RETRIGGER_NATS_TLS_CA": "/nonexistent/ca.pem"}, nil, "invalid -nats-tls-ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := testCommand().Check(tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			requireNoSecret(t, err.Error())
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	// -version needs no other setting and connects to nothing.
	code := testCommand().Run(t.Context(), []string{"-version"}, func(string) string { return "" }, &out)
	require.Equal(t, 0, code)
	require.Regexp(t, `^test \S+\n$`, out.String())
}

// The connection pings at the interval asked and gives up on a server
// after two unanswered pings.
func TestNATSOptions(t *testing.T) {
	t.Parallel()
	opts, err := (&Flags{NATSPingInterval: 3 * time.Second}).NATSOptions(t.Context(), "test", zerolog.Nop())
	require.NoError(t, err)
	var o nats.Options
	for _, opt := range opts {
		require.NoError(t, opt(&o))
	}
	require.Equal(t, 3*time.Second, o.PingInterval)
	require.Equal(t, 2, o.MaxPingsOut)
	require.Equal(t, "retrigger-test", o.Name)

	_, err = (&Flags{NATSPingInterval: time.Second, NATSNKey: "/nonexistent/seed.nk"}).NATSOptions(t.Context(), "test", zerolog.Nop())
	require.ErrorContains(t, err, "-nats-nkey /nonexistent/seed.nk")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	env := map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://alice:S3cret@h/", "RETRIGGER_NATS_URL": "nats://T0ken@h:4222"}
	code := testCommand().Run(t.Context(), []string{"-help"}, func(k string) string { return env[k] }, &out)
	require.Equal(t, 0, code)
	help := out.String()
	require.True(t, strings.HasPrefix(help, "test: a command for the tests; needs nothing.\n"), help)
	require.Contains(t, help, "-connect-timeout, RETRIGGER_CONNECT_TIMEOUT (default 30s)")
	requireNoSecret(t, help)
}

// A command whose dependencies cannot be reached says what it waits for,
// at the redacted address, every few seconds, and gives up at its connect
// timeout with the cause.
func TestRunWaitsForItsDependenciesThenFails(t *testing.T) {
	t.Parallel()
	closed := closedPort(t)
	srv := startNATS(t)
	tests := []struct {
		name     string
		natsURL  string
		mongoURI string
		waits    []string // log messages expected
		notWaits []string
		wantErr  []string // in the final error line
	}{
		{
			name:     "both down",
			natsURL:  "nats://alice:S3cret@127.0.0.1:" + closed,
			mongoURI: "mongodb://alice:S3cret@127.0.0.1:" + closed + "/",
			waits:    []string{"waiting for NATS", "waiting for MongoDB"},
			wantErr:  []string{"connecting to NATS at nats://xxxxx@127.0.0.1:" + closed, "connecting to MongoDB at mongodb://xxxxx@127.0.0.1:" + closed, "connection refused"},
		},
		{
			name:     "MongoDB down",
			natsURL:  "nats://T0ken@" + srv,
			mongoURI: "mongodb://alice:S3cret@127.0.0.1:" + closed + "/?tlsCertificateKeyFilePassword=S3cret",
			waits:    []string{"waiting for MongoDB"},
			notWaits: []string{"waiting for NATS"},
			wantErr:  []string{"connecting to MongoDB at mongodb://xxxxx@127.0.0.1:" + closed + "/?tlsCertificateKeyFilePassword=xxxxx", "connection refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testCommand()
			c.waitEvery = 50 * time.Millisecond
			c.Start = func(context.Context, Env) error { return errors.New("started, though nothing is reachable") }
			var out syncBuffer
			code := c.Run(t.Context(), []string{"-connect-timeout", "1s", "-log-format", "json", "-nats-url", tt.natsURL, "-mongodb-uri", tt.mongoURI}, func(string) string { return "" }, &out)
			logs := out.String()
			require.Equal(t, 1, code, logs)
			for _, w := range tt.waits {
				require.Contains(t, logs, `"message":"`+w+`"`)
			}
			for _, w := range tt.notWaits {
				require.NotContains(t, logs, w)
			}
			require.Contains(t, logs, `"message":"start failed"`)
			for _, w := range tt.wantErr {
				require.Contains(t, logs, w)
			}
			requireNoSecret(t, logs)
		})
	}
}

// The started line shows where the command connected, without
// credentials; a clean stop is not reported as a lost connection.
func TestRunStartsAndStopsCleanly(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	c := testCommand()
	c.openStore = func(ctx context.Context, _, _ string) (store.Database, error) {
		return embedded.Open(ctx, embedded.Options{})
	}
	started := make(chan struct{})
	c.Start = func(ctx context.Context, env Env) error {
		require.True(t, env.NATS.IsConnected())
		// as producer.New and consumer.NewWorker name themselves
		log := env.Log.With().Str("component", "test").Logger()
		log.Info().Msg("the component's own line")
		close(started)
		<-ctx.Done()
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- c.Run(ctx, []string{"-log-format", "json", "-nats-url", "nats://alice:NatsS3cret@" + srv + ",nats://T0ken@" + srv,
			"-mongodb-uri", "mongodb://alice:S3cret@db1,db2/?replicaSet=rs0&authMechanismProperties=AWS_SESSION_TOKEN:T0ken"}, func(string) string { return "" }, &out)
	}()
	<-started
	cancel()
	require.Equal(t, 0, <-code)
	logs := out.String()
	require.Contains(t, logs, `"mongodb":"mongodb://xxxxx@db1,db2/?replicaSet=rs0&authMechanismProperties=xxxxx"`)
	require.Contains(t, logs, `"nats":"nats://xxxxx@`+srv+`,nats://xxxxx@`+srv+`"`)
	require.Contains(t, logs, `"message":"drained and stopped"`)
	require.Contains(t, logs, `"message":"the component's own line"`)
	requireNoSecret(t, logs)
	requireKeysOnce(t, logs)
}

// requireKeysOnce fails if a JSON line of logs has a key twice, which some
// log pipelines reject.
func requireKeysOnce(t *testing.T, logs string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		tok, err := dec.Token()
		require.NoError(t, err, line)
		require.Equal(t, json.Delim('{'), tok, line)
		seen := map[string]bool{}
		for dec.More() {
			key, err := dec.Token()
			require.NoError(t, err, line)
			require.False(t, seen[key.(string)], "key %q twice in %s", key, line)
			seen[key.(string)] = true
			var v json.RawMessage
			require.NoError(t, dec.Decode(&v), line)
		}
	}
}

// Closing the connection runs the disconnect callback: it must not say
// that a reconnect follows.
func TestCleanCloseIsNotADisconnection(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	var out syncBuffer
	log := zerolog.New(&out)
	closed := make(chan struct{})
	opts, err := (&Flags{NATSPingInterval: DefaultNATSPingInterval}).NATSOptions(t.Context(), "test", log)
	require.NoError(t, err)
	opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	nc, err := nats.Connect("nats://"+srv, opts...)
	require.NoError(t, err)
	nc.Close()
	<-closed // callbacks run in order: the disconnect one ran before
	require.NotContains(t, out.String(), "reconnecting")
}

func TestCommandCheckNamesTheFlagOfGoFields(t *testing.T) {
	t.Parallel()
	c := testCommand()
	var n int
	c.Bind = func(fs *flag.FlagSet, _ *Flags) { fs.IntVar(&n, "replicas", 1, "") }
	c.Validate = func() error { return errors.New("plain") }
	require.EqualError(t, c.Check([]string{"-mongodb-uri", "mongodb://h"}, func(string) string { return "" }), "plain")
}

// startNATS runs an in-process nats-server and returns its host:port.
func startNATS(t *testing.T) string {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return strings.TrimPrefix(s.ClientURL(), "nats://")
}

// closedPort returns a port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return strconv.Itoa(port)
}

// syncBuffer is a bytes.Buffer safe for the loggers of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A component that does not stop within its drain timeout does not hold
// the process: Run gives up StopGrace after it, says so, and exits 1.
func TestRunStopsWaitingAfterTheDrainTimeout(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	c := testCommand()
	c.openStore = func(ctx context.Context, _, _ string) (store.Database, error) {
		return embedded.Open(ctx, embedded.Options{})
	}
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	c.Start = func(ctx context.Context, env Env) error {
		close(started)
		<-release // ignores ctx: a handler that never returns
		return nil
	}
	c.DrainTimeout = func() time.Duration { return 100 * time.Millisecond }
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- c.Run(ctx, []string{"-log-format", "json", "-nats-url", "nats://" + srv, "-mongodb-uri", "mongodb://db/?replicaSet=rs0"},
			func(string) string { return "" }, &out)
	}()
	<-started
	cancel()
	select {
	case got := <-code:
		require.Equal(t, 1, got)
	case <-time.After(time.Minute):
		t.Fatal("Run still waits for a component that does not stop, a minute after its drain timeout")
	}
	require.Contains(t, out.String(), `"drain_timeout":"100ms"`)
	require.Contains(t, out.String(), `"message":"did not stop within its drain timeout; exiting without it"`)
}

// A flag that does not exist, or a bad value, is one line naming it and how
// to get help, not the whole help.
func TestBadFlagIsOneLine(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-nope"}, {"-connect-timeout", "soon"}, {"stray"}} {
		var out strings.Builder
		require.Equal(t, 2, testCommand().Run(t.Context(), args, func(string) string { return "" }, &out), "%v", args)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 1, "%v: %s", args, out.String())
		require.Contains(t, lines[0], "test -help lists")
	}
	var out strings.Builder
	require.Equal(t, 2, testCommand().Run(t.Context(), []string{"-nope"}, func(string) string { return "" }, &out))
	require.Equal(t, "test: flag provided but not defined: -nope (test -help lists every flag)\n", out.String())
}
