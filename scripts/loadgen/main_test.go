package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/scripts/loadtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noEnv keeps the tests off the caller's RETRIGGER_* variables.
func noEnv(string) string { return "" }

// The environment sets what a flag does not.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"RETRIGGER_COUNT": "50", "RETRIGGER_JSON": "true", "RETRIGGER_QUIET": "true"}
	code := run(nil, func(k string) string { return env[k] }, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	var res jsonResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res))
	require.Equal(t, 50, res.Inserted)
	require.Empty(t, stderr.String(), "quiet")
}

func TestJSON(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-count", "150", "-failure-rate", "0.2", "-retry-initial", "10ms", "-retry-max", "20ms", "-json", "-quiet"}, noEnv, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	var res jsonResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "one JSON object: %s", stdout.String())
	require.True(t, res.Invariants.OK)
	require.Equal(t, 150, res.Inserted)
	require.Equal(t, 150, res.Outcomes.Succeeded+res.Outcomes.Archived)
	require.Empty(t, res.Error)
}

func TestText(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-count", "100", "-progress-every", "10ms"}, noEnv, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	require.Contains(t, stdout.String(), "throughput")
	require.Contains(t, stdout.String(), "invariants      OK")
	require.Contains(t, stdout.String(), "retention: the producer deletes succeeded events 1s after success")
	require.Contains(t, stderr.String(), "inserted 100/100 · terminal 100 · in flight 0")
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-failure-rate", "2"},
		{"-mongodb-uri", "mongodb://127.0.0.1"},
		{"-storage", "disk"},
		{"-retention", "-1s"},
		{"-subject-prefix", "a..b"},
		{"extra"},
		{"-outage", "-1s"},
		{"-keys", "-3"},
		{"-key-mode", "ordered"},
		{"-keys", "3", "-key-mode", "fifo"},
		{"-rate-limit", "fast"},
		{"-breaker", "trips=3"},
		{"-policy", "slow"},
		{"-policy", "stock", "-max-attempts", "5"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run(args, noEnv, &stdout, &stderr), "%v", args)
		require.Contains(t, stderr.String(), "loadgen: ")
	}
}

// A run with flow modes reports what it saw of each, in its JSON and its
// text.
func TestFlowModes(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-count", "60", "-keys", "5", "-key-mode", "concurrency:2", "-rate-limit", "200/s,burst=2", "-breaker", "off", "-json", "-quiet"}, noEnv, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	var res jsonResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "one JSON object: %s", stdout.String())
	require.True(t, res.Invariants.OK)
	f := res.Flow
	require.NotNil(t, f)
	require.Equal(t, "off", f.Breaker)
	require.NotNil(t, f.Keys)
	require.Equal(t, 2, f.Keys.Limit)
	require.NotNil(t, f.Rate)
	require.Equal(t, 60, f.Rate.Runs)
	require.Nil(t, f.Outage)
	require.Equal(t, "concurrency:2", res.Settings.KeyMode)

	stdout.Reset()
	stderr.Reset()
	code = run([]string{"-count", "20", "-policy", "stock", "-keys", "4", "-quiet"}, noEnv, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	out := stdout.String()
	require.Contains(t, out, "20 attempts at most (the consumer's stock retry policy)")
	require.Contains(t, out, "flow control: 4 keys, ordered; breaker on")
	require.Contains(t, out, "keys            4 keys, ordered: runs of one key at once, at most 1 (limit 1,")
}

// The run's files (the in-process NATS store) are removed however it ends:
// done, interrupted mid-load, or failed.
func TestRemovesItsFilesOnEveryExit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		interrupt bool
		wantCode  int
	}{
		{"finished", []string{"-count", "20"}, false, 0},
		{"finished with the ceiling", []string{"-count", "20", "-ceiling"}, false, 0},
		{"interrupted", []string{"-count", "2000000", "-rate", "200", "-progress-every", "10ms"}, true, -1},
		{"failed", []string{"-count", "20", "-cpuprofile", "/nonexistent/dir/cpu"}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			stderr := &progressWatch{inserted: make(chan struct{})}
			var stdout bytes.Buffer
			code := make(chan int, 1)
			go func() { code <- runIn(ctx, base, append(tt.args, "-json"), noEnv, &stdout, stderr) }()
			if tt.interrupt {
				select {
				case <-stderr.inserted: // the load runs: its files exist
				case c := <-code:
					t.Fatalf("exited with %d before the load ran: %s", c, stderr.String())
				}
				entries, err := os.ReadDir(base)
				require.NoError(t, err)
				require.Len(t, entries, 1, "the run's directory")
				cancel()
			}
			if c := <-code; tt.wantCode >= 0 {
				require.Equal(t, tt.wantCode, c, stderr.String())
			}
			entries, err := os.ReadDir(base)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing left behind")
		})
	}
}

// A hang-up (the terminal closed) stops a run as an interrupt does, so its
// files are removed.
func TestStopSignals(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}, stopSignals)
}

func TestBadFloats(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ args []string }{
		{[]string{"-rate", "NaN"}}, {[]string{"-rate", "+Inf"}}, {[]string{"-failure-rate", "NaN"}}, {[]string{"-failure-rate", "-Inf"}},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run(tt.args, noEnv, &stdout, &stderr), "%v", tt.args)
		require.Contains(t, stderr.String(), "invalid "+tt.args[0]+" (RETRIGGER_"+strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(tt.args[0], "-"), "-", "_"))+")")
	}
	for _, o := range []loadtest.Options{{Rate: math.NaN()}, {Rate: math.Inf(1)}, {FailureRate: math.NaN()}} {
		require.ErrorContains(t, o.Validate(), "invalid -", "%+v", o)
	}
}

// progressWatch is stderr that notices the first progress line.
type progressWatch struct {
	mu       sync.Mutex
	b        bytes.Buffer
	inserted chan struct{}
	once     sync.Once
}

func (w *progressWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte("inserted ")) && !bytes.Contains(p, []byte("inserted 0/")) {
		w.once.Do(func() { close(w.inserted) })
	}
	return w.b.Write(p)
}

func (w *progressWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A pipeline measured faster than the engine's ceiling is at the ceiling,
// not at 109% of it.
func TestCeilingText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "the pipeline ran at 0.93× the engine's ceiling", ceilingText(0.93))
	got := ceilingText(1.09)
	require.NotContains(t, got, "%")
	require.Contains(t, got, "ran at the engine's ceiling (1.09×")
}
