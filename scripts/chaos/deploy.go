package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// build compiles the stock commands and the nats-server of shared/go.mod
// into dir, once: the components are separate processes that the check
// kills, and a killed `go run` would orphan its program.
func build(ctx context.Context, root, dir string) error {
	steps := []struct {
		dir  string
		args []string
	}{
		{root, []string{"build", "-o", dir + string(filepath.Separator), "./producer/cmd/producer", "./consumer/cmd/consumer", "./consumer/cmd/archiver"}},
		{filepath.Join(root, "shared"), []string{"build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"}},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, "go", s.args...)
		cmd.Dir = s.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(s.args, " "), err, out)
		}
	}
	return nil
}

// workspaceRoot is the directory of the go.work this program is run in.
func workspaceRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	gowork := strings.TrimSpace(string(out))
	if gowork == "" || gowork == "off" {
		return "", fmt.Errorf("not inside the retrigger workspace (no go.work): run it from the repository, or give -bin")
	}
	return filepath.Dir(gowork), nil
}

// freePort asks the kernel for a free port on 127.0.0.1. A component keeps
// its port across restarts.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var jongodbURI = regexp.MustCompile(`^JONGODB_URI=mongodb://([0-9.]+:[0-9]+)`)

// startJongodb starts jongodb on a free port and returns its URI.
func startJongodb(ctx context.Context, ps *procs, bin, logPath string) (string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	if _, err := ps.start("jongodb", logFile, bin, "--host=127.0.0.1", "--port=0"); err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if f, err := os.Open(logPath); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m := jongodbURI.FindStringSubmatch(sc.Text()); m != nil {
					f.Close()
					return "mongodb://" + m[1] + "/?directConnection=true", nil
				}
			}
			f.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("jongodb printed no JONGODB_URI within 30s (see %s)", logPath)
}

// natsConfig writes the nats-server's configuration: loopback only, its
// own store, and sync_interval: always, as the README asks of production
// (and deployments/compose/nats.conf does).
func natsConfig(path string, port, monitor int, store string, syncAlways bool) error {
	sync := ""
	if syncAlways {
		sync = "\n  sync_interval: always"
	}
	conf := fmt.Sprintf("server_name: chaos\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\njetstream {\n  store_dir: %q%s\n}\n", port, monitor, store, sync)
	return os.WriteFile(path, []byte(conf), 0o644)
}

// component is one supervised stock process: it is started, killed and
// started again, each time as a new incarnation.
type component struct {
	name  string
	bin   string
	args  func(incarnation int) []string
	ready string // a URL that answers 200 once the process is ready
	// replicaOf names the consumer replica of an incarnation ("" for other
	// components): the owner of the leases its runs take.
	replicaOf func(incarnation int) string
	log       *os.File

	mu          sync.Mutex
	cur         *proc
	incarnation int
	killedByUs  bool
	stopping    bool
	up          chan struct{} // closed once an incarnation was ready
	upOnce      sync.Once
}

// supervisor starts the components, restarts each after it exits, and
// keeps what it saw: kills, unexpected exits, times to ready.
type supervisor struct {
	ps           *procs
	restartDelay time.Duration
	readyTimeout time.Duration

	mu         sync.Mutex
	kills      []kill
	deadOwners map[string]time.Time // consumer replica names of killed incarnations, and when
	exits      []string             // exits the check did not cause
	notReady   []string             // incarnations that never became ready
	toReady    map[string][]time.Duration
	killLog    *os.File
	wg         sync.WaitGroup
}

// supervise runs c until stop: a start, then a restart after every exit.
func (s *supervisor) supervise(ctx context.Context, c *component) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ctx.Err() == nil {
			c.mu.Lock()
			if c.stopping {
				c.mu.Unlock()
				return
			}
			c.incarnation++
			inc := c.incarnation
			args := c.args(inc)
			fmt.Fprintf(c.log, "=== chaos: %s incarnation %d starting at %s: %s %s\n", c.name, inc, time.Now().Format(time.RFC3339Nano), c.bin, strings.Join(args, " "))
			p, err := s.ps.start(fmt.Sprintf("%s#%d", c.name, inc), c.log, c.bin, args...)
			if err != nil {
				c.mu.Unlock()
				s.note(&s.exits, fmt.Sprintf("%s incarnation %d: %v", c.name, inc, err))
				return
			}
			c.cur, c.killedByUs = p, false
			c.mu.Unlock()
			go s.waitReady(ctx, c, p, inc)
			<-p.done
			c.mu.Lock()
			killed, stopping := c.killedByUs, c.stopping
			c.mu.Unlock()
			fmt.Fprintf(c.log, "=== chaos: %s incarnation %d ended at %s: %s\n", c.name, inc, time.Now().Format(time.RFC3339Nano), p.exitStatus())
			if stopping {
				// a stop drains: a lease its replica still holds is one it
				// never used to run a handler, not one a kill interrupted
				return
			}
			if c.replicaOf != nil && !killed {
				// an exit we did not cause interrupts its runs as a kill
				// does; it is reported below, and fails the run
				s.mu.Lock()
				s.deadOwners[c.replicaOf(inc)] = time.Now()
				s.mu.Unlock()
			}
			if !killed {
				s.note(&s.exits, fmt.Sprintf("%s incarnation %d exited by itself at %s: %s", c.name, inc, time.Now().Format("15:04:05.000"), p.exitStatus()))
			}
			if sleepUntil(ctx, time.Now().Add(s.restartDelay)) != nil {
				return
			}
		}
	}()
}

func (s *supervisor) note(list *[]string, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*list = append(*list, msg)
}

// waitReady polls the component's ready URL until it answers 200, the
// process exits, or the ready timeout passes (which is reported).
func (s *supervisor) waitReady(ctx context.Context, c *component, p *proc, inc int) {
	client := &http.Client{Timeout: time.Second}
	deadline := p.started.Add(s.readyTimeout)
	for ctx.Err() == nil && !p.exited() {
		resp, err := client.Get(c.ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.mu.Lock()
				s.toReady[c.name] = append(s.toReady[c.name], time.Since(p.started))
				s.mu.Unlock()
				c.upOnce.Do(func() { close(c.up) })
				return
			}
		}
		if time.Now().After(deadline) {
			s.note(&s.notReady, fmt.Sprintf("%s incarnation %d not ready %s after its start", c.name, inc, s.readyTimeout))
			return
		}
		_ = sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
	}
}

// kill sends SIGKILL to c's current process group, if it runs, and
// records the kill. It reports false when c was not running.
func (s *supervisor) kill(c *component) bool {
	c.mu.Lock()
	p := c.cur
	if p == nil || p.exited() || c.stopping || c.killedByUs {
		c.mu.Unlock()
		return false
	}
	c.killedByUs = true
	inc := c.incarnation
	c.mu.Unlock()
	at := time.Now()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
	k := kill{At: at, Component: c.name, PID: p.cmd.Process.Pid}
	if c.replicaOf != nil {
		k.Replica = c.replicaOf(inc)
	}
	s.mu.Lock()
	s.kills = append(s.kills, k)
	if k.Replica != "" {
		s.deadOwners[k.Replica] = at
	}
	fmt.Fprintf(s.killLog, "%s kill -9 %s (incarnation %d, pid %d%s)\n", at.Format("15:04:05.000"), c.name, inc, k.PID, replicaNote(k.Replica))
	s.mu.Unlock()
	return true
}

func replicaNote(r string) string {
	if r == "" {
		return ""
	}
	return ", replica " + r
}

// killed returns the kills so far.
func (s *supervisor) killed() []kill {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]kill(nil), s.kills...)
}

// running reports whether c's current incarnation runs.
func (c *component) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && !c.cur.exited() && !c.killedByUs
}

// stopAll stops every component, clients first: SIGTERM, then SIGKILL
// after grace; and waits for the supervisors.
func (s *supervisor) stopAll(cs []*component, grace time.Duration) {
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		c.mu.Lock()
		c.stopping = true
		p := c.cur
		c.mu.Unlock()
		if p != nil {
			p.stop(grace)
		}
	}
	s.wg.Wait()
}

// killedOwner says whether owner names a consumer replica the check
// killed (or that exited by itself), and when.
func (s *supervisor) killedOwner(owner string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.deadOwners[owner]
	return t, ok
}
