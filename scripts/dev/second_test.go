package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/filelock"
)

// childArgsEnv runs the local run itself, with these arguments (separated
// by \x1f), in place of the tests: the first of two local runs.
const childArgsEnv = "RETRIGGER_DEV_TEST_RUN"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		runChild(strings.Split(args, "\x1f"))
		return
	}
	goleak.VerifyTestMain(m)
}

func runChild(args []string) {
	if err := run(args); err != nil {
		fmt.Fprintf(os.Stderr, "dev: %v\n", err)
		os.Exit(1)
	}
}

var summaryLine = regexp.MustCompile(`new (\d+) · retrying (\d+) · success (\d+) · error (\d+) │ archived in \S+ (\d+)`)

// A second local run on the data directory of a running one is refused at
// once, naming the first (its pid and command line). Once the first is
// killed with SIGKILL, the next run starts on the directory and finds every
// event the first had shown.
func TestSecondRunOnADataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := []string{"-data-dir", dir, "-nats-port", strconv.Itoa(freePort(t)), "-http-addr", "", "-interval", "20ms", "-summary-every", "100ms"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(first, "\x1f"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until the first run shows a few events: they are durable (it
	// reads only what is).
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	shown := 0
	deadline := time.After(2 * time.Minute)
	for shown < 5 {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the first run stopped: %s", stderr.String())
			if m := summaryLine.FindStringSubmatch(line); m != nil {
				shown = 0
				for _, n := range m[1:] {
					k, _ := strconv.Atoi(n)
					shown += k
				}
			}
		case <-deadline:
			t.Fatalf("the first run showed %d events in 2 minutes: %s", shown, stderr.String())
		}
	}

	second := []string{"-data-dir", dir, "-nats-port", strconv.Itoa(freePort(t)), "-http-addr", ""}
	start := time.Now()
	err = run(second)
	require.ErrorIs(t, err, filelock.ErrLocked)
	require.Contains(t, err.Error(), "the data directory "+dir+" is in use by another process: pid "+strconv.Itoa(cmd.Process.Pid)+" (")
	require.Contains(t, err.Error(), os.Args[0], "the first run's command line")
	require.Contains(t, err.Error(), "another local run uses this -data-dir")
	require.Less(t, time.Since(start), 20*time.Second, "refused at once, not after a timeout")

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	for range lines { // drain
	}

	p, err := pipeline.Open(context.Background(), pipeline.Options{DataDir: dir})
	require.NoError(t, err, "the lock of a killed run is free")
	defer func() { require.NoError(t, p.Close()) }()
	events, err := p.DB.Collection("events").Count(context.Background(), nil)
	require.NoError(t, err)
	archived, err := p.DB.Collection("errors").Count(context.Background(), nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, int(events+archived), shown, "every event the first run showed: %s", p.DB.Recovery())
}
