package producer

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
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
		{"in flight", Config{MaxInFlight: -1}, "invalid -max-in-flight (RETRIGGER_MAX_IN_FLIGHT): must be at least 1"},
		{"sweep batch", Config{SweepBatch: -5}, "-sweep-batch (RETRIGGER_SWEEP_BATCH)"},
		{"retention", Config{Retention: -1}, "-retention (RETRIGGER_RETENTION)"},
		{"stall", Config{SweepStall: -1}, "-sweep-stall"},
		{"event size", Config{MaxEventSize: -1}, "-max-event-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	d := Config{DisableChangeStreams: true}.withDefaults()
	require.Zero(t, d.SweepStall, "without change streams the sweeper publishes everything due")
}
