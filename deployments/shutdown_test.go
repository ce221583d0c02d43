package deployments

import (
	"bufio"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store/mongostore/wiretest"
)

// shutdownDrain is the -drain-timeout the shutdown tests give each command.
const shutdownDrain = 3 * time.Second

// shutdownSlack is "a few seconds": what a command may take past its drain
// timeout to close its connections and exit, whatever is down.
const shutdownSlack = 7 * time.Second

// On SIGTERM, each stock command exits within its drain timeout plus a few
// seconds, with NATS down, and with NATS and MongoDB down: closing the
// connections is bounded (Kubernetes kills a pod 30 s after SIGTERM).
// The commands run as processes, built as the image builds them, against a
// nats-server that is shut down and jongodb (RETRIGGER_TEST_JONGODB) that
// is killed. The connection string is the driver's defaults, with its 30 s
// server selection.
func TestShutdownWithDependenciesDown(t *testing.T) {
	bin := os.Getenv(wiretest.EnvJongodb)
	if bin == "" {
		t.Skipf("%s is not set: the shutdown test needs a MongoDB-wire server (scripts/wire/install.sh jongodb prints its path)", wiretest.EnvJongodb)
	}
	t.Parallel()
	for _, down := range []string{"nats", "nats and mongodb"} {
		t.Run(strings.ReplaceAll(down, " ", "-"), func(t *testing.T) {
			t.Parallel()
			db := wiretest.Start(t, wiretest.Jongodb, bin)
			ns, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ns.Shutdown)
			common := []string{"-mongodb-uri", defaultTimeouts(t, db.URI), "-nats-url", ns.ClientURL(),
				"-drain-timeout", shutdownDrain.String(), "-log-format", "json"}
			procs := []*process{
				startCommand(t, "producer", append(common, "-disable-change-streams")...),
				startCommand(t, "consumer", append(common, "-handlers", "job=demo")...),
				startCommand(t, "archiver", common...),
			}
			for _, p := range procs {
				p.waitLog(t, `"message":"started"`, time.Minute)
			}
			ns.Shutdown()
			for _, p := range procs {
				p.waitLog(t, "disconnected from NATS", time.Minute)
			}
			if strings.Contains(down, "mongodb") {
				db.Kill()
			}
			for _, p := range procs {
				p.signal(t, syscall.SIGTERM)
			}
			bound := shutdownDrain + shutdownSlack
			for _, p := range procs {
				took, ok := p.waitExit(bound + 60*time.Second)
				if !ok {
					t.Errorf("%s: still running %s after SIGTERM with %s down; log:\n%s", p.name, took.Round(time.Millisecond), down, p.tail())
					continue
				}
				t.Logf("%s exited %s after SIGTERM with %s down", p.name, took.Round(time.Millisecond), down)
				p.requireKeysOnce(t)
				if took > bound {
					t.Errorf("%s: exited %s after SIGTERM with %s down, past its drain timeout %s plus %s; log:\n%s",
						p.name, took.Round(time.Millisecond), down, shutdownDrain, shutdownSlack, p.tail())
				}
			}
		})
	}
}

// defaultTimeouts is uri without the timeouts wiretest sets, so that the
// driver waits as long as it does by default.
func defaultTimeouts(t *testing.T, uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("serverSelectionTimeoutMS")
	u.RawQuery = q.Encode()
	return u.String()
}

// process is a stock command running as a process.
type process struct {
	name    string
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     strings.Builder
	changed chan struct{} // closed and replaced on each line
	exited  chan struct{}
	stopped time.Time // when it was signalled
	ended   time.Time
}

// startCommand starts the command built as the image builds it, and kills
// it when t ends.
func startCommand(t *testing.T, name string, args ...string) *process {
	t.Helper()
	c := builtCommand(t, name)
	p := &process{name: name, changed: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(c.bin, args...)
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	out, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		p.mu.Lock()
		p.ended = time.Now()
		p.mu.Unlock()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitLog waits until the process logged a line containing s.
func (p *process) waitLog(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		p.mu.Lock()
		found, changed := strings.Contains(p.log.String(), s), p.changed
		p.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-p.exited:
			t.Fatalf("%s exited before logging %q; log:\n%s", p.name, s, p.tail())
		case <-deadline:
			t.Fatalf("%s logged no %q within %s; log:\n%s", p.name, s, within, p.tail())
		}
	}
}

func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	p.mu.Lock()
	p.stopped = time.Now()
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// waitExit waits at most within for the process to exit and says how long
// after its signal it exited (or has run so far).
func (p *process) waitExit(within time.Duration) (time.Duration, bool) {
	select {
	case <-p.exited:
	case <-time.After(within):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended.IsZero() {
		return time.Since(p.stopped), false
	}
	return p.ended.Sub(p.stopped), true
}

// tail is the end of the process's log.
func (p *process) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.log.String()
	if len(s) > 6000 {
		s = "…" + s[len(s)-6000:]
	}
	return s
}

// requireKeysOnce fails if a JSON line of the log has a key twice, which
// some log pipelines reject.
func (p *process) requireKeysOnce(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	logs := p.log.String()
	p.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			continue // not a JSON line (a panic's trace)
		}
		seen := map[string]bool{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				break
			}
			k, _ := key.(string)
			if seen[k] {
				t.Errorf("%s: key %q twice in %s", p.name, k, line)
			}
			seen[k] = true
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				break
			}
		}
	}
}
