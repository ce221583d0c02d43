package main

import (
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
		{"drain timeout", []string{"-drain-timeout", "-1s"}, "invalid -drain-timeout (RETRIGGER_DRAIN_TIMEOUT): must not be negative"},
		{"concurrency", []string{"-concurrency", "-1"}, "invalid -concurrency (RETRIGGER_CONCURRENCY)"},
		{"store timeout", []string{"-store-timeout", "1m"}, "invalid -store-timeout (RETRIGGER_STORE_TIMEOUT)"},
		{"short ack wait: the store timeout follows it", []string{"-ack-wait", "5s"}, ""},
		{"subject prefix a..b", []string{"-subject-prefix", "a..b"}, "invalid -subject-prefix (RETRIGGER_SUBJECT_PREFIX)"},
		{"empty checkpoints collection", []string{"-checkpoints-collection", ""}, "invalid -checkpoints-collection (RETRIGGER_CHECKPOINTS_COLLECTION)"},
		{"nats password", []string{"-nats-url", "nats://user:NatsS3cret@[bad"}, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"mongodb password", []string{"-mongodb-uri", "mongodb://alice:S3cret@db/?w=-3"}, "invalid -mongodb-uri (RETRIGGER_MONGODB_URI)"},
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
			for _, secret := range []string{"S3cret", "alice"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestHelpSaysWhatItIsFor(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	require.Equal(t, 0, newCommand().Run(t.Context(), []string{"-help"}, func(string) string { return "" }, &out))
	first, _, _ := strings.Cut(out.String(), "\n")
	require.True(t, strings.HasPrefix(first, "archiver: moves dead letters"), first)
	require.Contains(t, first, "Needs MongoDB and NATS with JetStream, and a producer")
}

// The command exports its own metrics, not another part's as 0.
func TestExportsItsOwnMetrics(t *testing.T) {
	t.Parallel()
	require.Equal(t, metrics.Archiver, newCommand().Part)
}
