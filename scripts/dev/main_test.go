package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The local run fails with the real cause and a hint, at once, instead of
// "not ready after 10s"; bad values name their flag.
func TestRunSaysWhyItCannotStart(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	file := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	tests := []struct {
		name    string
		args    []string
		wantIs  error
		wantErr []string
	}{
		{"failure rate NaN", []string{"-failure-rate", "NaN"}, nil, []string{"invalid -failure-rate (RETRIGGER_FAILURE_RATE)"}},
		{"failure rate +Inf", []string{"-failure-rate", "+Inf"}, nil, []string{"invalid -failure-rate (RETRIGGER_FAILURE_RATE)"}},
		{"failure rate 2", []string{"-failure-rate", "2"}, nil, []string{"invalid -failure-rate (RETRIGGER_FAILURE_RATE)"}},
		{"port in use", []string{"-nats-port", busyPort}, syscall.EADDRINUSE, []string{"address already in use", "is another retrigger or nats-server running?"}},
		{"data directory is a file", []string{"-data-dir", file}, nil, []string{"invalid -data-dir (RETRIGGER_DATA_DIR)", "is a file"}},
		{"data directory under a file", []string{"-data-dir", filepath.Join(file, "sub")}, syscall.ENOTDIR, []string{"not a directory", "-data-dir must be a directory"}},
		{"not this machine's address", []string{"-nats-host", "192.0.2.1"}, syscall.EADDRNOTAVAIL, []string{"192.0.2.1", "-nats-host must be an address of this machine"}},
		{"rate limit of a type it does not run", []string{"-rate-limits", "dmeo=2/s"}, nil, []string{"invalid -rate-limits (RETRIGGER_RATE_LIMITS)", `unknown type "dmeo"`, "demo"}},
		{"key path that is no field path", []string{"-keys", "demo=key:payload..id,ordered"}, nil, []string{"invalid -keys (RETRIGGER_KEYS)", "payload..id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-data-dir", t.TempDir(), "-nats-port", strconv.Itoa(freePort(t))}, tt.args...)
			start := time.Now()
			err := run(args)
			require.Error(t, err)
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
			}
			for _, w := range tt.wantErr {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "not ready after", "took %s", time.Since(start))
		})
	}
}

// -memory keeps nothing, and says so when it starts and when it stops.
func TestMemoryModeSaysItKeepsNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		o                options
		wantStart        []string
		wantStop         []string
		notStart, notEnd string
	}{
		{"memory", options{dataDir: "./data", memory: true, natsHost: "127.0.0.1", replicas: 2},
			[]string{"events in memory", "loses every one of them", "It buys little speed: flooded, about " + memoryRate + " against " + durableRate + " durable"},
			[]string{"-memory kept nothing", "begins empty"}, "durable:", "start again to resume"},
		{"data directory", options{dataDir: "./data", natsHost: "127.0.0.1", replicas: 2, syncInterval: 100 * time.Millisecond},
			[]string{"events in ./data", "durable: every write is in the journal in ./data before it counts, and a crash of this process loses none; an operating system crash or a power cut may lose the last 100ms of them", "Flooded, about " + durableRate},
			[]string{"start again to resume from ./data"}, "loses every", "kept nothing"},
		{"each write synced", options{dataDir: "./data", natsHost: "127.0.0.1", replicas: 2},
			[]string{"durable: every write is synced to ./data before it counts, and no crash loses one; flooded, about " + syncedRate},
			[]string{"start again to resume from ./data"}, "loses every", "kept nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start, stop := banner(tt.o, "nats://127.0.0.1:4222", ""), farewell(tt.o, time.Second)
			for _, w := range tt.wantStart {
				require.Contains(t, start, w)
			}
			for _, w := range tt.wantStop {
				require.Contains(t, stop, w)
			}
			if tt.notStart != "" {
				require.NotContains(t, start, tt.notStart)
			}
			require.NotContains(t, stop, tt.notEnd)
		})
	}
}

func TestNonLoopbackHostIsAWarning(t *testing.T) {
	t.Parallel()
	for host, warn := range map[string]bool{"127.0.0.1": false, "::1": false, "localhost": false, "0.0.0.0": true, "192.0.2.1": true} {
		got := strings.Contains(banner(options{natsHost: host}, "nats://x", ""), "no authentication")
		require.Equal(t, warn, got, host)
	}
}

func TestStartErrorHints(t *testing.T) {
	t.Parallel()
	require.Equal(t, "other", startError(errors.New("other")).Error())
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
