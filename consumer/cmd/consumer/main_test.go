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
		{"demo", []string{"-handlers", "email=demo"}, ""},
		{"http with credentials", []string{"-handlers", "email=http:https://alice:S3cret@mailer.example/send"}, ""},
		{"no negative jitter", []string{"-handlers", "email=demo", "-retry-randomization", "-1"}, ""},
		{"no handlers", nil, "invalid -handlers (RETRIGGER_HANDLERS): is empty"},
		{"type twice", []string{"-handlers", "email=demo;email=demo"}, "invalid -handlers (RETRIGGER_HANDLERS): type email is named twice"},
		{"invalid type", []string{"-handlers", "em.ail=demo"}, `invalid -handlers (RETRIGGER_HANDLERS): entry 1: invalid event field "type": "em.ail" contains '.'`},
		{"http URL credentials", []string{"-handlers", "email=http:ftp://alice:S3cret@mailer.example/"}, "invalid -handlers (RETRIGGER_HANDLERS)"},
		{"URL instead of a type", []string{"-handlers", "https://alice:S3cret@mailer.example/?x=demo"}, "invalid -handlers (RETRIGGER_HANDLERS)"},
		{"retry multiplier NaN", []string{"-handlers", "email=demo", "-retry-multiplier", "NaN"}, "invalid -retry-multiplier (RETRIGGER_RETRY_MULTIPLIER): must be a finite number"},
		{"retry multiplier +Inf", []string{"-handlers", "email=demo", "-retry-multiplier", "+Inf"}, "invalid -retry-multiplier (RETRIGGER_RETRY_MULTIPLIER)"},
		{"retry randomization NaN", []string{"-handlers", "email=demo", "-retry-randomization", "NaN"}, "invalid -retry-randomization (RETRIGGER_RETRY_RANDOMIZATION)"},
		{"retry randomization -Inf", []string{"-handlers", "email=demo", "-retry-randomization", "-Inf"}, "invalid -retry-randomization (RETRIGGER_RETRY_RANDOMIZATION)"},
		{"demo failure rate NaN", []string{"-handlers", "email=demo", "-demo-failure-rate", "NaN"}, "invalid -demo-failure-rate (RETRIGGER_DEMO_FAILURE_RATE)"},
		{"demo failure rate Inf", []string{"-handlers", "email=demo", "-demo-failure-rate", "Inf"}, "invalid -demo-failure-rate (RETRIGGER_DEMO_FAILURE_RATE)"},
		{"demo failure rate 2", []string{"-handlers", "email=demo", "-demo-failure-rate", "2"}, "invalid -demo-failure-rate (RETRIGGER_DEMO_FAILURE_RATE)"},
		{"demo latency", []string{"-handlers", "email=demo", "-demo-latency", "-1s"}, "invalid -demo-latency (RETRIGGER_DEMO_LATENCY)"},
		{"http timeout", []string{"-handlers", "email=demo", "-http-timeout", "-1s"}, "invalid -http-timeout (RETRIGGER_HTTP_TIMEOUT)"},
		{"override NaN", []string{"-handlers", "email=demo", "-retry-overrides", "email:multiplier=NaN"}, "invalid -retry-overrides (RETRIGGER_RETRY_OVERRIDES)"},
		{"override -Inf jitter", []string{"-handlers", "email=demo", "-retry-overrides", "email:randomization=-Inf"}, "invalid -retry-overrides (RETRIGGER_RETRY_OVERRIDES)"},
		{"drain timeout", []string{"-handlers", "email=demo", "-drain-timeout", "-1s"}, "invalid -drain-timeout (RETRIGGER_DRAIN_TIMEOUT)"},
		{"short ack wait: the store timeout follows it", []string{"-handlers", "email=demo", "-ack-wait", "5s"}, ""},
		{"store timeout past the ack wait", []string{"-handlers", "email=demo", "-ack-wait", "5s", "-store-timeout", "5s"}, "invalid -store-timeout (RETRIGGER_STORE_TIMEOUT): must be shorter than the ack wait 5s"},
		{"negative store timeout", []string{"-handlers", "email=demo", "-store-timeout", "-1s"}, "invalid -store-timeout (RETRIGGER_STORE_TIMEOUT)"},
		{"subject prefix a..b", []string{"-handlers", "email=demo", "-subject-prefix", "a..b"}, "invalid -subject-prefix (RETRIGGER_SUBJECT_PREFIX)"},
		{"empty errors collection", []string{"-handlers", "email=demo", "-errors-collection", ""}, "invalid -errors-collection (RETRIGGER_ERRORS_COLLECTION)"},
		{"nats password", []string{"-handlers", "email=demo", "-nats-url", "nats://user:NatsS3cret@[bad"}, "invalid -nats-url (RETRIGGER_NATS_URL)"},
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
	require.True(t, strings.HasPrefix(first, "consumer: one replica running the built-in handlers"), first)
	require.Contains(t, first, "Needs MongoDB and NATS with JetStream, and a producer")
}

// The command exports its own metrics, not another part's as 0.
func TestExportsItsOwnMetrics(t *testing.T) {
	t.Parallel()
	require.Equal(t, metrics.Consumer, newCommand().Part)
}
