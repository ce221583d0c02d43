package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func nop(context.Context, *Event) error { return nil }

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	h := map[string]Handler{"email": nop}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{Handlers: h}, ""},
		{"no handlers", Config{}, "no handlers registered"},
		{"bad type", Config{Handlers: map[string]Handler{"a.b": nop}}, `handler type "a.b"`},
		{"nil handler", Config{Handlers: map[string]Handler{"a": nil}}, "nil handler"},
		{"concurrency", Config{Handlers: h, Concurrency: -1}, "invalid -concurrency (RETRIGGER_CONCURRENCY)"},
		{"ack wait", Config{Handlers: h, AckWait: time.Second}, "-ack-wait (RETRIGGER_ACK_WAIT)"},
		{"max ack pending below concurrency", Config{Handlers: h, Concurrency: 10, MaxAckPending: 5}, "-max-ack-pending"},
		{"retry policy", Config{Handlers: h, Policies: retry.Policies{Default: retry.Policy{Multiplier: 0.5}}}, "multiplier must be at least 1"},
		{"override", Config{Handlers: h, Policies: retry.Policies{ByType: map[string]retry.Policy{"email": {}}}}, "-retry-overrides"},
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
}

func TestArchiverConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, ArchiverConfig{}.Validate())
	require.ErrorContains(t, ArchiverConfig{Concurrency: -1}.Validate(), "-concurrency")
	require.ErrorContains(t, ArchiverConfig{Events: "x", Errors: "x"}.Validate(), "-errors-collection")
}
