package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
