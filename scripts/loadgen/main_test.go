package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
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
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run(args, noEnv, &stdout, &stderr), "%v", args)
		require.Contains(t, stderr.String(), "loadgen: ")
	}
}
