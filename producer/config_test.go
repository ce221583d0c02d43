package producer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"sweeper only", Config{DisableChangeStreams: true}, ""},
		{"in flight", Config{Relay: RelayConfig{MaxInFlight: -1}}, "invalid -max-in-flight (RETRIGGER_MAX_IN_FLIGHT): must be at least 1"},
		{"sweep batch", Config{Sweeper: SweeperConfig{Batch: -5}}, "-sweep-batch (RETRIGGER_SWEEP_BATCH)"},
		{"retention", Config{Retention: RetentionConfig{After: -1}}, "-retention (RETRIGGER_RETENTION)"},
		{"stall", Config{Sweeper: SweeperConfig{Stall: -1}}, "-sweep-stall"},
		{"event size", Config{MaxEventSize: -1}, "-max-event-size"},
		{"duplicate window", Config{Streams: messaging.StreamOptions{DuplicateWindow: -time.Second}}, "invalid -duplicate-window"},
		{"dlq max age", Config{Streams: messaging.StreamOptions{DLQMaxAge: -time.Hour}}, "invalid -dlq-max-age"},
		{"replicas low", Config{Streams: messaging.StreamOptions{Replicas: -1}}, "invalid -stream-replicas"},
		{"replicas high", Config{Streams: messaging.StreamOptions{Replicas: 7}}, "invalid -stream-replicas"},
		{"collection", Config{Store: eventstore.Options{Errors: "events"}}, "invalid -errors-collection"},
		{"attempts field", Config{Store: eventstore.Options{Schema: event.Schema{AttemptsField: "state"}}}, "invalid -attempts-field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := config.ForFlags(tt.cfg.Validate())
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	d := Config{DisableChangeStreams: true}.withDefaults()
	require.Zero(t, d.Sweeper.Stall, "without change streams the sweeper publishes everything due")
	require.EqualError(t, Config{Relay: RelayConfig{MaxInFlight: -1}}.Validate(), "invalid producer.Config.Relay.MaxInFlight: must be at least 1, got -1",
		"library callers read the Go field")
}
