package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// alive reports whether pid names a process that has not been reaped.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// zombieOrGone reports whether pid has exited (a zombie waiting for its
// parent counts as exited).
func zombieOrGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// waitFor polls cond until it holds, at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A process the check started, and whatever it started in turn, is gone
// after killAll: no orphan survives the check.
func TestKillAllLeavesNoOrphans(t *testing.T) {
	ps := newProcs()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild")
	// a shell that starts a grandchild in the background and waits
	p, err := ps.start("shell", io.Discard, "/bin/sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	require.NoError(t, err)
	var grandchild int
	waitFor(t, 10*time.Second, "the grandchild's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		grandchild, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	// should the test fail, the grandchild must not outlive it either
	t.Cleanup(func() { _ = syscall.Kill(grandchild, syscall.SIGKILL) })
	require.True(t, alive(grandchild))

	ps.killAll()
	require.True(t, p.exited())
	waitFor(t, 10*time.Second, "the grandchild's end", func() bool { return zombieOrGone(grandchild) })

	_, err = ps.start("late", io.Discard, "/bin/sh", "-c", "sleep 300")
	require.Error(t, err, "no start after killAll")
}

// A killed component starts again as a new incarnation; one that exits by
// itself is restarted and reported; stopAll ends every one.
func TestSupervisorRestarts(t *testing.T) {
	ps := newProcs()
	defer ps.killAll()
	dir := t.TempDir()
	killLog, err := os.Create(filepath.Join(dir, "kills.log"))
	require.NoError(t, err)
	defer killLog.Close()
	logFile, err := os.Create(filepath.Join(dir, "c.log"))
	require.NoError(t, err)
	defer logFile.Close()
	s := &supervisor{ps: ps, restartDelay: 10 * time.Millisecond, readyTimeout: time.Minute,
		deadOwners: map[string]time.Time{}, toReady: map[string][]time.Duration{}, killLog: killLog}
	// the first incarnation exits by itself at once, the others run
	c := &component{name: "c", bin: "/bin/sh", log: logFile, up: make(chan struct{}),
		args: func(inc int) []string {
			if inc == 1 {
				return []string{"-c", "exit 3"}
			}
			return []string{"-c", "sleep 300"}
		},
		replicaOf: func(inc int) string { return "c." + strconv.Itoa(inc) },
		ready:     "http://127.0.0.1:1/", // never ready: not what this test looks at
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.supervise(ctx, c)
	waitFor(t, 10*time.Second, "the second incarnation", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.incarnation == 2 && c.cur != nil
	})
	waitFor(t, 10*time.Second, "running", c.running)
	c.mu.Lock()
	second := c.cur
	c.mu.Unlock()
	require.True(t, s.kill(c))
	require.True(t, second.exited())
	require.Contains(t, second.exitStatus(), "killed")
	waitFor(t, 10*time.Second, "the third incarnation", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.incarnation == 3
	})
	waitFor(t, 10*time.Second, "running again", c.running)

	s.stopAll([]*component{c}, 5*time.Second)
	require.False(t, c.running())
	kills := s.killed()
	require.Len(t, kills, 1)
	require.Equal(t, "c.2", kills[0].Replica)
	at, ok := s.killedOwner("c.2")
	require.True(t, ok)
	require.Equal(t, kills[0].At, at)
	_, ok = s.killedOwner("c.1")
	require.True(t, ok, "a replica that exited by itself interrupted its runs")
	_, ok = s.killedOwner("c.3")
	require.False(t, ok, "a replica stopped at the end drained: its leases are not a kill's")
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.exits, 1)
	require.Contains(t, s.exits[0], "c incarnation 1 exited by itself")
	require.Contains(t, s.exits[0], "exit status 3")
}
