package consumer

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
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
		{"no handlers", Config{}, "invalid consumer.Config.Handlers: no handlers registered"},
		{"bad type", Config{Handlers: map[string]Handler{"a.b": nop}}, `invalid consumer.Config.Handlers["a.b"]`},
		{"nil handler", Config{Handlers: map[string]Handler{"a": nil}}, "nil handler"},
		{"concurrency", Config{Handlers: h, Concurrency: -1}, "invalid consumer.Config.Concurrency: must be at least 1, got -1"},
		{"ack wait", Config{Handlers: h, AckWait: time.Second}, "consumer.Config.AckWait"},
		{"max ack pending below concurrency", Config{Handlers: h, Concurrency: 10, MaxAckPending: 5}, "consumer.Config.MaxAckPending"},
		{"retry policy", Config{Handlers: h, Policies: retry.Policies{Default: retry.Policy{Multiplier: 0.5}}}, "consumer.Config.Policies.Default.Multiplier: must be a number of at least 1"},
		{"retry NaN", Config{Handlers: h, Policies: retry.Policies{Default: retry.Policy{Multiplier: math.NaN()}}}, "got NaN"},
		// A per-type policy that sets one knob takes the others from the default.
		{"override with defaults", Config{Handlers: h, Policies: retry.Policies{ByType: map[string]retry.Policy{"email": {MaxAttempts: 9}}}}, ""},
		{"override out of range", Config{Handlers: h, Policies: retry.Policies{ByType: map[string]retry.Policy{"email": {Multiplier: 0.5}}}}, `consumer.Config.Policies.ByType["email"].Multiplier`},
		{"collections", Config{Handlers: h, Store: eventstore.Options{Events: "x", Errors: "x"}}, "eventstore.Options.Errors"},
		{"attempts field", Config{Handlers: h, Store: eventstore.Options{Schema: event.Schema{AttemptsField: "a.b"}}}, "eventstore.Options.Schema.AttemptsField"},
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
	// A command names the flag instead.
	err := Config{Handlers: h, Concurrency: -1}.Validate()
	require.EqualError(t, config.ForFlags(err), "invalid -concurrency (RETRIGGER_CONCURRENCY): must be at least 1, got -1")
	err = Config{Handlers: h, Policies: retry.Policies{ByType: map[string]retry.Policy{"email": {Multiplier: 0.5}}}}.Validate()
	require.ErrorContains(t, config.ForFlags(err), "invalid -retry-overrides (RETRIGGER_RETRY_OVERRIDES): type email:")
}

func TestArchiverConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, ArchiverConfig{}.Validate())
	require.ErrorContains(t, config.ForFlags(ArchiverConfig{Concurrency: -1}.Validate()), "-concurrency")
	require.ErrorContains(t, config.ForFlags(ArchiverConfig{DrainTimeout: -time.Second}.Validate()), "invalid -drain-timeout")
	require.ErrorContains(t, config.ForFlags(ArchiverConfig{Store: eventstore.Options{Events: "x", Errors: "x"}}.Validate()), "-errors-collection")
}
