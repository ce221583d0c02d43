package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseEnvAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"RETRIGGER_NATS_URL": "nats://env:4222", "RETRIGGER_REPLICAS": "3", "RETRIGGER_ACK_WAIT": "10s"}
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("nats-url", "nats://127.0.0.1:4222", "")
	replicas := fs.Int("replicas", 1, "")
	wait := fs.Duration("ack-wait", time.Second, "")
	other := fs.String("other", "def", "")
	require.NoError(t, Parse(fs, []string{"-replicas", "5"}, func(k string) string { return env[k] }))
	require.Equal(t, "nats://env:4222", *url, "the variable sets an unset flag")
	require.Equal(t, 5, *replicas, "a flag beats its variable")
	require.Equal(t, 10*time.Second, *wait)
	require.Equal(t, "def", *other)
}

func TestParseBadEnvNamesVariable(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("replicas", 1, "")
	err := Parse(fs, nil, func(k string) string { return map[string]string{"RETRIGGER_REPLICAS": "many"}[k] })
	require.ErrorContains(t, err, "RETRIGGER_REPLICAS")
}

func TestInvalidNamesFlagAndVariable(t *testing.T) {
	t.Parallel()
	require.EqualError(t, Invalid("max-attempts", "must be at least 1, got %d", 0),
		"invalid -max-attempts (RETRIGGER_MAX_ATTEMPTS): must be at least 1, got 0")
}

func TestFieldErrorNamesGoFieldOrFlag(t *testing.T) {
	t.Parallel()
	err := Field("consumer.Config.HandlerTimeout", "handler-timeout", "must be positive, got %s", -time.Second)
	require.EqualError(t, err, "invalid consumer.Config.HandlerTimeout: must be positive, got -1s")
	require.EqualError(t, ForFlags(fmt.Errorf("starting: %w", err)),
		"invalid -handler-timeout (RETRIGGER_HANDLER_TIMEOUT): must be positive, got -1s")
	other := errors.New("other")
	require.Equal(t, other, ForFlags(other))
}

// NaN and ±Inf parse as floats, and compare false with every bound: Parse
// rejects them in every float flag, from the command line or the
// environment, naming the flag and its variable.
func TestParseRejectsNonFiniteFloats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"finite", []string{"-failure-rate", "0.5"}, nil, ""},
		{"NaN flag", []string{"-failure-rate", "NaN"}, nil, "invalid -failure-rate (RETRIGGER_FAILURE_RATE): must be a finite number, got NaN"},
		{"nan flag", []string{"-failure-rate", "nan"}, nil, "invalid -failure-rate (RETRIGGER_FAILURE_RATE): must be a finite number"},
		{"+Inf flag", []string{"-failure-rate", "+Inf"}, nil, "must be a finite number, got +Inf"},
		{"-Inf flag", []string{"-failure-rate=-Inf"}, nil, "must be a finite number, got -Inf"},
		{"infinity", []string{"-failure-rate", "infinity"}, nil, "must be a finite number"},
		{"NaN variable", nil, map[string]string{"RETRIGGER_FAILURE_RATE": "NaN"}, "invalid -failure-rate (RETRIGGER_FAILURE_RATE)"},
		{"Inf in another flag", nil, map[string]string{"RETRIGGER_MULTIPLIER": "Inf"}, "invalid -multiplier (RETRIGGER_MULTIPLIER)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Float64("failure-rate", 0.5, "")
			fs.Float64("multiplier", 2, "")
			err := Parse(fs, tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestHelpStartsWithTheSummary(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	fs.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL")
	err := ParseCommand(fs, "relays events to NATS; needs MongoDB and NATS.", []string{"-help"}, func(string) string { return "" })
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Equal(t, "producer: relays events to NATS; needs MongoDB and NATS.\n\nUsage of producer (every flag can also be set by its environment variable):\n"+
		"  -nats-url, RETRIGGER_NATS_URL (default nats://127.0.0.1:4222)\n    \tNATS server URL\n", out.String())
}
