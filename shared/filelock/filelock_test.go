package filelock_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/filelock"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("FILELOCK_TEST_HOLD"); path != "" {
		hold(path)
		return
	}
	goleak.VerifyTestMain(m)
}

// hold is the child: it takes the lock, says so, and keeps it until its
// standard input closes.
func hold(path string) {
	l, err := filelock.Acquire(path, "the test's data")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = l.Release()
}

func skipWithoutFlock(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no flock on " + runtime.GOOS + ": the lock is not taken")
	}
}

func TestSecondAcquireNamesTheHolder(t *testing.T) {
	skipWithoutFlock(t)
	path := filepath.Join(t.TempDir(), "data.lock")
	l, err := filelock.Acquire(path, "the data directory ./data")
	require.NoError(t, err)

	// A lock is per open file: a second one in this process conflicts too.
	_, err = filelock.Acquire(path, "the data directory ./data")
	require.ErrorIs(t, err, filelock.ErrLocked)
	require.Contains(t, err.Error(), "the data directory ./data is in use by another process")
	require.Contains(t, err.Error(), fmt.Sprintf("pid %d", os.Getpid()))
	require.Contains(t, err.Error(), os.Args[0], "the holder's command line")

	require.NoError(t, l.Release())
	require.NoError(t, l.Release(), "twice")
	l, err = filelock.Acquire(path, "the data directory ./data")
	require.NoError(t, err, "free once released")
	require.NoError(t, l.Release())
}

// TestAnotherProcess holds the lock in a child process: the parent is
// refused with the child's pid, and takes it once the child is killed.
func TestAnotherProcess(t *testing.T) {
	skipWithoutFlock(t)
	path := filepath.Join(t.TempDir(), "data.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FILELOCK_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked", strings.TrimSpace(line))

	_, err = filelock.Acquire(path, "the data file x")
	require.ErrorIs(t, err, filelock.ErrLocked)
	require.Contains(t, err.Error(), fmt.Sprintf("pid %d (", cmd.Process.Pid))

	// kill -9 releases it: the kernel drops the lock with the process.
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	l, err := filelock.Acquire(path, "the data file x")
	require.NoError(t, err, "the lock of a killed process is free")
	require.NoError(t, l.Release())
}
