package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one OS process the check started, in a process group of its own
// so that a kill reaches whatever it started too.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the process has exited and been reaped
	err     error         // Wait's answer, once done
}

// procs are the processes a run started and has not yet seen exit. The
// run's deferred cleanup, its signal handler and every error path end
// them all through killAll; Pdeathsig ends them if this process dies
// without cleaning up (kill -9 of the chaos check itself).
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

func newProcs() *procs { return &procs{live: map[*proc]struct{}{}} }

// start runs bin with args, its output appended to out.
func (ps *procs) start(name string, out io.Writer, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.live == nil {
		return nil, fmt.Errorf("starting %s: the run is stopping", name)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.started = time.Now()
	ps.live[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process's group.
func (p *proc) signal(sig syscall.Signal) {
	// The group's id is the leader's pid (Setpgid). A group whose members
	// have all exited answers ESRCH, which is what we wanted.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// exitStatus describes how the process ended.
func (p *proc) exitStatus() string {
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return "exit status 0"
	case errors.As(p.err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return ee.Error()
	default:
		return p.err.Error()
	}
}

// stop asks p to exit with SIGTERM, and kills its group after grace.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	if !p.wait(grace) {
		p.signal(syscall.SIGKILL)
		p.wait(10 * time.Second)
	}
	// whatever the leader left behind in its group
	p.signal(syscall.SIGKILL)
}

// killAll kills every process still running, with its group, waits for
// each to be reaped, and refuses any start after it.
func (ps *procs) killAll() {
	ps.mu.Lock()
	live := make([]*proc, 0, len(ps.live))
	for p := range ps.live {
		live = append(live, p)
	}
	ps.live = nil
	ps.mu.Unlock()
	for _, p := range live {
		p.signal(syscall.SIGKILL)
	}
	for _, p := range live {
		if !p.wait(10 * time.Second) {
			fmt.Fprintf(os.Stderr, "chaos: %s (pid %d) did not exit 10s after SIGKILL\n", p.name, p.cmd.Process.Pid)
		}
		p.signal(syscall.SIGKILL) // its group's other members, if any
	}
}
