// Package wiretest starts a MongoDB-wire-compatible server as a separate
// process for tests that drive the official driver over a real socket.
// MongoDB itself cannot be installed on every machine the tests run on;
// two servers that speak its wire protocol can, both without change
// streams:
//
//   - jongodb (npm @jongodb/memory-server-bin-linux-x64-gnu), a native
//     in-memory server: set RETRIGGER_TEST_JONGODB to its binary;
//   - FerretDB v1 with its embedded SQLite backend: set
//     RETRIGGER_TEST_FERRETDB to its binary.
//
// scripts/wire/install.sh installs either and prints the binary's path.
// Each server listens on 127.0.0.1 on a port the kernel picks (port 0; the
// server reports the port it got, so no two tests race for one), keeps its
// files in a t.TempDir(), and is stopped when the test ends. docs/WIRE.md
// lists how each deviates from MongoDB.
package wiretest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Kind names a server implementation.
type Kind string

// The servers this package starts, and the variables naming their binaries.
const (
	Jongodb  Kind = "jongodb"
	FerretDB Kind = "ferretdb"

	EnvJongodb  = "RETRIGGER_TEST_JONGODB"
	EnvFerretDB = "RETRIGGER_TEST_FERRETDB"
)

// Env is the variable that names the binary of k.
func (k Kind) Env() string {
	switch k {
	case Jongodb:
		return EnvJongodb
	case FerretDB:
		return EnvFerretDB
	}
	return ""
}

// Kinds are every server this package can start, in order of preference
// (the most faithful first; see docs/WIRE.md).
var Kinds = []Kind{Jongodb, FerretDB}

// StartTimeout bounds the start of a server: the process reporting its
// port, then answering a ping.
var StartTimeout = 30 * time.Second

// stopTimeout is how long a server gets to exit after SIGTERM before it is
// killed.
const stopTimeout = 10 * time.Second

// Server is a running server.
type Server struct {
	Kind Kind
	// URI connects to it (a single host on 127.0.0.1, direct connection,
	// server selection bounded to 5 s).
	URI string
	// Version is what the server reports in buildInfo: jongodb reports
	// "8.0.0-jongodb", FerretDB its own version and the MongoDB version it
	// emulates.
	Version string
	// Dir is its t.TempDir(): working directory, data and log.
	Dir string
	// Started is how long it took from exec to the first answered ping.
	Started time.Duration

	log    *logBuffer
	cmd    *exec.Cmd
	exited <-chan struct{}
}

// Kill kills the server at once (SIGKILL) and waits until it exited: for
// tests of what happens when the database goes away.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Log returns what the server wrote to stdout and stderr so far.
func (s *Server) Log() string { return s.log.String() }

// Configured returns the servers whose variable is set, with the binary it
// names, in the order of Kinds.
func Configured() map[Kind]string {
	out := map[Kind]string{}
	for _, k := range Kinds {
		if bin := os.Getenv(k.Env()); bin != "" {
			out[k] = bin
		}
	}
	return out
}

// SkipMessage says which variables enable the wire tests.
func SkipMessage() string {
	return fmt.Sprintf("no wire-compatible server configured: set %s (jongodb binary) or %s (FerretDB binary); "+
		"scripts/wire/install.sh installs them and prints the paths (see docs/WIRE.md)", EnvJongodb, EnvFerretDB)
}

// Run runs f in a subtest per configured server (named after its kind),
// each on a server of its own, started for it. With none configured it
// skips t with SkipMessage.
func Run(t *testing.T, f func(t *testing.T, s *Server)) {
	t.Helper()
	servers := Configured()
	if len(servers) == 0 {
		t.Skip(SkipMessage())
	}
	for _, k := range Kinds {
		bin, ok := servers[k]
		if !ok {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			f(t, Start(t, k, bin))
		})
	}
}

// Start starts the binary as a server of kind k and stops it when t ends.
// It fails t if the server does not answer a ping within StartTimeout.
func Start(t testing.TB, k Kind, binary string) *Server {
	t.Helper()
	s, err := start(t, k, binary)
	if err != nil {
		t.Fatalf("starting %s (%s): %v", k, binary, err)
	}
	return s
}

func start(t testing.TB, k Kind, binary string) (*Server, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s names no binary: %w", k.Env(), err)
	}
	dir := t.TempDir()
	var args []string
	var ready *regexp.Regexp // the line that reports the address
	switch k {
	case Jongodb:
		// in memory; prints JONGODB_URI=mongodb://host:port/db once listening
		args = []string{"--host=127.0.0.1", "--port=0"}
		ready = regexp.MustCompile(`^JONGODB_URI=mongodb://(127\.0\.0\.1:[0-9]+)`)
	case FerretDB:
		data := filepath.Join(dir, "data")
		if err := os.Mkdir(data, 0o755); err != nil {
			return nil, err
		}
		args = []string{
			"--handler=sqlite", "--sqlite-url=file:" + data + "/", "--state-dir=" + dir,
			"--listen-addr=127.0.0.1:0",
			"--debug-addr=-",      // no HTTP debug listener on a fixed port
			"--telemetry=disable", // no network
			"--log-format=json",   // the listening line is parsed
			"--log-level=info",
		}
		ready = regexp.MustCompile(`"msg":"Listening on TCP (127\.0\.0\.1:[0-9]+)`)
	default:
		return nil, fmt.Errorf("unknown server kind %q", k)
	}

	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()

	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	s := &Server{Kind: k, Dir: dir, log: &logBuffer{}}
	// one pipe for stdout and stderr: jongodb reports its address on
	// stdout, FerretDB logs it on stderr
	output, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	_ = w.Close() // the child holds its own copy
	if err != nil {
		_ = output.Close()
		return nil, err
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	var waitErr error
	addr := make(chan string, 1)
	go func() {
		// copy the output to the log, and report the address line
		defer output.Close()
		sc := bufio.NewScanner(output)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		found := false
		for sc.Scan() {
			line := sc.Text()
			s.log.Write([]byte(line + "\n"))
			if m := ready.FindStringSubmatch(line); m != nil && !found {
				found = true
				addr <- m[1]
			}
		}
		_, _ = io.Copy(s.log, output) // a line too long for the scanner
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stop(t, cmd, exited)
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", k, dir, tail(s.log.String(), 4000))
		}
	})

	var hostport string
	select {
	case hostport = <-addr:
	case <-exited:
		return nil, fmt.Errorf("exited before listening (%v):\n%s", waitErr, tail(s.log.String(), 4000))
	case <-ctx.Done():
		return nil, fmt.Errorf("no listening line within %s:\n%s", StartTimeout, tail(s.log.String(), 4000))
	}
	// a local server answers at once or not at all: fail in seconds, not
	// after the driver's default 30 s (after a server drops a connection,
	// the driver selects it again only once a heartbeat succeeded)
	s.URI = "mongodb://" + hostport + "/?directConnection=true&serverSelectionTimeoutMS=5000"

	version, err := waitReady(ctx, s.URI, exited)
	if err != nil {
		return nil, fmt.Errorf("listening on %s but not answering: %w\n%s", hostport, err, tail(s.log.String(), 4000))
	}
	s.Version = version
	s.Started = time.Since(began)
	return s, nil
}

// waitReady pings uri until it answers, the process exits or ctx ends, and
// returns the version the server reports.
func waitReady(ctx context.Context, uri string, exited <-chan struct{}) (string, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(500 * time.Millisecond).SetConnectTimeout(500 * time.Millisecond))
	if err != nil {
		return "", err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var info struct {
			Version         string `bson:"version"`
			FerretDBVersion string `bson:"ferretdbVersion"`
		}
		err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info)
		if err == nil {
			if info.FerretDBVersion != "" { // version is the MongoDB version it emulates
				return fmt.Sprintf("%s (MongoDB %s)", info.FerretDBVersion, info.Version), nil
			}
			return info.Version, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("exited: last ping: %w", err)
		case <-ctx.Done():
			return "", fmt.Errorf("%w: last ping: %w", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits for the exit, then kills.
func stop(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		t.Logf("%s did not exit %s after SIGTERM: killing it", cmd.Path, stopTimeout)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Client connects the official driver to s and disconnects when t ends.
func (s *Server) Client(t testing.TB) *mongo.Client {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(s.URI))
	if err != nil {
		t.Fatalf("connecting to %s: %v", s.Kind, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	return client
}

// logBuffer keeps a server's output, for a failing test's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 { // keep the start and enough of a long run
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ErrorCode returns the server error code in err (a command error or the
// first write error), and whether there is one.
func ErrorCode(err error) (int32, bool) {
	var cmd mongo.CommandError
	if errors.As(err, &cmd) {
		return cmd.Code, true
	}
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		return int32(we.WriteErrors[0].Code), true
	}
	return 0, false
}
