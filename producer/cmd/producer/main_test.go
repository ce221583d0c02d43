package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/metrics"
)

// Every bad value stops the command with a message naming the flag and its
// variable, and no message shows a credential.
func TestRejectsBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"defaults", nil, ""},
		{"production replicas", []string{"-stream-replicas", "3"}, ""},
		{"duplicate window", []string{"-duplicate-window", "-1s"}, "invalid -duplicate-window (RETRIGGER_DUPLICATE_WINDOW): must not be negative"},
		{"dlq max age", []string{"-dlq-max-age", "-1h"}, "invalid -dlq-max-age (RETRIGGER_DLQ_MAX_AGE): must not be negative"},
		{"replicas negative", []string{"-stream-replicas", "-1"}, "invalid -stream-replicas (RETRIGGER_STREAM_REPLICAS): must be 1 to 5"},
		{"replicas zero", []string{"-stream-replicas", "0"}, "invalid -stream-replicas (RETRIGGER_STREAM_REPLICAS): must be 1 to 5"},
		{"replicas 7", []string{"-stream-replicas", "7"}, "invalid -stream-replicas (RETRIGGER_STREAM_REPLICAS): must be 1 to 5"},
		{"subject prefix a..b", []string{"-subject-prefix", "a..b"}, "invalid -subject-prefix (RETRIGGER_SUBJECT_PREFIX)"},
		{"stream prefix", []string{"-stream-prefix", "A B"}, "invalid -stream-prefix (RETRIGGER_STREAM_PREFIX)"},
		{"empty events collection", []string{"-events-collection", ""}, "invalid -events-collection (RETRIGGER_EVENTS_COLLECTION)"},
		{"blank errors collection", []string{"-errors-collection", " "}, "invalid -errors-collection (RETRIGGER_ERRORS_COLLECTION)"},
		{"equal collections", []string{"-checkpoints-collection", "events"}, "invalid -checkpoints-collection (RETRIGGER_CHECKPOINTS_COLLECTION)"},
		{"sweep stall", []string{"-sweep-stall", "-1s"}, "invalid -sweep-stall (RETRIGGER_SWEEP_STALL)"},
		{"drain timeout", []string{"-drain-timeout", "-1s"}, "invalid -drain-timeout (RETRIGGER_DRAIN_TIMEOUT)"},
		{"nats password", []string{"-nats-url", "nats://user:NatsS3cret@[bad"}, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"nats token", []string{"-nats-url", "nats://NatsS3cret@"}, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"mongodb bad escape", []string{"-mongodb-uri", "mongodb://alice:p%zzS3cret@db/"}, "invalid -mongodb-uri (RETRIGGER_MONGODB_URI)"},
		{"connect timeout", []string{"-connect-timeout", "-1s"}, "invalid -connect-timeout (RETRIGGER_CONNECT_TIMEOUT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-mongodb-uri", "mongodb://db/?replicaSet=rs0"}, tt.args...)
			err := newCommand().Check(args, func(string) string { return "" })
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			for _, secret := range []string{"S3cret", "%zz", "alice"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestHelpSaysWhatItIsFor(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	c := newCommand()
	code := c.Run(t.Context(), []string{"-help"}, func(string) string { return "" }, &out)
	require.Equal(t, 0, code)
	first, _, _ := strings.Cut(out.String(), "\n")
	require.True(t, strings.HasPrefix(first, "producer: publishes the events"), first)
	require.Contains(t, first, "Needs a MongoDB replica set and NATS with JetStream")
	require.Contains(t, out.String(), "use 3 in production")
	require.ErrorIs(t, c.Check([]string{"-help"}, nil), flag.ErrHelp)
}

// The command exports its own metrics, not another part's as 0.
func TestExportsItsOwnMetrics(t *testing.T) {
	t.Parallel()
	require.Equal(t, metrics.Producer, newCommand().Part)
}
